/**
 * The machine's services some tests talk to (README, "Set up and test"): PostgreSQL and Redis.
 * A test that needs one is skipped, with the reason printed, when it cannot be reached; `.ci/run`
 * starts both, so CI runs them all.
 */
import net from "node:net";

/** The local test database (trust auth); PARLEY_TEST_PG overrides it. */
export const TEST_PG_URL = process.env.PARLEY_TEST_PG ?? "postgres://postgres@127.0.0.1:5432/test";

/** Whether a TCP connection to host:port opens within `ms`. */
function reachable(host: string, port: number, ms = 2000): Promise<boolean> {
	return new Promise((resolve) => {
		const s = net.connect({ host, port });
		const done = (ok: boolean) => {
			s.destroy();
			resolve(ok);
		};
		s.setTimeout(ms, () => done(false));
		s.once("connect", () => done(true));
		s.once("error", () => done(false));
	});
}

const pg = new URL(TEST_PG_URL);
const pgHost = pg.hostname || "127.0.0.1";
const pgPort = Number(pg.port || 5432);

/** The `skip` option for tests that need PostgreSQL: false, or why they are skipped. */
export const postgresSkip: string | false = (await reachable(pgHost, pgPort))
	? false
	: `PostgreSQL is not reachable at ${pgHost}:${pgPort} (start it, or point PARLEY_TEST_PG at one)`;

/**
 * The Redis the cluster tests share; PARLEY_TEST_REDIS points them at another one, so two
 * checkouts can run cluster tests at once without seeing each other's nodes (they kill and
 * pause Redis clients by name).
 */
export const TEST_REDIS_URL = process.env.PARLEY_TEST_REDIS ?? "redis://127.0.0.1:6379";

const redis = new URL(TEST_REDIS_URL);
const redisHost = redis.hostname || "127.0.0.1";
const redisPort = Number(redis.port || 6379);

/** The `skip` option for tests that need Redis ({@link TEST_REDIS_URL}). */
export const redisSkip: string | false = (await reachable(redisHost, redisPort))
	? false
	: `Redis is not reachable at ${redisHost}:${redisPort} (start redis-server, or point PARLEY_TEST_REDIS at one)`;

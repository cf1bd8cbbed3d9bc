/**
 * A raw XMPP socket for tests that must send exactly the bytes a hostile or broken client
 * would: it writes strings and collects everything the server answers.
 */
import net from "node:net";
import tls from "node:tls";

export class RawClient {
	socket: net.Socket;
	received = "";
	closed = false;
	#waiters: (() => void)[] = [];

	private constructor(socket: net.Socket) {
		this.socket = socket;
		this.#listen(socket);
	}

	#listen(socket: net.Socket): void {
		socket.setEncoding("utf8");
		socket.on("data", (d: string) => {
			this.received += d;
			this.#wake();
		});
		socket.on("close", () => {
			this.closed = true;
			this.#wake();
		});
		socket.on("error", () => {});
	}

	#wake(): void {
		for (const w of this.#waiters.splice(0)) w();
	}

	static connect(
		port: number,
		opts: { tls?: boolean; servername?: string } = {},
	): Promise<RawClient> {
		return new Promise((resolve, reject) => {
			const socket = opts.tls
				? tls.connect({
						port,
						host: "127.0.0.1",
						servername: opts.servername ?? "localhost",
					})
				: net.connect({ port, host: "127.0.0.1" });
			socket.once(opts.tls ? "secureConnect" : "connect", () => resolve(new RawClient(socket)));
			socket.once("error", reject);
		});
	}

	send(s: string | Buffer): void {
		this.socket.write(s);
	}

	/** Opens a client stream to `host`. */
	open(host = "localhost"): void {
		this.send(
			`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${host}' version='1.0'>`,
		);
	}

	/**
	 * Waits until `pattern` appears in what was received after `from` (an offset into
	 * `received`); rejects when the connection closes first or after `ms` (a safety net for a
	 * hung test, not a timing assertion).
	 */
	async waitFor(pattern: RegExp | string, from = 0, ms = 10_000): Promise<string> {
		const deadline = Date.now() + ms;
		for (;;) {
			const text = this.received.slice(from);
			if (typeof pattern === "string" ? text.includes(pattern) : pattern.test(text)) return text;
			if (this.closed)
				throw new Error(`connection closed before ${pattern}; received: ${this.received}`);
			if (Date.now() > deadline)
				throw new Error(`no ${pattern} within ${ms} ms; received: ${this.received}`);
			await new Promise<void>((resolve) => {
				const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
				this.#waiters.push(() => {
					clearTimeout(t);
					resolve();
				});
			});
		}
	}

	/** Waits for the server to close the connection. */
	async waitClosed(ms = 10_000): Promise<void> {
		const deadline = Date.now() + ms;
		while (!this.closed) {
			if (Date.now() > deadline)
				throw new Error(`still open after ${ms} ms; received: ${this.received}`);
			await new Promise<void>((resolve) => {
				const t = setTimeout(resolve, 50);
				this.#waiters.push(() => {
					clearTimeout(t);
					resolve();
				});
			});
		}
	}

	/** Upgrades the connection after `<proceed/>` (RFC 6120 §5.4.3.3). */
	async startTls(servername = "localhost"): Promise<void> {
		const plain = this.socket;
		plain.removeAllListeners("data");
		plain.removeAllListeners("close");
		const secure = tls.connect({ socket: plain, servername });
		await new Promise<void>((resolve, reject) => {
			secure.once("secureConnect", () => resolve());
			secure.once("error", reject);
		});
		this.socket = secure;
		this.#listen(secure);
	}

	end(): void {
		this.socket.destroy();
	}

	/** Closes the stream as a client should (RFC 6120 §4.4), then the connection. */
	close(): void {
		if (!this.socket.destroyed) this.socket.end("</stream:stream>");
	}
}

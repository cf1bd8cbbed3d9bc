/** The event bus (src/core/events.ts): order, claiming, async chains, removal while firing. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { EventBus, HANDLED, Priority } from "./events.ts";

test("handlers run highest priority first", async () => {
	const bus = new EventBus();
	const order: string[] = [];
	bus.on("e", () => void order.push("default"), Priority.DEFAULT);
	bus.on("e", () => void order.push("late"), Priority.LATE);
	bus.on("e", () => void order.push("security"), Priority.SECURITY);
	bus.on("e", () => void order.push("transform"), Priority.TRANSFORM);
	assert.equal(await bus.fire("e", {}), false);
	assert.deepEqual(order, ["security", "transform", "default", "late"]);
});

test("equal priorities run in registration order", async () => {
	const bus = new EventBus();
	const order: number[] = [];
	for (let i = 0; i < 5; i++) bus.on("e", () => void order.push(i), 7);
	bus.on("e", () => void order.push(99), 8);
	await bus.fire("e", {});
	assert.deepEqual(order, [99, 0, 1, 2, 3, 4]);
});

test("HANDLED stops the chain and fire resolves true", async () => {
	const bus = new EventBus();
	const seen: string[] = [];
	bus.on("e", () => {
		seen.push("first");
		return HANDLED;
	});
	bus.on("e", () => void seen.push("second"));
	assert.equal(await bus.fire("e", {}), true);
	assert.deepEqual(seen, ["first"]);
});

test("only `true` claims: other truthy values continue the chain", async () => {
	const bus = new EventBus();
	const seen: string[] = [];
	bus.on("e", () => {
		seen.push("a");
		return "yes";
	});
	bus.on("e", () => {
		seen.push("b");
		return 1;
	});
	assert.equal(await bus.fire("e", {}), false);
	assert.deepEqual(seen, ["a", "b"]);
});

test("async handlers are awaited one after another, in order", async () => {
	const bus = new EventBus();
	const log: string[] = [];
	bus.on(
		"e",
		async () => {
			log.push("a start");
			await new Promise((r) => setTimeout(r, 20));
			log.push("a end");
		},
		10,
	);
	bus.on("e", async () => {
		log.push("b start");
		await Promise.resolve();
		log.push("b end");
		return HANDLED;
	});
	bus.on("e", () => void log.push("c"), -5);
	assert.equal(await bus.fire("e", { x: 1 }), true);
	assert.deepEqual(log, ["a start", "a end", "b start", "b end"]);
});

test("the event data reaches every handler", async () => {
	const bus = new EventBus();
	const data = { n: 0 };
	bus.on<{ n: number }>("e", (d) => void d.n++);
	bus.on<{ n: number }>("e", (d) => void d.n++);
	await bus.fire("e", data);
	assert.equal(data.n, 2);
});

test("a handler that throws rejects fire and stops the chain", async () => {
	const bus = new EventBus();
	let later = false;
	bus.on("e", async () => {
		throw new Error("boom");
	});
	bus.on(
		"e",
		() => {
			later = true;
		},
		-1,
	);
	await assert.rejects(bus.fire("e", {}), /boom/);
	assert.equal(later, false);
});

test("the function returned by on() removes the handler; has() follows", async () => {
	const bus = new EventBus();
	let calls = 0;
	const off = bus.on("e", () => void calls++);
	assert.equal(bus.has("e"), true);
	await bus.fire("e", {});
	off();
	off(); // twice is harmless
	assert.equal(bus.has("e"), false);
	assert.equal(await bus.fire("e", {}), false);
	assert.equal(calls, 1);
});

test("removal during a fire: the running chain finishes as it started, the next fire sees the change", async () => {
	const bus = new EventBus();
	const seen: string[] = [];
	let offB: () => void = () => {};
	bus.on(
		"e",
		() => {
			seen.push("a");
			offB();
		},
		2,
	);
	offB = bus.on("e", () => void seen.push("b"), 1);
	await bus.fire("e", {});
	assert.deepEqual(seen, ["a", "b"]);
	seen.length = 0;
	await bus.fire("e", {});
	assert.deepEqual(seen, ["a"]);
});

test("a handler added during a fire runs from the next fire on", async () => {
	const bus = new EventBus();
	const seen: string[] = [];
	let added = false;
	bus.on("e", () => {
		seen.push("a");
		if (!added) {
			added = true;
			bus.on("e", () => void seen.push("new"));
		}
	});
	await bus.fire("e", {});
	assert.deepEqual(seen, ["a"]);
	await bus.fire("e", {});
	assert.deepEqual(seen, ["a", "a", "new"]);
});

test("events are independent by name; firing an unknown event resolves false", async () => {
	const bus = new EventBus();
	let calls = 0;
	bus.on("x", () => {
		calls++;
		return HANDLED;
	});
	assert.equal(await bus.fire("y", {}), false);
	assert.equal(calls, 0);
});

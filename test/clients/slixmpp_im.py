"""IM as a person would do it, with slixmpp: add a contact, accept, see presence, chat, go
offline, get the offline message on return, block.

Usage: slixmpp_im.py HOST PORT [USER1 USER2] (passwords are USER-pw). Prints one JSON line of what each step saw; exit code 0 when
every step worked.
"""
import asyncio
import json
import ssl
import sys

import slixmpp

host, port = sys.argv[1], int(sys.argv[2])
user1, user2 = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else ("alice", "bob")
ALICE, BOB = f"{user1}@{host}", f"{user2}@{host}"
steps = {}


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0191")  # Blocking Command
        self.register_plugin("xep_0203")  # Delayed Delivery
        self.inbox = []
        self.errors = []
        self.started = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("message_error", lambda m: self.errors.append(m["error"]["condition"]))

    async def on_start(self, _event):
        await self.get_roster()
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            self.inbox.append((str(msg["from"].bare), msg["body"], bool(msg["delay"]["stamp"])))


async def until(predicate, seconds=20):
    for _ in range(seconds * 20):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def online(jid, password):
    c = Client(jid, password)
    c.connect(address=("127.0.0.1", port))
    await asyncio.wait_for(c.started, 20)
    return c


async def main():
    alice = await online(ALICE, f"{user1}-pw")
    bob = await online(BOB, f"{user2}-pw")
    # RFC 6121 §3: alice asks, bob's client accepts (auto_authorize) and asks back (auto_subscribe).
    alice.send_presence_subscription(pto=BOB)
    steps["subscribed_both"] = await until(
        lambda: alice.client_roster[BOB]["subscription"] == "both"
        and bob.client_roster[ALICE]["subscription"] == "both"
    )
    # RFC 6121 §4: each sees the other online.
    steps["presence_seen"] = await until(
        lambda: len(alice.client_roster[BOB].resources) > 0 and len(bob.client_roster[ALICE].resources) > 0
    )
    alice.send_message(mto=BOB, mbody="hi bob", mtype="chat")
    steps["chat"] = await until(lambda: (ALICE, "hi bob", False) in bob.inbox)
    # RFC 6121 §4.5: bob leaves; alice sees him go.
    bob.disconnect()
    await bob.disconnected
    steps["offline_seen"] = await until(lambda: len(alice.client_roster[BOB].resources) == 0)
    # XEP-0160: a message while bob is away waits for him, with a delay stamp (XEP-0203).
    alice.send_message(mto=BOB, mbody="while you were away", mtype="chat")
    await asyncio.sleep(0.5)
    bob = await online(BOB, f"{user2}-pw")
    steps["offline_delivered"] = await until(lambda: (ALICE, "while you were away", True) in bob.inbox)
    # XEP-0191: alice blocks bob; his message is refused.
    await alice.plugin["xep_0191"].block([BOB])
    bob.send_message(mto=ALICE, mbody="can you hear me?", mtype="chat")
    steps["blocked"] = await until(lambda: len(bob.errors) > 0) and not any(
        body == "can you hear me?" for _, body, _ in alice.inbox
    )
    steps["block_error"] = bob.errors[:1]
    for c in (alice, bob):
        c.disconnect()
    await asyncio.sleep(0.2)


try:
    asyncio.get_event_loop().run_until_complete(main())
except Exception as e:  # reported in the JSON line, the test shows it
    steps["error"] = repr(e)
print(json.dumps(steps))
ok = all(v is True for k, v in steps.items() if k not in ("block_error", "error")) and "error" not in steps
sys.exit(0 if ok else 1)

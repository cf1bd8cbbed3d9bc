"""What a slixmpp user's session does beyond chat, each with slixmpp's own plugin.

Usage: slixmpp_session.py HOST PORT MODE SERVICE  (MODE: starttls | directtls; SERVICE: a MUC
service). alice is online twice (a1 asks for carbons with xep_0280, a2 does not):
- XEP-0280: what a2 sends to bob reaches a1 as a sent carbon, what bob sends to a2 as a received one;
- XEP-0054: a1 publishes her vCard-temp, bob reads it;
- XEP-0045 §7.2.15: a1 creates a room and says three things, bob enters asking for two
  (maxstanzas) and gets the last two with their XEP-0203 delay, then the subject;
- XEP-0198: bob's session is resumable; his connection drops, a2 writes to him meanwhile, he
  resumes with the stream id he was given and gets the message.
Prints one JSON line with what each step saw; exits 0 when it ran to the end.
"""
import asyncio
import json
import ssl
import sys

import slixmpp

host, port, mode, service = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
room = f"history@{service}"
result = {}


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, plugins):
        super().__init__(jid, password)
        loop = asyncio.get_event_loop()
        self.ready = loop.create_future()
        self.messages = asyncio.Queue()
        self.carbons = asyncio.Queue()
        self.resumed = loop.create_future()
        # The test server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in plugins:
            self.register_plugin(p)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", lambda m: m["type"] == "chat" and m["body"] and self.messages.put_nowait(m))
        self.add_event_handler("carbon_received", lambda m: self.carbons.put_nowait(("received", m)))
        self.add_event_handler("carbon_sent", lambda m: self.carbons.put_nowait(("sent", m)))
        self.add_event_handler("session_resumed", lambda _: self.resumed.done() or self.resumed.set_result(True))
        self.add_event_handler("failed_all_auth", lambda *_: self.ready.done() or self.ready.set_exception(RuntimeError("auth failed")))

    async def on_start(self, _event):
        self.send_presence()
        await self.get_roster()
        if not self.ready.done():
            self.ready.set_result(True)

    def open(self):
        # slixmpp 1.8: use_ssl is direct TLS (XEP-0368); otherwise STARTTLS is forced.
        if mode == "directtls":
            self.connect(address=("127.0.0.1", port), use_ssl=True, force_starttls=False)
        else:
            self.connect(address=("127.0.0.1", port))


async def next_of(q, timeout=10):
    return await asyncio.wait_for(q.get(), timeout)


async def main():
    a1 = Client(f"alice@{host}/a1", "alice-pw", ["xep_0030", "xep_0280", "xep_0054", "xep_0045", "xep_0004", "xep_0203"])
    a2 = Client(f"alice@{host}/a2", "alice-pw", ["xep_0030"])
    bob = Client(f"bob@{host}/b", "bob-pw", ["xep_0030", "xep_0054", "xep_0045", "xep_0203", "xep_0198"])
    for c in (a1, a2, bob):
        c.open()
    await asyncio.wait_for(asyncio.gather(a1.ready, a2.ready, bob.ready), 20)

    # --- XEP-0280 ---
    await a1["xep_0280"].enable()
    a2.send_message(mto=f"bob@{host}/b", mbody="from a2", mtype="chat")
    kind, m = await next_of(a1.carbons)
    fwd = m["carbon_sent"]
    result["carbon_sent"] = [kind, str(fwd["from"]), str(fwd["to"]), fwd["body"]]
    await next_of(bob.messages)
    bob.send_message(mto=f"alice@{host}/a2", mbody="to a2", mtype="chat")
    kind, m = await next_of(a1.carbons)
    fwd = m["carbon_received"]
    result["carbon_received"] = [kind, str(fwd["from"]), str(fwd["to"]), fwd["body"]]
    await next_of(a2.messages)

    # --- XEP-0054 ---
    card = a1["xep_0054"].make_vcard()
    card["FN"] = "Alice Liddell"
    card["NICKNAME"] = "alice"
    await a1["xep_0054"].publish_vcard(card)
    got = await bob["xep_0054"].get_vcard(f"alice@{host}", cached=False)
    result["vcard"] = [got["vcard_temp"]["FN"], got["vcard_temp"]["NICKNAME"]]

    # --- XEP-0045 history ---
    muc = a1["xep_0045"]
    joined = asyncio.get_event_loop().create_future()
    a1.add_event_handler(f"muc::{room}::got_online", lambda p: joined.done() or joined.set_result(p))
    muc.join_muc(room, "alice")
    await asyncio.wait_for(joined, 10)
    form = await muc.get_room_config(room)
    form["type"] = "submit"
    await muc.set_room_config(room, form)
    reflections = asyncio.Queue()
    a1.add_event_handler("groupchat_message", lambda m: m["body"] and reflections.put_nowait(m["body"]))
    for i in (1, 2, 3):
        a1.send_message(mto=room, mbody=f"line {i}", mtype="groupchat")
        await next_of(reflections)
    history = []
    subject = asyncio.get_event_loop().create_future()
    bob.add_event_handler("groupchat_message", lambda m: m["body"] and history.append([m["body"], bool(m["delay"]["stamp"])]))
    bob.add_event_handler("groupchat_subject", lambda m: subject.done() or subject.set_result(list(history)))
    bob["xep_0045"].join_muc(room, "bob", maxhistory="2")
    result["muc_history"] = await asyncio.wait_for(subject, 10)

    # --- XEP-0198 resume ---
    sm = bob["xep_0198"]
    result["sm_resumable"] = bool(sm.sm_id)
    gone = asyncio.get_event_loop().create_future()
    bob.add_event_handler("disconnected", lambda *_: gone.done() or gone.set_result(True), disposable=True)
    bob.abort()
    await asyncio.wait_for(gone, 10)
    a2.send_message(mto=f"bob@{host}/b", mbody="while you were away", mtype="chat")
    await asyncio.sleep(0.3)
    bob.open()
    await asyncio.wait_for(bob.resumed, 10)
    m = await next_of(bob.messages)
    result["sm_resumed"] = [str(m["from"]), m["body"]]

    for c in (a1, a2, bob):
        c.disconnect()
    await asyncio.sleep(0.2)


try:
    asyncio.get_event_loop().run_until_complete(main())
except Exception as e:  # report, do not hide: the test prints this line
    result["error"] = repr(e)
print(json.dumps(result))
sys.exit(0 if "error" not in result else 1)

"""Two slixmpp clients use a Parley MUC room with slixmpp's XEP-0045 plugin.

Usage: slixmpp_muc.py HOST PORT SERVICE. alice creates a reserved room (XEP-0045 §10.1.3) by
filling in the configuration form slixmpp fetched; bob enters; both send a groupchat message and
each sees both (with the sender's reflection, §7.4); alice sets the subject (§8.1). Prints one
JSON line with what happened and exits 0 when everything arrived.
"""
import asyncio
import json
import ssl
import sys

import slixmpp

host, port, service = sys.argv[1], int(sys.argv[2]), sys.argv[3]
room = f"slixroom@{service}"
result = {}


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.ready = asyncio.get_event_loop().create_future()
        self.messages = []
        self.subjects = []
        self.got_all = asyncio.get_event_loop().create_future()
        self.got_subject = asyncio.get_event_loop().create_future()
        # The test server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ("xep_0030", "xep_0004", "xep_0045", "xep_0199"):
            self.register_plugin(p)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("groupchat_message", self.on_groupchat)
        self.add_event_handler("groupchat_subject", self.on_subject)

    async def on_start(self, _event):
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(True)

    def on_groupchat(self, msg):
        if msg["body"]:
            self.messages.append([msg["mucnick"], msg["body"]])
            if len(self.messages) >= 2 and not self.got_all.done():
                self.got_all.set_result(True)

    def on_subject(self, msg):
        self.subjects.append(msg["subject"])
        if msg["subject"] == "slixmpp subject" and not self.got_subject.done():
            self.got_subject.set_result(True)


async def main():
    alice = Client(f"alice@{host}/slix", "alice-pw")
    bob = Client(f"bob@{host}/slix", "bob-pw")
    for c in (alice, bob):
        c.connect(address=("127.0.0.1", port))
    await asyncio.wait_for(asyncio.gather(alice.ready, bob.ready), 20)
    muc_a = alice.plugin["xep_0045"]
    muc_b = bob.plugin["xep_0045"]

    presence, _subject, _occupants, _history = await muc_a.join_muc_wait(room, "alice", timeout=20)
    codes = sorted(int(s) for s in presence["muc"]["status_codes"])
    result["created_codes"] = codes
    # §10.1.3: the form, as slixmpp parses it, filled in and sent back.
    form = await muc_a.get_room_config(room)
    form["type"] = "submit"
    form.field["muc#roomconfig_roomname"]["value"] = "Slixmpp room"
    await muc_a.set_room_config(room, form)

    presence, _subject, occupants, _history = await muc_b.join_muc_wait(room, "bob", maxstanzas=10, timeout=20)
    result["bob_affiliation"] = presence["muc"]["affiliation"]
    result["bob_saw"] = sorted(o["from"].resource for o in occupants)

    alice.send_message(mto=room, mbody="hello from alice", mtype="groupchat")
    await asyncio.sleep(0.1)
    bob.send_message(mto=room, mbody="hello from bob", mtype="groupchat")
    await asyncio.wait_for(asyncio.gather(alice.got_all, bob.got_all), 20)
    result["alice_got"] = alice.messages
    result["bob_got"] = bob.messages

    muc_a.set_subject(room, "slixmpp subject")
    await asyncio.wait_for(bob.got_subject, 20)
    result["bob_subject"] = bob.subjects[-1]
    result["roster"] = sorted(muc_b.get_roster(room))
    for c in (alice, bob):
        c.disconnect()
    await asyncio.sleep(0.2)


try:
    asyncio.get_event_loop().run_until_complete(main())
except Exception as e:  # report, do not hide: the test prints this line
    result["error"] = repr(e)
print(json.dumps(result))
sys.exit(0 if "error" not in result else 1)

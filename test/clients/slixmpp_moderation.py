"""slixmpp's own plugins against a Parley room: XEP-0421 occupant ids, XEP-0425 moderation
and XEP-0424 retraction in the 0.2 forms slixmpp speaks (moderate:0 and retract:0 inside a
XEP-0422 <apply-to/>).

Usage: slixmpp_moderation.py HOST PORT SERVICE. alice creates a room that archives (XEP-0313,
muc#roomconfig_enablearchiving) and bob enters (xep_0045). bob says something; the stanza-id
the room gave it (xep_0359) is what moderation names. bob, a participant, tries to moderate
(forbidden); alice, the owner, moderates with a reason (xep_0425); bob gets slixmpp's
`moderated_message` with alice's occupant JID, occupant id (xep_0421) and the reason. bob then
retracts a message of his own (xep_0424) and alice gets `message_retract`. Prints one JSON
line and exits 0 when everything arrived.
"""
import asyncio
import json
import ssl
import sys

import slixmpp
from slixmpp.exceptions import IqError

host, port, service = sys.argv[1], int(sys.argv[2]), sys.argv[3]
room = slixmpp.JID(f"slixmod@{service}")
result = {}
PLUGINS = ("xep_0030", "xep_0004", "xep_0045", "xep_0359", "xep_0421", "xep_0422", "xep_0424", "xep_0425")


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        loop = asyncio.get_event_loop()
        self.ready = loop.create_future()
        self.echo = {}
        self.moderated = loop.create_future()
        self.retracted = loop.create_future()
        # The test server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in PLUGINS:
            self.register_plugin(p)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("groupchat_message", self.on_groupchat)
        self.add_event_handler("moderated_message", self.on_moderated)
        self.add_event_handler("message_retract", self.on_retract)

    async def on_start(self, _event):
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(True)

    def on_groupchat(self, msg):
        if msg["body"] and msg["id"]:
            fut = self.echo.get(msg["id"])
            if fut and not fut.done():
                fut.set_result(msg)

    def on_moderated(self, msg):
        if not self.moderated.done():
            self.moderated.set_result(msg)

    def on_retract(self, msg):
        if msg["type"] == "groupchat" and not self.retracted.done():
            self.retracted.set_result(msg)

    async def say(self, body):
        msg = self.make_message(mto=room, mbody=body, mtype="groupchat")
        msg["id"] = self.new_id()
        fut = asyncio.get_event_loop().create_future()
        self.echo[msg["id"]] = fut
        msg.send()
        return await asyncio.wait_for(fut, 20)


async def main():
    alice = Client(f"alice@{host}/slix", "alice-pw")
    bob = Client(f"bob@{host}/slix", "bob-pw")
    for c in (alice, bob):
        c.connect(address=("127.0.0.1", port))
    await asyncio.wait_for(asyncio.gather(alice.ready, bob.ready), 20)
    muc_a = alice.plugin["xep_0045"]
    muc_b = bob.plugin["xep_0045"]

    own, _s, _o, _h = await muc_a.join_muc_wait(room, "alice", timeout=20)
    alice_id = own["occupant-id"]["id"]
    form = await muc_a.get_room_config(room)
    form["type"] = "submit"
    form.field["muc#roomconfig_enablearchiving"]["value"] = True
    await muc_a.set_room_config(room, form)
    mine, _s, occupants, _h = await muc_b.join_muc_wait(room, "bob", timeout=20)
    bob_id = mine["occupant-id"]["id"]
    # XEP-0421 §4: bob sees alice under the id she got herself.
    result["ids_agree"] = [o["occupant-id"]["id"] for o in occupants if o["from"].resource == "alice"] == [alice_id]
    result["ids_differ"] = alice_id != bob_id and bool(alice_id) and bool(bob_id)

    spam = await bob.say("spam from bob")
    sid = spam["stanza_id"]["id"]
    try:
        await bob.plugin["xep_0425"].moderate(room, sid, "not mine to moderate")
        result["participant_moderates"] = "result"
    except IqError as e:
        result["participant_moderates"] = e.iq["error"]["condition"]
    await alice.plugin["xep_0425"].moderate(room, sid, "spam")
    m = await asyncio.wait_for(bob.moderated, 20)
    moderated = m["apply_to"]["moderated"]
    result["moderated"] = {
        "id": m["apply_to"]["id"] == sid,
        "by": str(moderated["by"]),
        "reason": moderated["reason"],
        "occupant_id": moderated["occupant-id"]["id"] == alice_id,
    }

    oops = await bob.say("oops")
    bob.plugin["xep_0424"].send_retraction(room, oops["stanza_id"]["id"], mtype="groupchat")
    r = await asyncio.wait_for(alice.retracted, 20)
    result["retracted"] = {
        "id": r["apply_to"]["id"] == oops["stanza_id"]["id"],
        "from": r["from"].resource,
        "occupant_id": r["occupant-id"]["id"] == bob_id,
    }
    for c in (alice, bob):
        c.disconnect()
    await asyncio.sleep(0.2)


try:
    asyncio.get_event_loop().run_until_complete(main())
except Exception as e:  # report, do not hide: the test prints this line
    result["error"] = repr(e)
print(json.dumps(result))
sys.exit(0 if "error" not in result else 1)

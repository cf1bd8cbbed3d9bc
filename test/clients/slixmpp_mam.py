"""slixmpp's own XEP-0313 plugin (xep_0313, paging with xep_0059) against Parley's archive.

Usage: slixmpp_mam.py HOST PORT. alice sends 25 chat messages to bob; bob reads his archive of
the conversation with iterate() forwards (pages of 10) and backwards (reverse=True, the newest
first, as clients catch up; pages of 10 too, down to the first message), asks for the form
fields, and reads the metadata; the stanza-id (XEP-0359) of a delivered message must be the id
of its archived copy.
Prints one JSON line with what it found; exits 0 when it ran to the end.
"""
import asyncio
import json
import ssl
import sys

import slixmpp

host, port = sys.argv[1], int(sys.argv[2])
result = {}
SID = "urn:xmpp:sid:0"


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.ready = asyncio.get_event_loop().create_future()
        self.received = []
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ("xep_0030", "xep_0004", "xep_0059", "xep_0297", "xep_0313"):
            self.register_plugin(p)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)

    async def on_start(self, _event):
        self.send_presence()
        await self.get_roster()
        if not self.ready.done():
            self.ready.set_result(True)

    def on_message(self, msg):
        if msg["body"]:
            sid = msg.xml.find(f"{{{SID}}}stanza-id")
            self.received.append((msg["body"], None if sid is None else sid.get("id")))


async def main():
    alice = Client(f"alice@{host}/slix", "alice-pw")
    bob = Client(f"bob@{host}/slix", "bob-pw")
    for c in (alice, bob):
        c.connect(address=("127.0.0.1", port))
    await asyncio.wait_for(asyncio.gather(alice.ready, bob.ready), 20)
    for i in range(25):
        alice.send_message(mto=f"bob@{host}/slix", mbody=f"slix {i}", mtype="chat")
    for _ in range(200):
        if len(bob.received) >= 25:
            break
        await asyncio.sleep(0.05)
    mam = bob.plugin["xep_0313"]

    forwards = []
    async for msg in mam.iterate(with_jid=slixmpp.JID(f"alice@{host}"), rsm={"max": 10}):
        forwards.append((msg["mam_result"]["forwarded"]["stanza"]["body"], msg["mam_result"]["id"]))
    result["forwards"] = [b for b, _ in forwards]
    result["ids_match"] = [i for _, i in forwards] == [s for _, s in bob.received]

    # All the way back, pages of 10: slixmpp's RSM iterator ends a walk once first index + page
    # size == count, so it goes past the newest page only if that page carries no index.
    backwards = []
    async for msg in mam.iterate(with_jid=slixmpp.JID(f"alice@{host}"), reverse=True, rsm={"max": 10}):
        backwards.append(msg["mam_result"]["forwarded"]["stanza"]["body"])
    result["backwards"] = backwards

    form = await mam.get_fields()
    names = [f["var"] if not isinstance(f, str) else f for f in form["fields"]]
    result["fields"] = sorted(n for n in names if n != "FORM_TYPE")
    meta = await mam.get_archive_metadata()
    result["metadata_end"] = meta["mam_metadata"]["end"]["id"] == forwards[-1][1]
    print(json.dumps(result))
    for c in (alice, bob):
        c.disconnect()


asyncio.get_event_loop().run_until_complete(main())

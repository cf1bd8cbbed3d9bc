"""A slixmpp guest: SASL ANONYMOUS on an anonymous host, then a MUC room with an account holder.

Usage: slixmpp_anonymous.py HOST PORT ROOM. slixmpp picks ANONYMOUS by itself when its JID has
no local part and it has no password (feature_mechanisms: no username -> ANONYMOUS, RFC 4505).
The guest enters ROOM as "guest" (XEP-0045 §7.2) where the test's account holder "alice"
already is, says "hello from a slixmpp guest", and waits for alice's "welcome, guest" (§7.4).
Prints one JSON line with the bound JID, the mechanism, the occupants it saw and the groupchat
messages it got; exits 0 when everything arrived.
"""
import asyncio
import json
import ssl
import sys

import slixmpp

host, port, room = sys.argv[1], int(sys.argv[2]), sys.argv[3]
result = {}


class Guest(slixmpp.ClientXMPP):
    def __init__(self):
        # A bare domain and no password: slixmpp uses ANONYMOUS.
        super().__init__(host, "")
        loop = asyncio.get_event_loop()
        self.ready = loop.create_future()
        self.welcomed = loop.create_future()
        self.messages = []
        # The test server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ("xep_0030", "xep_0045"):
            self.register_plugin(p)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("groupchat_message", self.on_groupchat)
        self.add_event_handler("failed_all_auth", lambda *_: self.fail("failed_all_auth"))

    def fail(self, why):
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(why))

    async def on_start(self, _event):
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(True)

    def on_groupchat(self, msg):
        if msg["body"]:
            self.messages.append([msg["mucnick"], msg["body"]])
            if msg["mucnick"] == "alice" and msg["body"] == "welcome, guest" and not self.welcomed.done():
                self.welcomed.set_result(True)


async def main():
    guest = Guest()
    guest.connect(address=("127.0.0.1", port))
    await asyncio.wait_for(guest.ready, 20)
    mech = guest["feature_mechanisms"].mech
    result["mech"] = mech.name if mech else None
    result["jid"] = str(guest.boundjid)
    muc = guest.plugin["xep_0045"]
    presence, _subject, occupants, _history = await muc.join_muc_wait(room, "guest", maxstanzas=0, timeout=20)
    result["codes"] = sorted(int(s) for s in presence["muc"]["status_codes"])
    result["saw"] = sorted(o["from"].resource for o in occupants)
    guest.send_message(mto=room, mbody="hello from a slixmpp guest", mtype="groupchat")
    await asyncio.wait_for(guest.welcomed, 20)
    result["got"] = guest.messages
    guest.disconnect()
    await asyncio.sleep(0.2)


try:
    asyncio.get_event_loop().run_until_complete(main())
except Exception as e:  # report, do not hide: the test prints this line
    result["error"] = repr(e)
print(json.dumps(result))
sys.exit(0 if "error" not in result else 1)

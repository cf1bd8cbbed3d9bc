"""A newcomer registers on an invite-only Parley host with slixmpp, using an invitation token.

Usage: slixmpp_invite_register.py HOST PORT TOKEN USER PASSWORD. Before in-band registration
(slixmpp's xep_0077 plugin) the client sends the token (XEP-0445 §3: <preauth
xmlns='urn:xmpp:pars:0'/>), registers, logs in and reads its roster (the inviter, subscribed both
ways). Prints one JSON line with what happened and exits 0 when it all worked.
"""
import asyncio
import json
import ssl
import sys
from xml.etree import ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError

host, port, token, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
result = {}


class Newcomer(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(f"{user}@{host}/slix", password)
        self.done = asyncio.get_event_loop().create_future()
        # The test server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        # slixmpp 1.8 holds every stanza back until the session starts, the xep_0077 plugin's
        # own registration IQs included; registering needs them sent before authentication.
        self._always_send_everything = True
        for p in ("xep_0030", "xep_0004", "xep_0077"):
            self.register_plugin(p)
        self.add_event_handler("register", self.on_register)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("failed_all_auth", self.on_failed)

    async def on_register(self, _form):
        pre = self.Iq()
        pre["type"] = "set"
        pre.append(ET.fromstring(f"<preauth xmlns='urn:xmpp:pars:0' token='{token}'/>"))
        try:
            await pre.send()
            result["preauth"] = "result"
        except IqError as e:
            result["preauth"] = e.iq["error"]["condition"]
        reg = self.Iq()
        reg["type"] = "set"
        reg["register"]["username"] = user
        reg["register"]["password"] = password
        try:
            await reg.send()
            result["register"] = "result"
        except IqError as e:
            result["register"] = e.iq["error"]["condition"]
            self.disconnect()
            if not self.done.done():
                self.done.set_result(True)

    async def on_start(self, _event):
        roster = await self.get_roster()
        result["roster"] = sorted(
            [str(jid), item["subscription"]] for jid, item in roster["roster"]["items"].items()
        )
        self.disconnect()
        if not self.done.done():
            self.done.set_result(True)

    def on_failed(self, _event):
        result["auth"] = "failed"
        self.disconnect()
        if not self.done.done():
            self.done.set_result(True)


async def main():
    c = Newcomer()
    c.connect(address=("127.0.0.1", port))
    await asyncio.wait_for(c.done, 30)
    await asyncio.sleep(0.2)


try:
    asyncio.get_event_loop().run_until_complete(main())
except Exception as e:  # report, do not hide: the test prints this line
    result["error"] = repr(e)
print(json.dumps(result))
sys.exit(0 if "error" not in result else 1)

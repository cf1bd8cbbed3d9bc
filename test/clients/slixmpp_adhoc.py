"""An admin runs XEP-0133 commands on Parley with slixmpp's XEP-0050 plugin.

Usage: slixmpp_adhoc.py HOST PORT. alice (an admin of HOST) lists the commands (XEP-0050 §3.2),
runs get-online-users-num (XEP-0133 §4.15), then announce (§4.23) by filling in the form the
server sent; bob, online, receives the announcement, and creates a contact invitation
(XEP-0401 §3). Prints one JSON line with what happened and
exits 0 when everything arrived.
"""
import asyncio
import json
import ssl
import sys

import slixmpp

host, port = sys.argv[1], int(sys.argv[2])
ADMIN = "http://jabber.org/protocol/admin"
result = {}


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.ready = asyncio.get_event_loop().create_future()
        self.announced = asyncio.get_event_loop().create_future()
        # The test server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ("xep_0030", "xep_0004", "xep_0050"):
            self.register_plugin(p)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)

    async def on_start(self, _event):
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(True)

    def on_message(self, msg):
        if str(msg["from"]) == host and not self.announced.done():
            self.announced.set_result([msg["subject"], msg["body"]])


async def main():
    alice = Client(f"alice@{host}/slix", "alice-pw")
    bob = Client(f"bob@{host}/slix", "bob-pw")
    for c in (alice, bob):
        c.connect(address=("127.0.0.1", port))
    await asyncio.wait_for(asyncio.gather(alice.ready, bob.ready), 20)
    adhoc = alice.plugin["xep_0050"]

    items = await adhoc.get_commands(host)
    result["commands"] = sorted(i[1] for i in items["disco_items"]["items"] if i[1].startswith(ADMIN))

    done = await adhoc.send_command(host, f"{ADMIN}#get-online-users-num")
    result["count_status"] = done["command"]["status"]
    result["onlineusersnum"] = done["command"]["form"]["values"]["onlineusersnum"]

    first = await adhoc.send_command(host, f"{ADMIN}#announce")
    form = first["command"]["form"]
    result["announce_fields"] = sorted(
        [var, f["type"]] for var, f in form.get_fields().items() if var != "FORM_TYPE"
    )
    form["type"] = "submit"
    form.field["subject"]["value"] = "Hello"
    form.field["announcement"]["value"] = "From slixmpp"
    done = await adhoc.send_command(
        host,
        f"{ADMIN}#announce",
        action="complete",
        payload=form,
        sessionid=first["command"]["sessionid"],
    )
    result["announce_status"] = done["command"]["status"]
    result["bob_got"] = await asyncio.wait_for(bob.announced, 20)

    # XEP-0401 §3: any account creates a contact invitation; no form, completed at once.
    bob_adhoc = bob.plugin["xep_0050"]
    bob_items = await bob_adhoc.get_commands(host)
    result["bob_commands"] = sorted(i[1] for i in bob_items["disco_items"]["items"])
    invite = await bob_adhoc.send_command(host, "urn:xmpp:invite#invite")
    values = invite["command"]["form"]["values"]
    result["invite_status"] = invite["command"]["status"]
    result["invite_uri_ok"] = values["uri"].startswith(f"xmpp:bob@{host}?roster;preauth=")
    result["invite_page_ok"] = "/invite/" in values["landing-url"]
    for c in (alice, bob):
        c.disconnect()
    await asyncio.sleep(0.2)


try:
    asyncio.get_event_loop().run_until_complete(main())
except Exception as e:  # report, do not hide: the test prints this line
    result["error"] = repr(e)
print(json.dumps(result))
sys.exit(0 if "error" not in result else 1)

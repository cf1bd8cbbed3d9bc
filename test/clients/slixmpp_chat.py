"""Two slixmpp clients log in to Parley and exchange a message each way.

Usage: slixmpp_chat.py HOST PORT MODE MECH  (MODE: starttls | directtls; MECH: a SASL mechanism
name or "auto"). Prints one JSON line with what happened and exits 0 when both messages arrived.
"""
import asyncio
import json
import ssl
import sys

import slixmpp

host, port, mode, mech = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
result = {"alice_got": None, "bob_got": None, "mechanisms": {}}


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, name):
        super().__init__(jid, password)
        self.name = name
        self.ready = asyncio.get_event_loop().create_future()
        self.got = asyncio.get_event_loop().create_future()
        # The test server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        if mech != "auto":
            self["feature_mechanisms"].use_mech = mech
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("failed_all_auth", lambda *_: self.ready.done() or self.ready.set_exception(RuntimeError("auth failed")))

    async def on_start(self, _event):
        self.send_presence()
        result["mechanisms"][self.name] = self["feature_mechanisms"].mech.name if self["feature_mechanisms"].mech else None
        if not self.ready.done():
            self.ready.set_result(True)

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal") and not self.got.done():
            self.got.set_result((str(msg["from"]), msg["body"]))


async def main():
    alice = Client(f"alice@{host}/slix", "alice-pw", "alice")
    bob = Client(f"bob@{host}/slix", "bob-pw", "bob")
    for c in (alice, bob):
        # slixmpp 1.8: use_ssl is direct TLS (XEP-0368); otherwise STARTTLS is forced.
        if mode == "directtls":
            c.connect(address=("127.0.0.1", port), use_ssl=True, force_starttls=False)
        else:
            c.connect(address=("127.0.0.1", port))
    await asyncio.wait_for(asyncio.gather(alice.ready, bob.ready), 20)
    alice.send_message(mto=f"bob@{host}/slix", mbody="hello from alice", mtype="chat")
    bob.send_message(mto=f"alice@{host}", mbody="hello from bob", mtype="chat")
    result["bob_got"] = list(await asyncio.wait_for(bob.got, 20))
    result["alice_got"] = list(await asyncio.wait_for(alice.got, 20))
    for c in (alice, bob):
        c.disconnect()
    await asyncio.sleep(0.2)


try:
    asyncio.get_event_loop().run_until_complete(main())
except Exception as e:  # report, do not hide: the test prints this line
    result["error"] = repr(e)
print(json.dumps(result))
sys.exit(0 if result["alice_got"] and result["bob_got"] else 1)

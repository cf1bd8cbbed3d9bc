"""slixmpp's xep_0377 plugin reports a JID as spam while blocking it (XEP-0191 + XEP-0377 :0).

Usage: slixmpp_report.py HOST PORT USER PASSWORD REPORTED. Prints one JSON line: whether the
block IQ was answered with a result, and whether the blocklist then holds the reported JID.
"""
import asyncio
import json
import ssl
import sys

import slixmpp

host, port, user, password, reported = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
result = {"block_result": None, "listed": None}


class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(f"{user}@{host}/slix", password)
        self.ready = asyncio.get_event_loop().create_future()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0191")
        self.register_plugin("xep_0377")
        self.add_event_handler("session_start", lambda _e: self.ready.done() or self.ready.set_result(True))


async def main():
    c = Client()
    c.connect(address=("127.0.0.1", port))
    await asyncio.wait_for(c.ready, 20)
    iq = c.make_iq_set()
    iq["block"]["items"] = [reported]
    iq["block"]["report"]["spam"] = True
    iq["block"]["report"]["text"] = "buy cheap stuff"
    answer = await iq.send(timeout=20)
    result["block_result"] = answer["type"]
    blocked = await c["xep_0191"].get_blocked(timeout=20)
    result["listed"] = reported in [str(j) for j in blocked["blocklist"]["items"]]
    c.disconnect()
    await asyncio.sleep(0.2)


try:
    asyncio.get_event_loop().run_until_complete(main())
except Exception as e:  # report, do not hide: the test prints this line
    result["error"] = repr(e)
print(json.dumps(result))

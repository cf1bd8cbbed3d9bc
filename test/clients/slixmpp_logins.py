"""One account logs in with slixmpp several times in a row, each time on a new connection.

Usage: slixmpp_logins.py HOST PORT USER PASSWORD COUNT  (STARTTLS, slixmpp's own choice of
mechanism). Prints one JSON line: for each login whether it succeeded, with which mechanism, and
the SASL failures (condition, text) slixmpp saw before; stops after the first login that fails.
Exits 0 when every login succeeded.
"""
import asyncio
import json
import ssl
import sys

import slixmpp

host, port, user, password, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
logins = []


async def login_once():
    c = slixmpp.ClientXMPP(f"{user}@{host}/logins", password)
    # The test server's certificate is self-signed.
    c.ssl_context.check_hostname = False
    c.ssl_context.verify_mode = ssl.CERT_NONE
    loop = asyncio.get_event_loop()
    outcome = loop.create_future()
    record = {"ok": False, "mech": None, "failures": []}

    def settle(ok, why=None):
        if outcome.done():
            return
        record["ok"] = ok
        if why:
            record["error"] = why
        outcome.set_result(None)

    def on_failed_auth(stanza):
        record["failures"].append([stanza["condition"], stanza["text"]])

    def on_start(_event):
        mech = c["feature_mechanisms"].mech
        record["mech"] = mech.name if mech else None
        settle(True)

    c.add_event_handler("failed_auth", on_failed_auth)
    c.add_event_handler("session_start", on_start)
    c.add_event_handler("failed_all_auth", lambda *_: settle(False, "failed_all_auth"))
    c.add_event_handler("disconnected", lambda *_: settle(False, "disconnected"))
    c.connect(address=("127.0.0.1", port))
    try:
        await asyncio.wait_for(outcome, 20)
    except asyncio.TimeoutError:
        settle(False, "timeout")
    logins.append(record)
    c.disconnect()
    # Let the close reach the server before the next connection.
    await asyncio.sleep(0.1)
    return record["ok"]


async def main():
    for _ in range(count):
        if not await login_once():
            break


asyncio.get_event_loop().run_until_complete(main())
print(json.dumps({"logins": logins}))
sys.exit(0 if len(logins) == count and all(r["ok"] for r in logins) else 1)

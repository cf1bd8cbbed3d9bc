"""A slixmpp ComponentXMPP (XEP-0114) connects to Parley's component port; a slixmpp client
talks to it: a message and a disco#info IQ to the component get answers, and the component
sends the client a message of its own.

Usage: slixmpp_component.py HOST C2S_PORT COMPONENT_PORT DOMAIN SECRET USER PASSWORD
Prints one JSON line with what happened.
"""
import asyncio
import json
import ssl
import sys

import slixmpp
from slixmpp.componentxmpp import ComponentXMPP

host, c2s_port, comp_port, domain, secret, user, password = sys.argv[1:8]
result = {"component_started": False, "echo": None, "disco_identity": None, "pushed": None}


class Echo(ComponentXMPP):
    def __init__(self):
        super().__init__(domain, secret, "127.0.0.1", int(comp_port))
        self.register_plugin("xep_0030")
        self["xep_0030"].add_identity(category="gateway", itype="xmpp", name="Echo gateway")
        self.ready = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)

    def on_start(self, _event):
        result["component_started"] = True
        if not self.ready.done():
            self.ready.set_result(True)

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            # From an address at the component's domain: XEP-0114 lets it use any.
            msg.reply(f"echo: {msg['body']}").send()


class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(f"{user}@{host}/slix", password)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0030")
        self.ready = asyncio.get_event_loop().create_future()
        self.messages = asyncio.Queue()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", lambda m: self.messages.put_nowait(m))

    def on_start(self, _event):
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(True)


async def next_from(client, sender_domain):
    while True:
        m = await asyncio.wait_for(client.messages.get(), 20)
        if m["from"].domain == sender_domain:
            return m


async def main():
    echo = Echo()
    echo.connect()
    await asyncio.wait_for(echo.ready, 20)
    client = Client()
    client.connect(address=("127.0.0.1", int(c2s_port)))
    await asyncio.wait_for(client.ready, 20)

    client.send_message(mto=f"bot@{domain}", mbody="hi", mtype="chat")
    m = await next_from(client, domain)
    result["echo"] = [str(m["from"]), m["body"]]

    info = await client["xep_0030"].get_info(jid=domain, timeout=20)
    identities = info["disco_info"]["identities"]
    # slixmpp's identity tuples are (category, type, lang, name).
    result["disco_identity"] = [[i[0], i[1], i[3]] for i in identities][0] if identities else None

    echo.send_message(mto=f"{user}@{host}", mfrom=f"news@{domain}", mbody="pushed", mtype="chat")
    m = await next_from(client, domain)
    result["pushed"] = [str(m["from"]), m["body"]]

    client.disconnect()
    echo.disconnect()
    await asyncio.sleep(0.2)


try:
    asyncio.get_event_loop().run_until_complete(main())
finally:
    print(json.dumps(result))

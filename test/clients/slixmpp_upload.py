"""slixmpp uploads a file with its own XEP-0363 plugin and downloads it again.

Usage: slixmpp_upload.py HOST PORT USER PASSWORD SIZE. The plugin finds the upload service
through disco (the server's items, the store/file identity, the max-file-size form), asks for a
slot and PUTs the bytes with aiohttp; the script then GETs the URL it was given (aiohttp again)
and compares. Prints one JSON line: the GET URL, the service and max-file-size the plugin found,
the SHA-256 of what was sent and what came back, and the download's Content-Type.
"""
import asyncio
import hashlib
import io
import json
import os
import ssl
import sys

import aiohttp
import slixmpp

host, port, user, password, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
result = {}


class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(f"{user}@{host}/upload", password)
        # The test server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0363")
        self.add_event_handler("session_start", self.start)

    async def start(self, _event):
        try:
            # slixmpp 1.8.3's own discovery (xep_0030.get_info_from_domain) hands coroutines to
            # asyncio.wait, which Python 3.12 refuses: the same walk, done with xep_0030 here,
            # then the plugin takes over (slot request, PUT).
            upload = self["xep_0363"]
            items = await self["xep_0030"].get_items(jid=host, timeout=10)
            for jid, _node, _name in items["disco_items"]["items"]:
                info = await self["xep_0030"].get_info(jid=jid, timeout=10)
                if ("store", "file") in [(i[0], i[1]) for i in info["disco_info"]["identities"]] and \
                        "urn:xmpp:http:upload:0" in info["disco_info"]["features"]:
                    upload.upload_service = info["from"]
                    for form in info["disco_info"].iterables:
                        values = form["values"]
                        if values["FORM_TYPE"] == ["urn:xmpp:http:upload:0"]:
                            upload.max_file_size = int(values["max-file-size"])
                    break
            data = os.urandom(size)
            url = await self["xep_0363"].upload_file(
                "photo.jpg", size=size, content_type="image/jpeg", input_file=io.BytesIO(data), timeout=30
            )
            result["url"] = url
            result["service"] = str(self["xep_0363"].upload_service)
            result["max_file_size"] = self["xep_0363"].max_file_size
            result["sent"] = hashlib.sha256(data).hexdigest()
            async with aiohttp.ClientSession() as http:
                async with http.get(url) as res:
                    body = await res.read()
                    result["status"] = res.status
                    result["content_type"] = res.headers.get("Content-Type")
                    result["received"] = hashlib.sha256(body).hexdigest()
        except Exception as e:  # reported in the JSON line
            result["error"] = repr(e)
        self.disconnect()


async def main():
    c = Client()
    c.connect(address=("127.0.0.1", port))
    await asyncio.wait_for(c.disconnected, 60)


try:
    asyncio.get_event_loop().run_until_complete(main())
except Exception as e:  # report, do not hide: the test prints this line
    result["error"] = repr(e)
print(json.dumps(result))

"""Three slixmpp clients use Parley's PEP (XEP-0163) with slixmpp's own plugins.

Usage: slixmpp_pep.py HOST PORT. alice and bob are mutual contacts (the test sets that up);
carol is a stranger. Steps, each recorded in one JSON line printed at the end:
- OMEMO's flow (XEP-0384 as Conversations and Dino do it): alice publishes a device list and a
  bundle with publish-options (XEP-0060 §7.1.5, access_model=open, max_items=max for the
  bundle); carol, not subscribed and not a contact, fetches both.
- +notify (XEP-0163 §4.3, XEP-0115 caps computed by slixmpp's xep_0115): bob asked for tune
  notifications with xep_0163.add_interest; alice publishes a tune; bob gets the event.
- Avatars: alice publishes a XEP-0084 avatar with xep_0084; bob reads alice's vCard
  (XEP-0054) and finds the same picture (XEP-0398); bob sets a vCard photo with xep_0054 and
  alice reads bob's XEP-0084 metadata.
- Bookmarks: the server lists jabber:iq:private (poezio looks there before it stores bookmarks);
  alice stores XEP-0048 bookmarks in private XML (xep_0049) and reads them back as
  XEP-0402 items (xep_0060); she stores them in PEP (xep_0223, #compat-pep) and the private copy
  follows.
Exits 0 when it ran to the end.
"""
import asyncio
import hashlib
import json
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.plugins.xep_0048 import Bookmarks

host, port = sys.argv[1], int(sys.argv[2])
result = {}
TUNE = "http://jabber.org/protocol/tune"
DEVICELIST = "eu.siacs.conversations.axolotl.devicelist"
BUNDLE = "eu.siacs.conversations.axolotl.bundles:4242"
AXOLOTL = "eu.siacs.conversations.axolotl"
# A 1x1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8ffff3f0005fe02fea7d60d4800"
    "00000049454e44ae426082"
)


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, plugins):
        super().__init__(jid, password)
        self.ready = asyncio.get_event_loop().create_future()
        self.events = []
        self.got_event = asyncio.get_event_loop().create_future()
        # The test server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in plugins:
            self.register_plugin(p)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("pubsub_publish", self.on_publish)

    async def on_start(self, _event):
        self.send_presence()
        await self.get_roster()
        if not self.ready.done():
            self.ready.set_result(True)

    def on_publish(self, msg):
        items = msg["pubsub_event"]["items"]
        self.events.append([items["node"], str(msg["from"])])
        if items["node"] == TUNE and not self.got_event.done():
            self.got_event.set_result(True)


def options(**fields):
    form = slixmpp.plugins.xep_0004.stanza.Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#publish-options")
    for k, v in fields.items():
        form.add_field(var=k, value=v)
    return form


def el(xml):
    return ET.fromstring(xml)


PLUGINS = ("xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0084", "xep_0054",
           "xep_0153", "xep_0049", "xep_0048", "xep_0223")


async def main():
    alice = Client(f"alice@{host}/slix", "alice-pw", PLUGINS)
    bob = Client(f"bob@{host}/slix", "bob-pw", PLUGINS)
    carol = Client(f"carol@{host}/slix", "carol-pw", PLUGINS)
    for c in (alice, bob, carol):
        c.connect(address=("127.0.0.1", port))
    await asyncio.wait_for(asyncio.gather(alice.ready, bob.ready, carol.ready), 20)
    ps_a, ps_c = alice.plugin["xep_0060"], carol.plugin["xep_0060"]

    # --- OMEMO's device list and bundle, read by a stranger ---
    await ps_a.publish(None, DEVICELIST, id="current",
                       payload=el(f"<list xmlns='{AXOLOTL}'><device id='4242'/></list>"),
                       options=options(**{"pubsub#access_model": "open"}))
    await ps_a.publish(None, BUNDLE, id="current",
                       payload=el(f"<bundle xmlns='{AXOLOTL}'><identityKey>QUJD</identityKey></bundle>"),
                       options=options(**{"pubsub#access_model": "open", "pubsub#max_items": "max"}))
    iq = await ps_c.get_items(f"alice@{host}", DEVICELIST)
    devices = [d.get("id") for item in iq["pubsub"]["items"] for d in item["payload"]]
    iq = await ps_c.get_items(f"alice@{host}", BUNDLE, max_items=1)
    bundles = [item["payload"].tag for item in iq["pubsub"]["items"]]
    result["omemo"] = {"devices": devices, "bundle": bundles}

    # --- +notify: bob wants tunes (caps with tune+notify), alice publishes one ---
    bob.plugin["xep_0163"].add_interest(TUNE)
    # add_interest recomputes the caps in the background; wait for that, then announce them.
    await bob.plugin["xep_0115"].update_caps(broadcast=False)
    bob.send_presence()
    # The server asks bob's client for the new caps (XEP-0115 §6.3) and alice's last items
    # follow; a round trip to the server and back to bob's client lets that finish.
    await bob.plugin["xep_0030"].get_info(jid=host, timeout=10)
    await bob.plugin["xep_0030"].get_info(jid=f"bob@{host}/slix", ifrom=f"bob@{host}/slix", timeout=10)
    await ps_a.publish(None, TUNE, payload=el(f"<tune xmlns='{TUNE}'><title>Slixmpp song</title></tune>"))
    await asyncio.wait_for(bob.got_event, 10)
    result["notified"] = [e for e in bob.events if e[0] == TUNE][:1]

    # --- avatars: XEP-0084 -> vCard (XEP-0398), and vCard -> XEP-0084 ---
    await alice.plugin["xep_0084"].publish_avatar(PNG)
    sha = hashlib.sha1(PNG).hexdigest()
    await alice.plugin["xep_0084"].publish_avatar_metadata([{"id": sha, "type": "image/png", "bytes": len(PNG)}])
    vcard = await bob.plugin["xep_0054"].get_vcard(f"alice@{host}")
    binval = vcard["vcard_temp"]["PHOTO"]["BINVAL"]
    result["vcard_photo_matches"] = binval == PNG
    card = bob.plugin["xep_0054"].make_vcard()
    card["FN"] = "Bob"
    card["PHOTO"]["TYPE"] = "image/png"
    card["PHOTO"]["BINVAL"] = PNG
    await bob.plugin["xep_0054"].publish_vcard(card)
    iq = await alice.plugin["xep_0060"].get_items(f"bob@{host}", "urn:xmpp:avatar:metadata")
    ids = [item["id"] for item in iq["pubsub"]["items"]]
    result["avatar_from_vcard"] = ids == [sha]

    # --- bookmarks: XEP-0048 in private XML <-> XEP-0402 ---
    # poezio 0.14 (Debian 12) stores bookmarks in private XML only when the server's disco#info
    # lists jabber:iq:private (core.check_bookmark_storage), as Prosody's mod_private does.
    info = await alice.plugin["xep_0030"].get_info(jid=host)
    result["server_lists_private"] = "jabber:iq:private" in info["disco_info"]["features"]
    bookmarks = Bookmarks()
    bookmarks.add_conference(f"room@conference.{host}", "alice", name="Room", autojoin=True)
    await alice.plugin["xep_0048"].set_bookmarks(bookmarks, method="xep_0049")
    iq = await ps_a.get_items(None, "urn:xmpp:bookmarks:1")
    result["bookmarks2"] = sorted(item["id"] for item in iq["pubsub"]["items"])
    bookmarks.add_conference(f"other@conference.{host}", "alice", name="Other", autojoin=False)
    await alice.plugin["xep_0048"].set_bookmarks(bookmarks, method="xep_0223")
    iq = await alice.plugin["xep_0048"].get_bookmarks(method="xep_0049")
    private = iq["private"]["bookmarks"]
    result["private_after_pep"] = sorted(str(c["jid"]) for c in private["conferences"])

    for c in (alice, bob, carol):
        c.disconnect()


try:
    asyncio.get_event_loop().run_until_complete(asyncio.wait_for(main(), 90))
finally:
    print(json.dumps(result))

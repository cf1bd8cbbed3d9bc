/**
 * Starts Converse.js for test/e2e/browser.test.ts. The query string names the transport and the
 * account: ?transport=websocket|bosh&url=<endpoint>&jid=<jid>&password=<password>, or
 * &authentication=anonymous with the guest domain as jid and no password. &omemo=1 (for
 * test/e2e/browser-omemo.test.ts) leaves Converse's OMEMO plugins enabled and makes new chats
 * encrypted (`omemo_default`); without it they stay blacklisted.
 *
 * A whitelisted plugin hands the test Converse's own API (the `_converse.api` that plugins get)
 * as `window.parley`, and records the connection status, so the test can wait for the login and
 * look at chats without depending on Converse's DOM for anything but the message it types.
 */
import converse from "/dist/converse.min.js";

{
	const params = new URLSearchParams(location.search);
	const transport = params.get("transport");
	const url = params.get("url");
	const omemo = params.get("omemo") === "1";

	/** What the test reads: the API, "connected" once logged in, every status change. */
	const parley = { api: null, connected: false, statuses: [] };
	window.parley = parley;

	converse.plugins.add("parley-harness", {
		initialize() {
			const { api } = this._converse;
			parley.api = api;
			api.listen.on("connected", () => {
				parley.connected = true;
			});
			api.listen.on("disconnected", () => {
				parley.connected = false;
			});
			api.listen.on("statusInitialized", () => parley.statuses.push("initialized"));
		},
	});

	converse.initialize({
		// The endpoint comes from the test; XEP-0156 discovery is tested elsewhere.
		websocket_url: transport === "websocket" ? url : undefined,
		bosh_service_url: transport === "bosh" ? url : undefined,
		discover_connection_methods: false,
		// "anonymous": SASL ANONYMOUS to the domain given as `jid` (XEP-0175), no password.
		authentication: params.get("authentication") ?? "login",
		auto_login: true,
		auto_reconnect: false,
		jid: params.get("jid"),
		password: params.get("password") ?? undefined,
		// bob is not in alice's roster; his reply must still be shown.
		allow_non_roster_messaging: true,
		view_mode: "fullscreen",
		// Everything from this origin (the default is '/dist'), and nothing from the network.
		assets_path: "/dist",
		i18n: "en",
		autocomplete_providers_url: "",
		xmpp_providers_url: "",
		play_sounds: false,
		show_desktop_notifications: false,
		whitelisted_plugins: ["parley-harness"],
		// OMEMO (XEP-0384) only where the test asks for it: it generates keys and publishes them
		// to PEP at login, and loads libomemo's wasm (served by browser-omemo.test.ts).
		blacklisted_plugins: omemo ? [] : ["converse-omemo", "converse-omemo-views"],
		omemo_default: omemo,
		loglevel: "debug",
	});
}

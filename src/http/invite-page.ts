/**
 * The invitation landing page, `GET /invite/<token>` on the HTTP(S) listener (like Prosody's
 * mod_invites_page): what a newcomer sees when they open the link an invitation gives
 * (XEP-0401's `landing-url`). It says who invites them where, which app to install, and gives
 * the `xmpp:` URI (XEP-0401 §4, XEP-0147) that app opens to register with the token (XEP-0445)
 * or to add the inviter (XEP-0379). Plain HTML and inline CSS: no script, nothing fetched from
 * elsewhere (the Content-Security-Policy says so), and no Referer, since the URL is a secret.
 */
import { type Invite, InviteStore, inviteUri } from "../auth/invites.ts";
import type { Core, Host } from "../core/contracts.ts";

/** XMPP apps to suggest, by platform (the list Prosody's invite page and joinjabber.org give). */
const APPS: readonly { name: string; platforms: string; url: string }[] = [
	{ name: "Conversations", platforms: "Android", url: "https://conversations.im/" },
	{ name: "Monal", platforms: "iPhone, iPad, Mac", url: "https://monal-im.org/" },
	{ name: "Gajim", platforms: "Windows, Linux", url: "https://gajim.org/" },
	{ name: "Dino", platforms: "Linux", url: "https://dino.im/" },
];

function esc(s: string): string {
	return s
		.replaceAll("&", "&amp;")
		.replaceAll("<", "&lt;")
		.replaceAll(">", "&gt;")
		.replaceAll('"', "&quot;")
		.replaceAll("'", "&#39;");
}

export interface InvitePage {
	status: number;
	html: string;
}

/** Headers of every answer: the page is a secret and fetches nothing. */
export const INVITE_PAGE_HEADERS = {
	"content-type": "text/html; charset=utf-8",
	"content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'",
	"referrer-policy": "no-referrer",
	"cache-control": "no-store",
	"x-content-type-options": "nosniff",
} as const;

/** The invitation with this token on one of the server's hosts. */
async function find(core: Core, token: string): Promise<{ host: Host; invite: Invite } | null> {
	for (const host of core.hosts.values()) {
		const invite = await new InviteStore(host.keyval<Invite>("invites")).get(token);
		if (invite) return { host, invite };
	}
	return null;
}

function page(title: string, body: string): string {
	return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${esc(title)}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#222}
h1{font-size:1.5rem}.button{display:inline-block;padding:.6rem 1.2rem;background:#1d6fb8;color:#fff;border-radius:.4rem;text-decoration:none}
code{word-break:break-all;background:#f2f2f2;padding:.1rem .3rem}li{margin:.3rem 0}
</style>
</head>
<body>
${body}
</body>
</html>
`;
}

/** The page for `token`: the invitation, or why it cannot be used (404 / 410). */
export async function invitePage(core: Core, token: string): Promise<InvitePage> {
	const found = token ? await find(core, token) : null;
	const refusal = InviteStore.check(found?.invite);
	if (!found || refusal) {
		const why =
			refusal === "expired"
				? "This invitation has expired."
				: refusal === "used"
					? "This invitation has already been used."
					: "This invitation does not exist, or has been revoked.";
		return {
			status: found ? 410 : 404,
			html: page(
				"Invitation not valid",
				`<h1>Invitation not valid</h1>\n<p>${esc(why)}</p>\n<p>Ask the person who invited you for a new one.</p>`,
			),
		};
	}
	const { host, invite } = found;
	const uri = inviteUri(invite, host.name);
	const inviter = invite.roster ? `${invite.roster}@${host.name}` : undefined;
	const title = inviter
		? `${inviter} invites you to chat`
		: `You are invited to chat on ${host.name}`;
	// Registration needs the host's `register` module; without it the token only befriends.
	const canRegister = invite.register && host.modules.isLoaded("register");
	const what = canRegister
		? invite.username
			? `an account <strong>${esc(invite.username)}@${esc(host.name)}</strong>`
			: `an account on <strong>${esc(host.name)}</strong>`
		: undefined;
	const intro = inviter
		? `<p><strong>${esc(inviter)}</strong> invites you to chat with them over XMPP, the open chat network.${
				what ? ` The invitation lets you create ${what}.` : ""
			}</p>`
		: what
			? `<p>You are invited to create ${what} on XMPP, the open chat network.</p>`
			: `<p>You are invited to ${esc(host.name)} on XMPP, the open chat network, but this server does not take new accounts right now. Ask the person who invited you.</p>`;
	const apps = APPS.map(
		(a) => `<li><a href="${esc(a.url)}">${esc(a.name)}</a> (${esc(a.platforms)})</li>`,
	).join("\n");
	const expires = new Date(invite.expires).toUTCString();
	const body = `<h1>${esc(title)}</h1>
${intro}
<h2>1. Install an app</h2>
<p>Any XMPP app works; these ones understand invitations:</p>
<ul>
${apps}
</ul>
<h2>2. Open the invitation in the app</h2>
<p><a class="button" href="${esc(uri)}">Open the invitation</a></p>
<p>If the button does nothing, copy this address into the app:<br><code>${esc(uri)}</code></p>
${
	canRegister
		? `<p>An app that asks for a server and an invitation token: server <code>${esc(host.name)}</code>, token <code>${esc(invite.token)}</code>.</p>`
		: ""
}
<p><small>This invitation is valid until ${esc(expires)}.</small></p>`;
	return { status: 200, html: page(title, body) };
}

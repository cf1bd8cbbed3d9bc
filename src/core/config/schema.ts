/**
 * The configuration file's shape. Keys are written in TOML as snake_case and kept that way in
 * code, so that an error message, the docs and the code all name a setting the same way.
 *
 * Every key has a default: `parley serve` runs with no file at all. Unknown keys are errors
 * (`strictObject`), so a typo never silently falls back to a default.
 */
import { z } from "zod";

const port = z.number().int().min(0).max(65535);

const listener = (defaultPort: number, defaultEnabled = true) =>
	z
		.strictObject({
			enabled: z.boolean().default(defaultEnabled),
			address: z.string().default("::"),
			port: port.default(defaultPort),
		})
		.prefault({});

const tlsFiles = z.strictObject({
	cert: z.string().describe("path to a PEM certificate chain"),
	key: z.string().describe("path to a PEM private key"),
});

export const DEFAULT_HOST_MODULES = ["disco", "ping", "presence", "version", "time"] as const;

const host = z.strictObject({
	enabled: z.boolean().default(true),
	/** Modules loaded for this host. */
	modules: z.array(z.string()).default([...DEFAULT_HOST_MODULES]),
	/** Per-module options, `[hosts."example.org".module_options.ping]`. */
	module_options: z.record(z.string(), z.record(z.string(), z.unknown())).default({}),
	/** RFC 6120 §5.3.1: STARTTLS is mandatory-to-negotiate unless this is false. */
	require_encryption: z.boolean().optional(),
	tls: tlsFiles.optional(),
});

export type HostConfig = z.infer<typeof host>;

export const configSchema = z.strictObject({
	server: z
		.strictObject({
			data_dir: z.string().default("./data"),
			/** Written in `<stream:stream id>` logs and in disco/version answers. */
			name: z.string().default("Parley"),
		})
		.prefault({}),
	log: z
		.strictObject({
			level: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
			/** "auto": readable on a terminal, JSON otherwise. */
			format: z.enum(["auto", "json", "pretty"]).default("auto"),
		})
		.prefault({}),
	storage: z
		.strictObject({
			backend: z.enum(["sqlite", "memory"]).default("sqlite"),
			/** SQLite file, relative to server.data_dir. */
			path: z.string().default("parley.sqlite"),
		})
		.prefault({}),
	listeners: z
		.strictObject({
			/** RFC 6120 c2s with STARTTLS. */
			c2s: listener(5222),
			/** XEP-0368 direct TLS. */
			c2s_direct_tls: listener(5223),
		})
		.prefault({}),
	tls: z
		.strictObject({
			/** Default certificate for hosts without their own `tls` table. */
			cert: z.string().optional(),
			key: z.string().optional(),
			/** Generate a self-signed certificate under data_dir when a host has none. */
			self_signed: z.boolean().default(true),
		})
		.prefault({}),
	auth: z
		.strictObject({
			/** RFC 5802/7677 iteration count for newly stored SCRAM credentials. */
			scram_iterations: z.number().int().min(4096).max(1_000_000).default(4096),
			/** PLAIN is only offered over TLS unless this is true (tests, benchmarks, loopback). */
			allow_plain_without_tls: z.boolean().default(false),
			/** Require TLS before SASL for every host, unless a host says otherwise. */
			require_encryption: z.boolean().default(true),
		})
		.prefault({}),
	limits: z
		.strictObject({
			/** Bytes in one stanza once authenticated (Prosody and ejabberd use 256 KiB). */
			stanza_size: z.number().int().min(1024).default(262_144),
			/** Bytes in one stanza before authentication. */
			preauth_stanza_size: z.number().int().min(512).default(10_240),
			/** Element nesting depth inside one stanza. */
			max_depth: z.number().int().min(4).max(1000).default(64),
			/** Seconds a connection may take to authenticate and bind. */
			auth_timeout: z.number().positive().default(60),
			/** Open c2s connections per source IP; 0 = unlimited. */
			connections_per_ip: z.number().int().min(0).default(32),
			/** Failed SASL attempts per IP per minute before further attempts are delayed; 0 = off. */
			sasl_failures_per_ip: z.number().int().min(0).default(10),
			/** SASL failures allowed on one connection before it is closed. */
			sasl_failures_per_connection: z.number().int().min(1).default(3),
		})
		.prefault({}),
	hosts: z.record(z.string(), host).default({ localhost: host.parse({}) }),
});

export type Config = z.infer<typeof configSchema>;

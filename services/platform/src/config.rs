//! Settings of `cwsm serve`, layered (later wins):
//! built-in defaults < TOML file (`--config FILE` or `CWSM_CONFIG`) < `CWSM_*` environment
//! variables < command-line flags.
//!
//! | key            | env                 | default                 | meaning |
//! |----------------|---------------------|-------------------------|---------|
//! | `listen`       | `CWSM_LISTEN`       | `127.0.0.1:50051`       | gRPC address |
//! | `data_dir`     | `CWSM_DATA_DIR`     | `./cwsm-data`           | SQLite files and the embedded signing key |
//! | `database_url` | `CWSM_DATABASE_URL` | SQLite in `data_dir`    | `sqlite://…` or `postgres://…` |
//! | `redis_url`    | `CWSM_REDIS_URL`    | none: in-process bus    | `redis://…` for Redis Streams |
//! | `jwt_secret`   | `CWSM_JWT_SECRET`   | key file in `data_dir`  | HS256 secret, at least 32 bytes |
//! | `log`          | `CWSM_LOG`          | `info`                  | tracing filter (`RUST_LOG` syntax) |
//! | `log_format`   | `CWSM_LOG_FORMAT`   | `human`                 | `human` or `json` |
//! | `outbox_poll_ms` | `CWSM_OUTBOX_POLL_MS` | `500`              | relay poll when not woken |
//! | `projects_url` | `CWSM_PROJECTS_URL` | the own server when it runs projects, else none | where reporting reads the milestone log (RebuildCounts) |
//! | `projects_kept_in_memory` | `CWSM_PROJECTS_KEPT_IN_MEMORY` | `10000` | projects as last read kept for GetProject (0: none) |
//! | `max_connections` | `CWSM_MAX_CONNECTIONS` | `4096` | open connections; one beyond is accepted and closed at once |
//! | `idle_timeout_secs` | `CWSM_IDLE_TIMEOUT_SECS` | `300` | a connection with no call open this long is closed |
//! | `max_concurrent_streams` | `CWSM_MAX_CONCURRENT_STREAMS` | `100` | HTTP/2 streams open at once on one connection |
//! | `request_timeout_secs` | `CWSM_REQUEST_TIMEOUT_SECS` | `60` | a unary call (request body included) answers DEADLINE_EXCEEDED after this |
//! | `stream_timeout_secs` | `CWSM_STREAM_TIMEOUT_SECS` | `3600` | the same for a client stream (IngestReadings); WatchReport has none |
//! | `streams_per_caller` | `CWSM_STREAMS_PER_CALLER` | `4` | IngestReadings, and WatchReport, streams open at once per caller (subject and org) |
//! | `keepalive_interval_secs` | `CWSM_KEEPALIVE_INTERVAL_SECS` | `60` | HTTP/2 PING to a connection quiet this long |
//! | `keepalive_timeout_secs` | `CWSM_KEEPALIVE_TIMEOUT_SECS` | `20` | no PING ack within this: the connection is closed |
//! | `tcp_keepalive_secs` | `CWSM_TCP_KEEPALIVE_SECS` | `60` | TCP keep-alive probes after this quiet time |
//! | `max_header_list_bytes` | `CWSM_MAX_HEADER_LIST_BYTES` | `16384` | HTTP/2 headers of one request |
//! | `max_pending_reset_streams` | `CWSM_MAX_PENDING_RESET_STREAMS` | `20` | streams reset by the client before the server saw them (the "rapid reset" bound) |
//! | `max_message_bytes` | `CWSM_MAX_MESSAGE_BYTES` | `4194304` | one decoded gRPC message |
//! | `tls_cert`, `tls_key` | `CWSM_TLS_CERT`, `CWSM_TLS_KEY` | none: plaintext | PEM files: the gRPC port speaks TLS (rustls) |
//! | `tls_client_ca` | `CWSM_TLS_CLIENT_CA` | none | PEM CA: clients must present a certificate it signed (mutual TLS) |
//! | `tls_ca` | `CWSM_TLS_CA` | none: the system's roots | PEM CA the services trust when they call each other over `https://` (reporting's RebuildCounts calls projects); with `tls_client_ca` set they present `tls_cert` as their client certificate |
//! | `accounts_url` | `CWSM_ACCOUNTS_URL` | the own process when it runs accounts, else none | where the services fetch the accounts service's public keys and revocations (GetVerificationKeys) |
//! | `accounts_refresh_secs` | `CWSM_ACCOUNTS_REFRESH_SECS` | `30` | how often they are fetched (at most 60: a revocation must bite within a minute) |
//! | `district_code` | `CWSM_DISTRICT_CODE` | `320411` | the district the platform serves (GB/T 2260, 320411 = 常州市新北区): the jurisdiction of an organization registered without one |
//! | `trust_forwarded_proto` | `CWSM_TRUST_FORWARDED_PROTO` | `false` | believe `X-Forwarded-Proto: https` (only behind a TLS-terminating proxy): the dashboard's cookie is then `Secure` |
//! | `oidc_providers` | `CWSM_OIDC_PROVIDERS` | none | external OpenID Connect providers people may sign in through (see [`OidcProvider`]); in TOML `[[oidc_providers]]` tables |
//!
//! OpenTelemetry export is configured by the standard `OTEL_EXPORTER_OTLP_ENDPOINT` variables.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// An external OpenID Connect provider (a government's or a company's single sign-on) that
/// people may sign in through: registered there as a client of cwsm, its endpoints read from
/// `{issuer}/.well-known/openid-configuration`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProvider {
    /// What clients name it by (`StartExternalSignIn.provider`, `cwsm sign-in --provider`).
    pub name: String,
    /// The issuer URL, exactly as its ID tokens' `iss` says it.
    pub issuer: String,
    pub client_id: String,
    /// The client secret (HTTP Basic at the token endpoint); empty for a public client, which
    /// then relies on PKCE alone.
    #[serde(default)]
    pub client_secret: String,
    /// The redirect URIs a sign-in may ask for (registered with the provider too). One of the
    /// form `http://127.0.0.1/…` (or `[::1]`, `localhost`) allows any port (RFC 8252 §7.3:
    /// the CLI's loopback listener).
    pub redirect_uris: Vec<String>,
}

/// Without the client secret: settings are logged.
impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &if self.client_secret.is_empty() {
                    ""
                } else {
                    "…"
                },
            )
            .field("redirect_uris", &self.redirect_uris)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub jwt_secret: Option<String>,
    pub log: String,
    pub log_format: LogFormat,
    pub outbox_poll_ms: u64,
    pub projects_url: Option<String>,
    pub projects_kept_in_memory: usize,
    pub max_connections: usize,
    pub idle_timeout_secs: u64,
    pub max_concurrent_streams: u32,
    pub request_timeout_secs: u64,
    pub stream_timeout_secs: u64,
    pub streams_per_caller: usize,
    pub keepalive_interval_secs: u64,
    pub keepalive_timeout_secs: u64,
    pub tcp_keepalive_secs: u64,
    pub max_header_list_bytes: u32,
    pub max_pending_reset_streams: usize,
    pub max_message_bytes: usize,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub trust_forwarded_proto: bool,
    pub accounts_url: Option<String>,
    pub accounts_refresh_secs: u64,
    pub district_code: String,
    pub oidc_providers: Vec<OidcProvider>,
    /// Where evidence documents' bytes are kept: a folder, `file:///folder` or `s3://bucket`
    /// (see `documents::DocumentStore::open`); none: the `documents` folder in `data_dir`.
    pub documents_url: Option<String>,
    /// Options of an `s3://` document store, by `object_store`'s names (`aws_endpoint`,
    /// `aws_region`, `aws_allow_http`, `aws_access_key_id`, …), over the `AWS_*` variables.
    pub documents_options: std::collections::BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".to_string(),
            data_dir: PathBuf::from("cwsm-data"),
            database_url: None,
            redis_url: None,
            jwt_secret: None,
            log: "info".to_string(),
            log_format: LogFormat::Human,
            outbox_poll_ms: 500,
            projects_url: None,
            projects_kept_in_memory: 10_000,
            max_connections: 4096,
            idle_timeout_secs: 300,
            max_concurrent_streams: 100,
            request_timeout_secs: 60,
            stream_timeout_secs: 3600,
            streams_per_caller: 4,
            keepalive_interval_secs: 60,
            keepalive_timeout_secs: 20,
            tcp_keepalive_secs: 60,
            max_header_list_bytes: 16 * 1024,
            max_pending_reset_streams: 20,
            max_message_bytes: 4 * 1024 * 1024,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_ca: None,
            trust_forwarded_proto: false,
            accounts_url: None,
            accounts_refresh_secs: 30,
            district_code: crate::jurisdiction::DEFAULT_DISTRICT.to_string(),
            oidc_providers: Vec::new(),
            documents_url: None,
            documents_options: Default::default(),
        }
    }
}

impl Settings {
    /// Layers the sources. `flags` holds only what was given on the command line (serialize its
    /// absent options as nothing, e.g. with `skip_serializing_if = "Option::is_none"`).
    pub fn load(file: Option<&Path>, flags: impl Serialize) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CWSM_CONFIG").map(PathBuf::from));
        if let Some(path) = file {
            if !path.exists() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        figment
            // Only the settings' own keys: other CWSM_* variables (CWSM_TOKEN for the CLI,
            // CWSM_CONFIG) are not settings of the server.
            .merge(Env::prefixed("CWSM_").only(&[
                "listen",
                "data_dir",
                "database_url",
                "redis_url",
                "jwt_secret",
                "log",
                "log_format",
                "outbox_poll_ms",
                "projects_url",
                "projects_kept_in_memory",
                "max_connections",
                "idle_timeout_secs",
                "max_concurrent_streams",
                "request_timeout_secs",
                "stream_timeout_secs",
                "streams_per_caller",
                "keepalive_interval_secs",
                "keepalive_timeout_secs",
                "tcp_keepalive_secs",
                "max_header_list_bytes",
                "max_pending_reset_streams",
                "max_message_bytes",
                "tls_cert",
                "tls_key",
                "tls_client_ca",
                "tls_ca",
                "trust_forwarded_proto",
                "accounts_url",
                "accounts_refresh_secs",
                "district_code",
                "oidc_providers",
                "documents_url",
                "documents_options",
            ]))
            .merge(Serialized::defaults(flags))
            .extract()
            .context("reading settings")
    }

    /// Where evidence documents' bytes are kept: the configured location, or the `documents`
    /// folder in the data folder.
    pub fn documents(&self) -> anyhow::Result<crate::documents::DocumentStore> {
        match &self.documents_url {
            Some(url) => crate::documents::DocumentStore::open_with(url, &self.documents_options),
            None => crate::documents::DocumentStore::in_folder(&self.data_dir.join("documents")),
        }
    }

    /// The database of `service`: the configured URL, or its own SQLite file in the data folder.
    pub fn database_url_for(&self, service: &str) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}",
                self.data_dir.join(format!("{service}.db")).display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        listen: Option<String>,
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("cwsm-config-{}", crate::new_id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("cwsm.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:6000\"\nlog = \"debug\"\n").expect("write");
        let from_file = Settings::load(Some(&file), Flags { listen: None }).expect("load");
        assert_eq!(from_file.listen, "0.0.0.0:6000");
        assert_eq!(from_file.log, "debug");
        assert_eq!(from_file.outbox_poll_ms, 500);
        let flagged = Settings::load(
            Some(&file),
            Flags {
                listen: Some("127.0.0.1:7000".into()),
            },
        )
        .expect("load");
        assert_eq!(flagged.listen, "127.0.0.1:7000");
        std::fs::write(&file, "lisen = \"typo\"\n").expect("write");
        assert!(Settings::load(Some(&file), Flags { listen: None }).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn oidc_providers_are_tables_of_the_file() {
        let dir = std::env::temp_dir().join(format!("cwsm-config-{}", crate::new_id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("cwsm.toml");
        std::fs::write(
            &file,
            "[[oidc_providers]]\nname = \"gov\"\nissuer = \"https://sso.example.gov.cn\"\nclient_id = \"cwsm\"\nclient_secret = \"s3cret\"\nredirect_uris = [\"https://cwsm.example.cn/signed-in\", \"http://127.0.0.1/callback\"]\n",
        )
        .expect("write");
        let s = Settings::load(Some(&file), Flags { listen: None }).expect("load");
        assert_eq!(s.oidc_providers.len(), 1);
        assert_eq!(s.oidc_providers[0].name, "gov");
        assert_eq!(s.oidc_providers[0].redirect_uris.len(), 2);
        // A misspelt key of a provider is refused, not ignored.
        std::fs::write(&file, "[[oidc_providers]]\nname = \"gov\"\nisuer = \"x\"\n")
            .expect("write");
        assert!(Settings::load(Some(&file), Flags { listen: None }).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn embedded_databases_are_one_file_per_service() {
        let s = Settings::default();
        assert_eq!(
            s.database_url_for("matching"),
            format!(
                "sqlite://{}",
                Path::new("cwsm-data").join("matching.db").display()
            )
        );
    }
}

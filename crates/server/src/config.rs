//! Balie's typed configuration: defaults, then a TOML file, then `BALIE_*` environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use balie_core::SlaPolicy;
use serde::Deserialize;

/// Secrets in configuration use the connectors' type: `Debug` prints `[redacted]`.
pub use balie_channels::Secret;

/// Where replies on the generic API channel are delivered.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundWebhook {
    /// `http(s)://...`; empty means replies on API channels fail with a clear reason.
    pub url: String,
    /// Key for the `X-Balie-Signature: sha256=<hex HMAC>` header over the raw body.
    pub secret: Secret,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The database: empty for SQLite at `<data_dir>/balie.db`, or a `postgres://` URL for
    /// PostgreSQL (the database must exist; Balie creates its tables). A secret, as the URL
    /// may hold a password.
    pub database_url: Secret,
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes (bigger gets 413).
    pub max_body_bytes: usize,
    /// How long an agent stays logged in, in hours.
    pub session_hours: i64,
    /// Reply targets per priority.
    pub sla: SlaPolicy,
    pub outbound: OutboundWebhook,
    /// The brand new channels belong to until brands are managed in the UI.
    pub default_brand: String,
    /// Mark session cookies `Secure` (set when serving behind HTTPS).
    pub secure_cookies: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("balie-data"),
            database_url: Secret::default(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            session_hours: 12,
            sla: SlaPolicy::default(),
            outbound: OutboundWebhook::default(),
            default_brand: "Balie".to_string(),
            secure_cookies: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid value for {name}: {reason}")]
    Env { name: &'static str, reason: String },
}

impl Config {
    /// Defaults, overlaid with the TOML file if given, overlaid with `BALIE_*` variables.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_path_buf(),
                    source,
                })?
            }
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Applies `BALIE_*` overrides read through `get` (injectable for tests).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("BALIE_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("BALIE_DATABASE_URL") {
            self.database_url = Secret::new(v);
        }
        if let Some(v) = get("BALIE_LISTEN") {
            self.listen = v
                .parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::Env {
                    name: "BALIE_LISTEN",
                    reason: e.to_string(),
                })?;
        }
        if let Some(v) = get("BALIE_MAX_BODY_BYTES") {
            self.max_body_bytes =
                v.parse()
                    .map_err(|e: std::num::ParseIntError| ConfigError::Env {
                        name: "BALIE_MAX_BODY_BYTES",
                        reason: e.to_string(),
                    })?;
        }
        if let Some(v) = get("BALIE_OUTBOUND_URL") {
            self.outbound.url = v;
        }
        if let Some(v) = get("BALIE_OUTBOUND_SECRET") {
            self.outbound.secret = Secret::new(v);
        }
        Ok(())
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("balie.db")
    }

    /// Whether `database_url` names a PostgreSQL server.
    pub fn uses_postgres(&self) -> bool {
        let url = self.database_url.expose();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_matches_the_code() {
        let text = include_str!("../../../balie.example.toml");
        let parsed: Config = toml::from_str(text).expect("balie.example.toml must parse");
        assert_eq!(parsed.listen, Config::default().listen);
        assert_eq!(parsed.sla, Config::default().sla);
        assert_eq!(parsed.database_url, Config::default().database_url);
        assert!(
            text.contains("# database_url = \"postgres://"),
            "the example shows how to choose PostgreSQL"
        );
    }

    #[test]
    fn environment_overrides_file_values() {
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "BALIE_DATA_DIR" => Some("/tmp/x".into()),
            "BALIE_LISTEN" => Some("0.0.0.0:9000".into()),
            "BALIE_DATABASE_URL" => Some("postgres://balie@db/balie".into()),
            _ => None,
        })
        .expect("valid env");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert!(c.uses_postgres());
        assert!(!Config::default().uses_postgres());
        assert_eq!(c.listen.port(), 9000);
        let err = c.apply_env(|k| (k == "BALIE_LISTEN").then(|| "nonsense".into()));
        assert!(err.is_err());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let mut c = Config::default();
        c.outbound.secret = Secret::new("hunter2-very-secret");
        c.database_url = Secret::new("postgres://balie:swordfish@db/balie");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{c:?}").contains("swordfish"));
    }
}

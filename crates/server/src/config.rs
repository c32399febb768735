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
    /// Balie is served over HTTPS (directly or behind a TLS proxy): session cookies are
    /// `Secure` and `__Host-` prefixed, and pages send HSTS. A trusted proxy that says
    /// `X-Forwarded-Proto: https` has the same effect per request.
    pub secure_cookies: bool,
    /// The site's own origin (`https://desk.example.com`) when a proxy rewrites `Host`;
    /// empty means the request's `Host`. Cross-origin form posts are refused against it.
    pub public_origin: String,
    /// Reverse proxies (IP addresses or CIDR ranges) whose `X-Forwarded-For` and
    /// `X-Forwarded-Proto` are believed; from anyone else those headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// Limits that keep the server answering under hostile or broken clients.
    pub limits: Limits,
}

/// Connection, timeout and sign-in limits of the HTTP edge.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Open connections at most; at the limit the oldest connection without a request in
    /// flight is closed to make room. Keep it well under the process's open-file limit.
    pub max_connections: usize,
    /// A request's headers must arrive within this time (seconds).
    pub header_timeout_secs: u64,
    /// A request's body must arrive completely within this time (seconds).
    pub body_timeout_secs: u64,
    /// A connection without a request in flight is closed after this time (seconds).
    pub idle_timeout_secs: u64,
    /// Password checks (Argon2, about 19 MiB each) running at once; more wait their turn.
    pub password_checks: usize,
    /// Failed sign-ins per account before each further try must wait (doubling each time).
    pub login_failures_per_account: u32,
    /// Failed sign-ins per client address before each further try must wait.
    pub login_failures_per_address: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 768,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            idle_timeout_secs: 60,
            password_checks: 4,
            login_failures_per_account: 5,
            login_failures_per_address: 20,
        }
    }
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
            public_origin: String::new(),
            trusted_proxies: Vec::new(),
            limits: Limits::default(),
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
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Overwrites `target` with the number in environment variable `name`, if it is set.
fn env_number<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    target: &mut T,
) -> Result<(), ConfigError>
where
    T::Err: std::fmt::Display,
{
    if let Some(v) = get(name) {
        *target = v.trim().parse().map_err(|e: T::Err| ConfigError::Env {
            name,
            reason: e.to_string(),
        })?;
    }
    Ok(())
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
        config.validate()?;
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
        env_number(&get, "BALIE_MAX_BODY_BYTES", &mut self.max_body_bytes)?;
        let limits = &mut self.limits;
        env_number(&get, "BALIE_MAX_CONNECTIONS", &mut limits.max_connections)?;
        env_number(
            &get,
            "BALIE_HEADER_TIMEOUT_SECS",
            &mut limits.header_timeout_secs,
        )?;
        env_number(
            &get,
            "BALIE_BODY_TIMEOUT_SECS",
            &mut limits.body_timeout_secs,
        )?;
        env_number(
            &get,
            "BALIE_IDLE_TIMEOUT_SECS",
            &mut limits.idle_timeout_secs,
        )?;
        env_number(&get, "BALIE_PASSWORD_CHECKS", &mut limits.password_checks)?;
        env_number(
            &get,
            "BALIE_LOGIN_FAILURES_PER_ACCOUNT",
            &mut limits.login_failures_per_account,
        )?;
        env_number(
            &get,
            "BALIE_LOGIN_FAILURES_PER_ADDRESS",
            &mut limits.login_failures_per_address,
        )?;
        if let Some(v) = get("BALIE_SECURE_COOKIES") {
            self.secure_cookies = match v.trim() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" | "" => false,
                other => {
                    return Err(ConfigError::Env {
                        name: "BALIE_SECURE_COOKIES",
                        reason: format!("`{other}` is not true or false"),
                    });
                }
            };
        }
        if let Some(v) = get("BALIE_PUBLIC_ORIGIN") {
            self.public_origin = v.trim().trim_end_matches('/').to_string();
        }
        if let Some(v) = get("BALIE_TRUSTED_PROXIES") {
            self.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
        }
        if let Some(v) = get("BALIE_OUTBOUND_URL") {
            self.outbound.url = v;
        }
        if let Some(v) = get("BALIE_OUTBOUND_SECRET") {
            self.outbound.secret = Secret::new(v);
        }
        Ok(())
    }

    /// Checks what serde cannot: limits that would stop the server from working, and
    /// trusted proxies that do not parse.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let positive = [
            ("limits.max_connections", l.max_connections as u64),
            ("limits.header_timeout_secs", l.header_timeout_secs),
            ("limits.body_timeout_secs", l.body_timeout_secs),
            ("limits.idle_timeout_secs", l.idle_timeout_secs),
            ("limits.password_checks", l.password_checks as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    name,
                    reason: "must be at least 1".to_string(),
                });
            }
        }
        for proxy in &self.trusted_proxies {
            crate::edge::IpRange::parse(proxy).map_err(|reason| ConfigError::Invalid {
                name: "trusted_proxies",
                reason,
            })?;
        }
        let origin = &self.public_origin;
        let web_origin = origin.starts_with("https://") || origin.starts_with("http://");
        if !origin.is_empty() && !web_origin {
            return Err(ConfigError::Invalid {
                name: "public_origin",
                reason: "must start with https:// or http://".to_string(),
            });
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
        assert_eq!(parsed.limits, Config::default().limits);
        assert_eq!(parsed.secure_cookies, Config::default().secure_cookies);
        assert_eq!(parsed.trusted_proxies, Config::default().trusted_proxies);
        assert_eq!(parsed.public_origin, Config::default().public_origin);
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
    fn edge_settings_come_from_the_environment_too() {
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "BALIE_SECURE_COOKIES" => Some("true".into()),
            "BALIE_MAX_CONNECTIONS" => Some("100".into()),
            "BALIE_BODY_TIMEOUT_SECS" => Some("5".into()),
            "BALIE_TRUSTED_PROXIES" => Some("10.0.0.0/8, 127.0.0.1".into()),
            "BALIE_PUBLIC_ORIGIN" => Some("https://desk.example.com/".into()),
            _ => None,
        })
        .expect("valid env");
        assert!(c.secure_cookies);
        assert_eq!(c.limits.max_connections, 100);
        assert_eq!(c.limits.body_timeout_secs, 5);
        assert_eq!(c.trusted_proxies, ["10.0.0.0/8", "127.0.0.1"]);
        assert_eq!(c.public_origin, "https://desk.example.com");
        c.validate().expect("valid settings");
        let bad = c.apply_env(|k| (k == "BALIE_SECURE_COOKIES").then(|| "maybe".into()));
        assert!(bad.is_err());
        c.trusted_proxies = vec!["10.0.0.0/33".into()];
        assert!(
            c.validate().is_err(),
            "a prefix longer than the address is refused"
        );
        c.trusted_proxies.clear();
        c.limits.max_connections = 0;
        assert!(
            c.validate().is_err(),
            "a server that takes no connections is refused"
        );
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

//! airlock's configuration file (TOML).
//!
//! The file names the listeners, the upstream targets with the credential
//! airlock uses for each, the agent identities allowed to log in (their
//! secrets stored as SCRAM verifiers only), the TLS material for the client
//! leg, and limits. See the README's "Configuration" section for every key.
//!
//! Loading is two steps: serde reads the TOML (unknown keys are errors), then
//! [`Config::validate`] checks what types cannot (verifiers parse, files
//! exist, secrets resolve). Every error names the file, the line and the key.

mod admin;
mod error;
pub(crate) use error::toml_error_parts;
mod jwt;
mod passthrough;
mod secrets;
mod units;

pub use admin::{AdminConfig, ApprovalsConfig};
pub use error::{line_of, ConfigError};
pub use jwt::JwtConfig;
pub use passthrough::{Passthrough, PassthroughUser};
pub use units::ByteSize;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::secret::Secret;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: Listen,
    /// TLS for the client leg.
    pub tls: Option<ClientTls>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub targets: BTreeMap<String, Target>,
    #[serde(default)]
    pub identities: BTreeMap<String, Identity>,
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The audit log; without it nothing is recorded.
    pub audit: Option<AuditConfig>,
    /// Signed JWTs as agent passwords (over TLS only).
    pub jwt: Option<JwtConfig>,
    /// The admin HTTP listener (API, metrics, web console).
    pub admin: Option<AdminConfig>,
    /// Human approval of held statements.
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    /// Where the file came from, for messages; set by [`Config::load`].
    #[serde(skip)]
    pub source: PathBuf,
    /// Secrets [`Config::load_without_secrets`] could not read (unset
    /// variables, unreadable files), each as "key: why"; empty otherwise.
    #[serde(skip)]
    pub unread_secrets: Vec<String>,
    /// Whether an unreadable secret is noted rather than an error.
    #[serde(skip)]
    secrets_optional: bool,
}

/// The audit log: every connection and statement, hash-chained in SQLite.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The SQLite file (created if missing).
    pub path: PathBuf,
    /// Events queued for the background writer before sessions wait for
    /// it (backpressure: up to 5 s before each statement). Statements are
    /// refused (with `fail_closed`) only once the queue's headroom, as
    /// much again and at least 1,024 events, is used up too.
    #[serde(default = "default_audit_queue")]
    pub queue: usize,
    /// Refuse new statements while the audit log cannot record them.
    #[serde(default = "yes")]
    pub fail_closed: bool,
    /// Also write JSON lines: "stdout" or a file path (appended).
    pub json_lines: Option<String>,
    /// Remove records older than this ("90d"), at start and every hour,
    /// the chain anchored at the last one removed. Unset: keep everything.
    #[serde(default, with = "humantime_serde_opt")]
    pub retention: Option<Duration>,
}

/// Shortest HS256 secret accepted (RFC 7518: a key as long as the hash).
const MIN_HS256_SECRET: usize = 32;

fn default_audit_queue() -> usize {
    10_000
}

/// Where the guardrail rules live.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A rule file or a directory of `*.toml` rule files. Without it every
    /// statement is allowed (airlock logs a warning at start).
    pub rules: Option<Spanned<PathBuf>>,
    /// Re-read the config and rules when their files change (SIGHUP always
    /// reloads).
    #[serde(default = "yes")]
    pub watch: bool,
}

/// The part of the config file at `path` that `T` names, every other key
/// ignored and no secret read: for the commands that need one setting of
/// a running airlock's config (`log`, `approvals`).
fn read_part<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        file: path.to_path_buf(),
        error: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::from_toml(path, &text, &e))
}

/// The directory relative file names in the config at `path` are read
/// from.
fn config_dir(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Address of the Postgres listener, e.g. "127.0.0.1:6432".
    pub postgres: Option<SocketAddr>,
    /// Address of the MySQL/MariaDB listener, e.g. "127.0.0.1:3307".
    pub mysql: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// PEM certificate chain presented to clients.
    pub cert: Spanned<PathBuf>,
    /// PEM private key.
    pub key: Spanned<PathBuf>,
    /// Refuse clients that do not upgrade to TLS.
    #[serde(default)]
    pub require: bool,
    /// Also accept cleartext passwords (only ever over TLS).
    #[serde(default)]
    pub allow_cleartext_password: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_client_connections: usize,
    #[serde(with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// How long a client has to log in (TLS, startup, authentication),
    /// as Postgres's `authentication_timeout`.
    #[serde(with = "humantime_serde_compat")]
    pub login_timeout: Duration,
    /// Close a client that sends nothing for this long while no request is
    /// outstanding. "0s" disables it.
    #[serde(with = "humantime_serde_compat")]
    pub idle_timeout: Duration,
    /// How long SIGTERM waits for sessions to finish.
    #[serde(with = "humantime_serde_compat")]
    pub shutdown_timeout: Duration,
    /// Largest protocol message accepted in either direction.
    pub max_message_size: ByteSize,
    /// Most prepared statements one client session may hold at once
    /// (Postgres named statements and SQL PREPARE; MySQL statement ids).
    /// airlock keeps each one's text and judgement, and MySQL's
    /// `max_prepared_stmt_count` is shared by every session of the server.
    /// 0 = no limit.
    pub max_prepared_statements: usize,
    /// Most connections one client address may have open that have not
    /// logged in yet, across both listeners (one more is closed at once,
    /// unanswered). 0 = no limit.
    pub max_pending_logins_per_address: usize,
}

/// [`Limits::max_pending_logins_per_address`] unless set: far above what
/// a pool opening its connections at once needs, far below
/// `max_client_connections`.
pub const DEFAULT_MAX_PENDING_LOGINS_PER_ADDRESS: usize = 64;

/// The rule id refusals at `limits.max_prepared_statements` name.
pub const PREPARED_LIMIT_RULE: &str = "limits.max_prepared_statements";

/// Whether `text` is a rule file (top-level `[[policy]]` or `[[mask]]`
/// tables) given where a config was expected.
fn looks_like_rules(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|t| {
        ["policy", "mask"]
            .iter()
            .any(|k| t.get(*k).is_some_and(toml::Value::is_array))
    })
}

impl Limits {
    /// Why a statement that would prepare one more is refused when the
    /// session holds `held` (a refusal names [`PREPARED_LIMIT_RULE`]);
    /// `None` while under the limit.
    pub fn prepared_refusal(&self, held: usize) -> Option<String> {
        (self.max_prepared_statements != 0 && held >= self.max_prepared_statements).then(|| {
            format!(
                "this session holds {held} prepared statements, the most airlock allows one session (limits.max_prepared_statements = {}); close or DEALLOCATE statements it no longer uses",
                self.max_prepared_statements
            )
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_client_connections: 1000,
            connect_timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(60),
            idle_timeout: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(30),
            max_message_size: ByteSize(airlock_protocol::pg::frame::DEFAULT_MAX_MESSAGE),
            max_prepared_statements: 2000,
            max_pending_logins_per_address: DEFAULT_MAX_PENDING_LOGINS_PER_ADDRESS,
        }
    }
}

/// How airlock protects its connection to an upstream server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTlsMode {
    #[default]
    Disable,
    /// Encrypt, but do not check the certificate.
    Require,
    /// Encrypt and check the certificate chain and host name.
    VerifyFull,
}

/// An upstream database. Clients select it by naming it as their database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The server's protocol; agents reach a target through the listener of
    /// the same protocol.
    #[serde(default)]
    pub protocol: Protocol,
    pub host: String,
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// Database name on the server.
    pub database: String,
    #[serde(default)]
    pub tls: UpstreamTlsMode,
    /// CA bundle (PEM) for `verify-full`; the system roots otherwise.
    pub ca: Option<Spanned<PathBuf>>,
    /// Whether airlock sends its password in clear to a server that asks
    /// for it (`password` authentication) when `tls` is not `verify-full`:
    /// whoever answers in the server's place would have it. Off: such a
    /// login is refused (a verify-full server gets it).
    #[serde(default)]
    pub allow_cleartext_password: bool,
    /// Database user airlock logs in as.
    pub user: String,
    /// Environment variable holding that user's password.
    pub password_env: Option<Spanned<String>>,
    /// File holding that user's password (trailing newline ignored).
    pub password_file: Option<Spanned<PathBuf>>,
    /// Resolved by [`Config::validate`].
    #[serde(skip)]
    pub password: Option<Secret>,
    /// How airlock gets the database credential for a session: `static`
    /// (the user/password above), `ephemeral` (a short-lived user per
    /// session, created by the broker credential above), `passthrough`
    /// (the client's own database login, relayed; user/password above then
    /// only read the catalog for masking).
    #[serde(default)]
    pub credentials: CredentialMode,
    /// Settings for `credentials = "ephemeral"`.
    #[serde(default)]
    pub ephemeral: Ephemeral,
    /// Settings for `credentials = "passthrough"`.
    #[serde(default)]
    pub passthrough: Passthrough,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    #[default]
    Postgres,
    Mysql,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialMode {
    #[default]
    Static,
    Ephemeral,
    /// The client's own database login is relayed to the server (Postgres).
    Passthrough,
}

/// Short-lived upstream users. `user`/`password_*` of the target are then
/// the broker's credential, used only to create and drop these users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ephemeral {
    /// Role whose privileges the ephemeral user gets (`IN ROLE`).
    pub template_role: String,
    /// Per-group template roles; the first of the identity's groups found wins.
    pub group_roles: BTreeMap<String, String>,
    /// Lifetime of an ephemeral user; the session is cut when it expires.
    #[serde(with = "humantime_serde_compat")]
    pub ttl: Duration,
    /// Name prefix that marks airlock-created users (the janitor drops
    /// leftovers with this prefix and airlock's marker comment).
    pub name_prefix: String,
    /// How often the janitor looks for leftovers.
    #[serde(with = "humantime_serde_compat")]
    pub janitor_interval: Duration,
}

impl Default for Ephemeral {
    fn default() -> Self {
        Ephemeral {
            template_role: String::new(),
            group_roles: BTreeMap::new(),
            ttl: Duration::from_secs(15 * 60),
            name_prefix: "airlock_eph_".into(),
            janitor_interval: Duration::from_secs(60),
        }
    }
}

fn default_pg_port() -> u16 {
    5432
}

/// An agent allowed to log in to airlock.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// SCRAM-SHA-256 verifier, as printed by `airlock passwd`. Without it
    /// the identity cannot log in over Postgres (an identity needs this or
    /// `mysql_secret`).
    pub secret: Option<Spanned<String>>,
    /// For the MySQL listener, as `airlock passwd --mysql` prints it:
    /// `*<40 hex>` (the `mysql_native_password` hash SHA1(SHA1(password)),
    /// as MySQL stores it) and/or `sha2:<64 hex>` (SHA256(SHA256(password)),
    /// for `caching_sha2_password`), separated by a space. Without it the
    /// identity cannot log in over MySQL.
    pub mysql_secret: Option<String>,
    /// The person the agent acts for.
    pub user: Option<String>,
    /// The model behind the agent, e.g. "claude-sonnet-4".
    pub model: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Targets this identity may connect to; "*" for all.
    pub targets: Spanned<Vec<String>>,
    /// Most sessions this identity may have open at once (default: no limit
    /// beyond `limits.max_client_connections`).
    pub max_sessions: Option<usize>,
}

impl Identity {
    pub fn may_use(&self, target: &str) -> bool {
        self.targets
            .get_ref()
            .iter()
            .any(|t| t == "*" || t == target)
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            file: path.to_path_buf(),
            error: e.to_string(),
        })?;
        Config::from_toml(&text, path)
    }

    /// [`Config::load`] for `airlock check` and `explain`, which judge
    /// rules and need no secret: an upstream password, admin token or JWT
    /// key that cannot be read (a CI runner has none of them) is listed in
    /// [`Config::unread_secrets`] instead of failing the load. Everything
    /// else is checked as `airlock serve` checks it.
    pub fn load_without_secrets(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            file: path.to_path_buf(),
            error: e.to_string(),
        })?;
        Config::parse(&text, path, true)
    }

    /// Only the audit store's path from the config at `path` (`None`
    /// without `[audit]`): what `airlock log`, `replay` and `audit verify`
    /// need. It reads no secret, so an auditor needs neither the admin
    /// token nor the upstream passwords to read the log, and it checks
    /// nothing else in the file.
    pub fn audit_path(path: &Path) -> Result<Option<PathBuf>, ConfigError> {
        #[derive(Deserialize)]
        struct Only {
            audit: Option<AuditOnly>,
        }
        #[derive(Deserialize)]
        struct AuditOnly {
            path: PathBuf,
        }
        let only: Only = read_part(path)?;
        Ok(only.audit.map(|a| config_dir(path).join(a.path)))
    }

    /// Only the admin listener's address from the config at `path`
    /// (`None` without `[admin]`): where `airlock approvals`, `approve`
    /// and `deny` find a running airlock. It reads no secret and checks
    /// nothing else in the file.
    pub fn admin_listen(path: &Path) -> Result<Option<SocketAddr>, ConfigError> {
        #[derive(Deserialize)]
        struct Only {
            admin: Option<AdminOnly>,
        }
        #[derive(Deserialize)]
        struct AdminOnly {
            listen: SocketAddr,
        }
        let only: Only = read_part(path)?;
        Ok(only.admin.map(|a| a.listen))
    }

    /// Parses and validates TOML text; `path` is used in messages and to
    /// resolve relative file names.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::parse(text, path, false)
    }

    fn parse(text: &str, path: &Path, secrets_optional: bool) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let e = ConfigError::from_toml(path, text, &e);
            match looks_like_rules(text) {
                true => e.with_hint(format!(
                    "this looks like a rule file, not a config: check it with `airlock check {}`, and name it in the config's [policy] rules",
                    path.display()
                )),
                false => e,
            }
        })?;
        config.source = path.to_path_buf();
        config.secrets_optional = secrets_optional;
        config.validate(text)?;
        Ok(config)
    }

    fn validate(&mut self, text: &str) -> Result<(), ConfigError> {
        let here = |span: std::ops::Range<usize>, key: String, message: String| {
            ConfigError::at(&self.source, text, span, key, message)
        };
        let base = config_dir(&self.source);
        if self.listen.postgres.is_none() && self.listen.mysql.is_none() {
            return Err(ConfigError::Missing {
                file: self.source.clone(),
                key: "listen.postgres (or listen.mysql)".into(),
            });
        }
        if let Some(tls) = &mut self.tls {
            for (name, p) in [("tls.cert", &mut tls.cert), ("tls.key", &mut tls.key)] {
                let resolved = base.join(p.get_ref());
                if !resolved.is_file() {
                    return Err(here(
                        p.span(),
                        name.into(),
                        format!("file {} not found", resolved.display()),
                    ));
                }
                *p.get_mut() = resolved;
            }
        }
        if let Some(audit) = &mut self.audit {
            audit.path = base.join(&audit.path);
            // Less than an hour would remove records before anyone read
            // them (and the writer prunes only hourly anyway).
            if audit
                .retention
                .is_some_and(|r| r < crate::audit::retention::MIN_RETENTION)
            {
                let at = text.find("retention").unwrap_or(0);
                return Err(here(
                    at..at,
                    "audit.retention".into(),
                    "must be at least 1h (`airlock audit prune --older-than` removes less by hand)"
                        .into(),
                ));
            }
        }
        if let Some(admin) = &mut self.admin {
            admin::resolve_token(
                admin,
                &base,
                self.secrets_optional,
                &mut self.unread_secrets,
            )
            .map_err(|(span, key, msg)| here(span, key, msg))?;
        }
        if let Some(rules) = &mut self.policy.rules {
            let resolved = base.join(rules.get_ref());
            if !resolved.exists() {
                return Err(here(
                    rules.span(),
                    "policy.rules".into(),
                    format!("{} not found", resolved.display()),
                ));
            }
            *rules.get_mut() = resolved;
        }
        for (name, target) in &mut self.targets {
            let key = |k: &str| format!("targets.{name}.{k}");
            if target.credentials == CredentialMode::Passthrough
                && target.protocol != Protocol::Postgres
            {
                let at = text.find("\"passthrough\"").unwrap_or(0);
                return Err(here(
                    at..at,
                    key("credentials"),
                    "\"passthrough\" is supported for Postgres targets only".into(),
                ));
            }
            // A lease that never expires: leftovers of an airlock that
            // died outlive it for good once the janitor's instance id
            // changes (a new host name or port; audit finding).
            if target.credentials == CredentialMode::Ephemeral && target.ephemeral.ttl.is_zero() {
                let at = text.find("ttl").unwrap_or(0);
                return Err(here(
                    at..at,
                    key("ephemeral.ttl"),
                    "must be longer than 0s: ephemeral users expire".into(),
                ));
            }
            if let Some(ca) = &mut target.ca {
                let resolved = base.join(ca.get_ref());
                if !resolved.is_file() {
                    return Err(here(
                        ca.span(),
                        key("ca"),
                        format!("file {} not found", resolved.display()),
                    ));
                }
                *ca.get_mut() = resolved;
            }
            // Unset: trust or cert auth upstream, no password.
            target.password = match secrets::read(
                &format!("targets.{name}.password"),
                target.password_env.as_ref(),
                target.password_file.as_ref(),
                &base,
                self.secrets_optional,
                &mut self.unread_secrets,
            )
            .map_err(|(span, key, msg)| here(span, key, msg))?
            {
                secrets::Read::Value(secret) => Some(secret),
                secrets::Read::Unset | secrets::Read::Unread => None,
            };
        }
        if let Some(jwt) = &mut self.jwt {
            if jwt.jwks.is_none() && jwt.hs256_secret_env.is_none() {
                return Err(ConfigError::Missing {
                    file: self.source.clone(),
                    key: "jwt.jwks (or jwt.hs256_secret_env)".into(),
                });
            }
            if let Some(jwks) = &mut jwt.jwks {
                let resolved = base.join(jwks.get_ref());
                let text = std::fs::read_to_string(&resolved).map_err(|e| {
                    here(
                        jwks.span(),
                        "jwt.jwks".into(),
                        format!("cannot read {}: {e}", resolved.display()),
                    )
                })?;
                let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text).map_err(|e| {
                    here(
                        jwks.span(),
                        "jwt.jwks".into(),
                        format!("{} is not a JWKS: {e}", resolved.display()),
                    )
                })?;
                *jwks.get_mut() = resolved;
                jwt.jwk_set = Some(set);
            }
            if let Some(var) = &jwt.hs256_secret_env {
                match std::env::var(var.get_ref()) {
                    Err(_) => {
                        let why = format!("environment variable {} is not set", var.get_ref());
                        if !self.secrets_optional {
                            return Err(here(var.span(), "jwt.hs256_secret_env".into(), why));
                        }
                        self.unread_secrets
                            .push(format!("jwt.hs256_secret_env: {why}"));
                    }
                    // An empty or short HMAC key lets anyone sign tokens.
                    Ok(secret) if secret.len() < MIN_HS256_SECRET => {
                        return Err(here(
                            var.span(),
                            "jwt.hs256_secret_env".into(),
                            format!(
                                "the secret in {} must be at least {MIN_HS256_SECRET} bytes",
                                var.get_ref()
                            ),
                        ));
                    }
                    Ok(secret) => jwt.hs256_secret = Some(Secret::new(secret)),
                }
            }
            for t in jwt.targets.get_ref() {
                if t != "*" && !self.targets.contains_key(t) {
                    return Err(here(
                        jwt.targets.span(),
                        "jwt.targets".into(),
                        format!("no target named {t:?}"),
                    ));
                }
            }
        }
        for (name, identity) in &self.identities {
            match &identity.secret {
                Some(secret)
                    if airlock_protocol::pg::scram::ScramVerifier::parse(secret.get_ref())
                        .is_err() =>
                {
                    return Err(here(
                        secret.span(),
                        format!("identities.{name}.secret"),
                        "not a SCRAM-SHA-256 verifier; create one with `airlock passwd`".into(),
                    ));
                }
                Some(_) => {}
                None if identity.mysql_secret.is_none() => {
                    return Err(here(
                        identity.targets.span(),
                        format!("identities.{name}"),
                        "no secret: set `secret` (for Postgres targets, from `airlock passwd`) or `mysql_secret` (for MySQL targets, from `airlock passwd --mysql`), or both".into(),
                    ));
                }
                None => {}
            }
            for t in identity.targets.get_ref() {
                if t != "*" && !self.targets.contains_key(t) {
                    return Err(here(
                        identity.targets.span(),
                        format!("identities.{name}.targets"),
                        format!("no target named {t:?}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// serde glue for durations written as "5s", "250ms", "2m".
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?}: {e} (write e.g. \"5s\" or \"250ms\")"
            ))
        })
    }
}

/// serde glue for optional durations.
mod humantime_serde_opt {
    use serde::Deserializer;
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::humantime_serde_compat::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests;

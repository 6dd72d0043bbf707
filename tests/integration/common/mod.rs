//! Shared set-up for integration tests: a throwaway Postgres from the test
//! kit, an upstream user for airlock, and airlock itself running in-process
//! in front of it, with one agent identity.
#![allow(dead_code)]

pub mod admin;
pub mod drivers;
pub mod mysql;
pub mod poll;
pub mod raw;
pub mod webdriver;

pub use poll::{until_reloaded, wait_for};

use std::path::PathBuf;
use std::sync::Arc;

use airlock::config::Config;
use airlock::server::Running;
use airlock::testkit::postgres::PgServer;

pub const AGENT: &str = "agent";
pub const AGENT_PW: &str = "agent-pw";
pub const UPSTREAM_USER: &str = "airlock_svc";
pub const UPSTREAM_PW: &str = "Upstr3am-S3cret-Never-Leaks";
pub const DB: &str = "app";

/// Options for [`Env::start_with`].
#[derive(Default, Clone)]
pub struct EnvOptions {
    /// Extra TOML appended to the generated config (e.g. `[tls]`).
    pub extra_toml: String,
    /// Extra keys for the `[targets.app]` table.
    pub target_toml: String,
    /// Extra keys for `[limits]`.
    pub limits_toml: String,
    /// A rule file; when set, `[policy] rules` points at it.
    pub rules_toml: Option<String>,
    /// Extra keys for `[identities.agent]`.
    pub agent_toml: String,
    /// Extra identities: (name, secret, groups).
    pub identities: Vec<(String, String, Vec<String>)>,
}

pub struct Env {
    pub pg: Arc<PgServer>,
    pub airlock: Option<Running>,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Env {
    pub async fn start() -> Env {
        Env::start_with(EnvOptions::default()).await
    }

    pub async fn start_with(opts: EnvOptions) -> Env {
        let pg = tokio::task::spawn_blocking(PgServer::start)
            .await
            .unwrap()
            .expect("start postgres");
        Env::start_on(Arc::new(pg), opts).await
    }

    /// Starts airlock in front of an existing server (creating the upstream
    /// user and database the first time).
    pub async fn start_on(pg: Arc<PgServer>, opts: EnvOptions) -> Env {
        init_logging();
        let exists = pg
            .psql_admin("SELECT 1 FROM pg_roles WHERE rolname = 'airlock_svc'")
            .unwrap();
        if exists.trim().is_empty() {
            pg.create_user(UPSTREAM_USER, UPSTREAM_PW).unwrap();
            pg.create_database(DB, UPSTREAM_USER).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let pw_file = dir.path().join("upstream.pw");
        std::fs::write(&pw_file, format!("{UPSTREAM_PW}\n")).unwrap();
        let verifier = airlock_protocol::pg::scram::make_verifier(AGENT_PW);
        let mut extra = opts.extra_toml.clone();
        if let Some(rules) = &opts.rules_toml {
            let path = dir.path().join("rules.toml");
            std::fs::write(&path, rules).unwrap();
            extra.push_str(&format!("\n[policy]\nrules = \"{}\"\n", path.display()));
        }
        for (name, secret, groups) in &opts.identities {
            let v = airlock_protocol::pg::scram::make_verifier(secret);
            let groups: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
            extra.push_str(&format!(
                "\n[identities.{name}]\nsecret = \"{v}\"\ngroups = [{}]\ntargets = [\"{DB}\"]\n",
                groups.join(", ")
            ));
        }
        let text = format!(
            r#"
[listen]
postgres = "127.0.0.1:0"

[limits]
connect_timeout = "5s"
shutdown_timeout = "5s"
{limits}

[targets.{DB}]
host = "127.0.0.1"
port = {port}
database = "{DB}"
user = "{UPSTREAM_USER}"
password_file = "{pw}"
{target}

[identities.{AGENT}]
secret = "{verifier}"
user = "tester"
model = "test-model"
targets = ["{DB}"]
{agent}

{extra}
"#,
            port = pg.port(),
            pw = pw_file.display(),
            limits = opts.limits_toml,
            target = opts.target_toml,
            extra = extra,
            agent = opts.agent_toml,
        );
        let path = dir.path().join("airlock.toml");
        std::fs::write(&path, &text).unwrap();
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let airlock = airlock::server::start(config).await.unwrap();
        let port = airlock.postgres_addr.port();
        Env {
            pg,
            airlock: Some(airlock),
            dir,
            port,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// tokio-postgres config for the agent, through airlock.
    pub fn agent_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.port)
            .user(AGENT)
            .password(AGENT_PW)
            .dbname(DB);
        c
    }

    /// tokio-postgres config for another identity, through airlock.
    pub fn config_for(&self, user: &str, password: &str) -> tokio_postgres::Config {
        let mut c = self.agent_config();
        c.user(user).password(password);
        c
    }

    /// Rewrites the rule file (hot reload picks it up).
    pub fn write_rules(&self, rules: &str) {
        std::fs::write(self.dir.path().join("rules.toml"), rules).unwrap();
    }

    /// tokio-postgres config for the upstream user, direct to Postgres.
    pub fn direct_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.pg.port())
            .user(UPSTREAM_USER)
            .password(UPSTREAM_PW)
            .dbname(DB);
        c
    }

    pub async fn agent(&self) -> tokio_postgres::Client {
        connect(self.agent_config()).await
    }

    pub async fn direct(&self) -> tokio_postgres::Client {
        connect(self.direct_config()).await
    }

    /// A libpq URL for the agent through airlock.
    pub fn agent_url(&self) -> String {
        format!(
            "postgresql://{AGENT}:{AGENT_PW}@127.0.0.1:{}/{DB}",
            self.port
        )
    }

    /// Runs psql (from the server's bin dir) with the given args and env.
    pub fn psql(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(self.pg.bin_dir().join("psql"))
            .args(args)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("run psql")
    }

    pub async fn stop(&mut self) {
        if let Some(a) = self.airlock.take() {
            a.shutdown().await;
        }
    }
}

pub async fn connect(config: tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// airlock's logs in test output; `AIRLOCK_LOG=debug` for more.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A CA and a server certificate for 127.0.0.1/localhost, written as PEM.
pub fn make_certs(dir: &std::path::Path) -> (String, String, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "airlock test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = ["ca.pem", "server.pem", "server.key"].map(|n| dir.join(n));
    std::fs::write(&paths[0], ca.pem()).unwrap();
    std::fs::write(&paths[1], cert.pem()).unwrap();
    std::fs::write(&paths[2], key.serialize_pem()).unwrap();
    paths.map(|p| p.display().to_string()).into()
}

/// Asserts that no `forbidden` value is in `bytes` in any form a
/// transform in SQL could give it: as is, upper- or lower-case, hex
/// (either case) or reversed (either case).
pub fn assert_no_pii_forms(forbidden: &[&str], bytes: &[u8], context: &str) {
    for f in forbidden {
        let hex: String = f.bytes().map(|b| format!("{b:02x}")).collect();
        let reversed: String = f.chars().rev().collect();
        for v in [
            f.to_string(),
            f.to_uppercase(),
            f.to_lowercase(),
            hex.to_uppercase(),
            hex,
            reversed.to_uppercase(),
            reversed,
        ] {
            assert!(
                !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                "{context}: PII {f:?} leaked as {v:?} in {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

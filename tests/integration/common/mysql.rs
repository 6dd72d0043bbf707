//! Shared set-up for MySQL integration tests: a throwaway MariaDB from the
//! test kit, an upstream user for airlock, and airlock in-process in front
//! of it with one agent identity (`mysql_secret` set).
#![allow(dead_code)]

use std::sync::Arc;

use airlock::config::Config;
use airlock::server::Running;
use airlock::testkit::MariaDbServer;

pub const AGENT: &str = "agent";
pub const AGENT_PW: &str = "agent-pw";
pub const UPSTREAM_USER: &str = "airlock_svc";
pub const UPSTREAM_PW: &str = "Upstr3am-S3cret-Never-Leaks";
pub const DB: &str = "app";

pub struct MyEnv {
    pub db: Arc<MariaDbServer>,
    pub airlock: Option<Running>,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl MyEnv {
    /// Starts MariaDB and airlock; `rules` (a rule file) is optional.
    pub async fn start(rules: Option<&str>) -> MyEnv {
        MyEnv::start_with(rules, "", "").await
    }

    /// Like [`MyEnv::start`], with extra keys for `[targets.app]` and SQL run
    /// as root on MariaDB before airlock starts.
    pub async fn start_with(rules: Option<&str>, target_toml: &str, setup_sql: &str) -> MyEnv {
        MyEnv::start_full(rules, target_toml, setup_sql, "").await
    }

    /// Like [`MyEnv::start_with`], with extra top-level TOML (e.g. `[audit]`,
    /// `[masking]` is in the rule file).
    pub async fn start_full(
        rules: Option<&str>,
        target_toml: &str,
        setup_sql: &str,
        extra_toml: &str,
    ) -> MyEnv {
        MyEnv::start_inner(rules, target_toml, setup_sql, extra_toml, "").await
    }

    /// Like [`MyEnv::start`], with extra keys for `[limits]`.
    pub async fn start_limits(rules: Option<&str>, limits_toml: &str) -> MyEnv {
        MyEnv::start_inner(rules, "", "", "", limits_toml).await
    }

    /// Every option: a rule file, extra keys for `[targets.app]`, SQL run
    /// as root before airlock starts, extra top-level TOML and extra keys
    /// for `[limits]`.
    pub async fn start_inner(
        rules: Option<&str>,
        target_toml: &str,
        setup_sql: &str,
        extra_toml: &str,
        limits_toml: &str,
    ) -> MyEnv {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let setup_sql = setup_sql.to_owned();
        let db = tokio::task::spawn_blocking(move || {
            let db = MariaDbServer::start().expect("start mariadb");
            db.create_user(UPSTREAM_USER, UPSTREAM_PW).unwrap();
            db.create_database(DB, UPSTREAM_USER).unwrap();
            if !setup_sql.is_empty() {
                db.admin_sql(&setup_sql).unwrap();
            }
            db
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pw_file = dir.path().join("upstream.pw");
        std::fs::write(&pw_file, format!("{UPSTREAM_PW}\n")).unwrap();
        let mut extra = format!("\n{extra_toml}\n");
        if let Some(rules) = rules {
            let path = dir.path().join("rules.toml");
            std::fs::write(&path, rules).unwrap();
            extra.push_str(&format!("\n[policy]\nrules = \"{}\"\n", path.display()));
        }
        let text = format!(
            r#"
[listen]
mysql = "127.0.0.1:0"

[limits]
connect_timeout = "5s"
shutdown_timeout = "5s"
{limits_toml}

[targets.{DB}]
protocol = "mysql"
host = "127.0.0.1"
port = {port}
database = "{DB}"
user = "{UPSTREAM_USER}"
password_file = "{pw}"
{target_toml}

[identities.{AGENT}]
secret = "{scram}"
mysql_secret = "{native}"
user = "tester"
model = "test-model"
targets = ["{DB}"]

[identities.nomysql]
secret = "{scram}"
targets = ["{DB}"]
{extra}
"#,
            port = db.port(),
            pw = pw_file.display(),
            scram = airlock_protocol::pg::scram::make_verifier(AGENT_PW),
            native = airlock_protocol::mysql::auth::native_hash_string(AGENT_PW.as_bytes()),
        );
        let path = dir.path().join("airlock.toml");
        std::fs::write(&path, &text).unwrap();
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let airlock = airlock::server::start(config).await.unwrap();
        let port = airlock.mysql_addr.expect("mysql listener").port();
        MyEnv {
            db: Arc::new(db),
            airlock: Some(airlock),
            dir,
            port,
        }
    }

    /// mysql_async options for `user`/`password` through airlock.
    pub fn opts(&self, user: &str, password: &str) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some(user))
            .pass(Some(password))
            .db_name(Some(DB))
            .prefer_socket(false)
            .into()
    }

    pub async fn agent(&self) -> mysql_async::Conn {
        self.try_agent()
            .await
            .expect("agent connects through airlock")
    }

    /// [`Self::agent`], for polls across a rule reload: a login that
    /// straddles the reload is refused (the session must reconnect to
    /// have masking applied), which is an answer, not a failure.
    pub async fn try_agent(&self) -> Result<mysql_async::Conn, mysql_async::Error> {
        mysql_async::Conn::new(self.opts(AGENT, AGENT_PW)).await
    }

    /// Rewrites the rule file airlock watches (started with rules).
    pub fn write_rules(&self, rules: &str) {
        std::fs::write(self.dir.path().join("rules.toml"), rules).unwrap();
    }

    /// Runs SQL as root directly on MariaDB (in database `app`).
    pub fn admin(&self, sql: &str) -> String {
        self.db.admin_sql(&format!("USE {DB}; {sql}")).unwrap()
    }

    /// Runs the `mariadb` CLI through airlock with `-e sql`.
    pub fn cli(&self, user: &str, password: &str, sql: &str) -> std::process::Output {
        self.cli_command(user, password, sql)
            .output()
            .expect("run mariadb client")
    }

    /// The `mariadb` CLI command that [`MyEnv::cli`] runs, to spawn.
    pub fn cli_command(&self, user: &str, password: &str, sql: &str) -> std::process::Command {
        let mut cli = std::process::Command::new(self.db.client_binary());
        cli.args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1", "-P"])
            .arg(self.port.to_string())
            .args(["-u", user])
            .arg(format!("-p{password}"))
            .args([
                "--batch",
                "--skip-column-names",
                "--skip-ssl",
                "-e",
                sql,
                DB,
            ]);
        cli
    }

    pub async fn stop(&mut self) {
        if let Some(a) = self.airlock.take() {
            a.shutdown().await;
        }
    }
}

/// Every value of every row, as bytes (typed binary values printed).
pub fn flatten_all(rows: &[mysql_async::Row]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        for i in 0..r.len() {
            match r.as_ref(i) {
                Some(mysql_async::Value::Bytes(b)) => out.extend_from_slice(b),
                Some(v) => out.extend_from_slice(format!("{v:?}").as_bytes()),
                None => {}
            }
            out.push(b'|');
        }
    }
    out
}

/// A minimal client on the wire, for commands the client libraries do not
/// expose (COM_FIELD_LIST, COM_STATISTICS, COM_SET_OPTION, ...).
pub struct Raw {
    pub tcp: tokio::net::TcpStream,
    pub buf: Vec<u8>,
}

impl Raw {
    pub async fn login(port: u16, user: &str, password: &str) -> Raw {
        let (raw, ok) = Self::login_as(port, user, password, 45).await;
        assert_eq!(ok.first(), Some(&0), "login: {ok:?}");
        raw
    }

    /// Logs in with this collation; the client and the server's answer
    /// to the login (OK or ERR).
    pub async fn login_as(port: u16, user: &str, password: &str, charset: u8) -> (Raw, Vec<u8>) {
        use airlock_protocol::mysql::auth;
        Self::handshake(port, user, charset, auth::NATIVE, |scramble| {
            auth::native_token(scramble, password.as_bytes())
        })
        .await
    }

    /// Connects and answers the greeting as `user`, with the token
    /// `token(scramble)` made for `plugin`; the client and the server's
    /// first answer (OK, ERR or an AuthSwitchRequest).
    pub async fn handshake(
        port: u16,
        user: &str,
        charset: u8,
        plugin: &str,
        token: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> (Raw, Vec<u8>) {
        use airlock_protocol::mysql::{caps, handshake};
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut raw = Raw {
            tcp,
            buf: Vec::new(),
        };
        let (_, greeting) = raw.read().await;
        let g = handshake::Greeting::parse(&greeting).unwrap();
        let r = handshake::Response {
            capabilities: caps::PROTOCOL_41
                | caps::SECURE_CONNECTION
                | caps::PLUGIN_AUTH
                | caps::CONNECT_WITH_DB
                | caps::MULTI_RESULTS,
            max_packet: 1 << 24,
            charset,
            user: user.as_bytes().to_vec(),
            auth_response: token(&g.scramble),
            database: Some(DB.as_bytes().to_vec()),
            auth_plugin: Some(plugin.into()),
            attributes: Vec::new(),
        };
        let mut out = bytes::BytesMut::new();
        r.encode(&mut out);
        raw.send(1, &out).await;
        let (_, answer) = raw.read().await;
        (raw, answer)
    }

    pub async fn send(&mut self, seq: u8, payload: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let mut out = bytes::BytesMut::new();
        airlock_protocol::mysql::frame::write_packet(&mut out, seq, payload);
        self.tcp.write_all(&out).await.unwrap();
    }

    /// One packet: (sequence id, payload).
    pub async fn read(&mut self) -> (u8, Vec<u8>) {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(l) = airlock_protocol::mysql::frame::locate(&self.buf, 1 << 26).unwrap() {
                let payload = airlock_protocol::mysql::frame::payload(&self.buf, &l).into_owned();
                self.buf.drain(..l.raw_len);
                return (l.last_seq, payload);
            }
            let mut chunk = [0u8; 8192];
            let n = self.tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a command and reads the first reply packet.
    pub async fn cmd(&mut self, payload: &[u8]) -> Vec<u8> {
        self.send(0, payload).await;
        self.read().await.1
    }

    /// Reads packets up to and including an EOF (or an ERR).
    pub async fn until_eof(&mut self, mut first: Vec<u8>) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        loop {
            let done =
                first.first() == Some(&0xff) || airlock_protocol::mysql::packets::is_eof(&first);
            all.push(first);
            if done {
                return all;
            }
            first = self.read().await.1;
        }
    }
}

//! A throwaway PostgreSQL server: `initdb` into a temp dir, then the
//! postmaster as a child process on a free 127.0.0.1 port, with password
//! (SCRAM or MD5) auth over TCP and trust over a private unix socket.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::process::{self, io_err, Readiness, ServerProcess, PORT_ATTEMPTS};
use super::{Result, TestkitError};

/// The Debian package that provides the PostgreSQL binaries.
const PACKAGE: &str = "postgresql";
/// The bootstrap superuser.
const SUPERUSER: &str = "postgres";
/// Overrides the directory holding `postgres`, `initdb`, `psql`, ...
pub const BIN_DIR_ENV: &str = "AIRLOCK_PG_BIN_DIR";

/// How clients authenticate over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PgHostAuth {
    /// `scram-sha-256`, passwords stored as SCRAM verifiers.
    #[default]
    Scram,
    /// `md5`, passwords stored as MD5 hashes (`password_encryption=md5`).
    Md5,
    /// `password`: the password in clear (stored as a SCRAM verifier).
    Password,
}

impl PgHostAuth {
    /// The pg_hba.conf method.
    fn method(self) -> &'static str {
        match self {
            Self::Scram => "scram-sha-256",
            Self::Md5 => "md5",
            Self::Password => "password",
        }
    }

    /// How passwords are stored (`password_encryption`).
    fn encryption(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Scram | Self::Password => "scram-sha-256",
        }
    }
}

/// Options for [`PgServer`]; `PgOptions::new().md5().start()`.
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    host_auth: PgHostAuth,
    tls: Option<(PathBuf, PathBuf)>,
    max_connections: Option<u32>,
}

impl PgOptions {
    /// SCRAM auth, no TLS.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `auth` for TCP connections.
    pub fn host_auth(mut self, auth: PgHostAuth) -> Self {
        self.host_auth = auth;
        self
    }

    /// Raises `max_connections` from the kit's default of 200 (benchmarks
    /// that hold many idle sessions).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// Shorthand for `host_auth(PgHostAuth::Md5)`.
    pub fn md5(self) -> Self {
        self.host_auth(PgHostAuth::Md5)
    }

    /// Enables server TLS (`ssl=on`) with these PEM files. They are copied
    /// into the server's temp dir, so they may be owned by anyone.
    pub fn tls(mut self, cert_pem: impl Into<PathBuf>, key_pem: impl Into<PathBuf>) -> Self {
        self.tls = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Starts a server with these options.
    pub fn start(self) -> Result<PgServer> {
        PgServer::start_with(self)
    }
}

/// A running throwaway PostgreSQL server; dropping it stops the server and
/// deletes its files.
pub struct PgServer {
    process: ServerProcess,
    options: PgOptions,
    bin_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    password: String,
    version: String,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("port", &self.port)
            .field("options", &self.options)
            .field("data_dir", &self.data_dir)
            .field("process", &self.process)
            .finish_non_exhaustive()
    }
}

impl PgServer {
    /// Starts a server with SCRAM auth and no TLS.
    pub fn start() -> Result<Self> {
        Self::start_with(PgOptions::default())
    }

    /// Starts a server with `options`.
    pub fn start_with(options: PgOptions) -> Result<Self> {
        let started = Instant::now();
        let bin_dir = find_bin_dir()?;
        for tool in ["initdb", "postgres", "psql", "pg_isready"] {
            process::find_binary(&[tool], std::slice::from_ref(&bin_dir), PACKAGE)?;
        }
        // SIGINT is PostgreSQL's "fast shutdown".
        let process = ServerProcess::new("PostgreSQL", "airlock-pg-", libc::SIGINT)?;
        let root = process.dir().to_path_buf();
        let mut server = Self {
            bin_dir,
            data_dir: root.join("data"),
            socket_dir: process.make_dir("run", 0o700)?,
            log_path: root.join("postgres.log"),
            process,
            options,
            port: 0,
            password: process::random_password(),
            version: String::new(),
        };
        server.version = server_version(&server.bin_dir)?;
        server.init_cluster()?;
        server.launch()?;
        if server.options.host_auth == PgHostAuth::Md5 {
            // initdb stored the password as SCRAM; store it again as MD5.
            let sql = format!(
                "ALTER ROLE {} PASSWORD {}",
                quote_ident(SUPERUSER),
                quote_literal(&server.password)
            );
            server.psql_admin(&sql)?;
        }
        tracing::debug!(port = server.port, elapsed = ?started.elapsed(), "PostgreSQL started");
        Ok(server)
    }

    /// Runs initdb and writes the configuration.
    fn init_cluster(&mut self) -> Result<()> {
        let root = self.process.dir();
        let pwfile = root.join("pwfile");
        self.process
            .write_file(&pwfile, self.password.as_bytes(), 0o600)?;
        let mut initdb = self.process.server_command(&self.bin_dir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&self.data_dir)
            .args([
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]);
        let result = process::run(&mut initdb, "initdb");
        // Best effort: the whole dir goes away on drop anyway.
        let _ = fs::remove_file(&pwfile);
        result?;

        let hba = format!(
            "local all all trust\nlocal replication all trust\nhost all all 127.0.0.1/32 {0}\nhost replication all 127.0.0.1/32 {0}\n",
            self.options.host_auth.method()
        );
        self.process
            .write_file(&self.data_dir.join("pg_hba.conf"), hba.as_bytes(), 0o600)?;
        let conf = self.extra_config()?;
        let conf_path = self.data_dir.join("postgresql.conf");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .map_err(io_err(format!("open {}", conf_path.display())))?;
        file.write_all(conf.as_bytes())
            .map_err(io_err(format!("write {}", conf_path.display())))
    }

    /// Settings appended to postgresql.conf (the port is passed with `-p`).
    fn extra_config(&self) -> Result<String> {
        let encryption = self.options.host_auth.encryption();
        let mut conf = format!(
            "\n# airlock testkit\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = {socket}\n\
             max_connections = {max_connections}\n\
             shared_buffers = 16MB\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             wal_level = minimal\n\
             max_wal_senders = 0\n\
             huge_pages = off\n\
             logging_collector = off\n\
             log_line_prefix = '%m [%p] '\n\
             password_encryption = {encryption}\n",
            socket = quote_literal(&self.socket_dir.to_string_lossy()),
            max_connections = self.options.max_connections.unwrap_or(200),
        );
        if let Some((cert, key)) = &self.options.tls {
            let tls_dir = self.process.make_dir("tls", 0o700)?;
            let cert_dst = tls_dir.join("server.crt");
            let key_dst = tls_dir.join("server.key");
            let cert_pem = fs::read(cert).map_err(io_err(format!("read {}", cert.display())))?;
            let key_pem = fs::read(key).map_err(io_err(format!("read {}", key.display())))?;
            // PostgreSQL insists that the key is private to its owner.
            self.process.write_file(&cert_dst, &cert_pem, 0o644)?;
            self.process.write_file(&key_dst, &key_pem, 0o600)?;
            conf.push_str(&format!(
                "ssl = on\nssl_cert_file = {}\nssl_key_file = {}\n",
                quote_literal(&cert_dst.to_string_lossy()),
                quote_literal(&key_dst.to_string_lossy()),
            ));
        }
        Ok(conf)
    }

    /// Starts the postmaster, moving to a fresh port if ours was taken.
    fn launch(&mut self) -> Result<()> {
        for _ in 0..PORT_ATTEMPTS {
            self.port = process::free_port()?;
            let log = fs::File::create(&self.log_path)
                .map_err(io_err(format!("create {}", self.log_path.display())))?;
            let log_err = log
                .try_clone()
                .map_err(io_err(format!("dup {}", self.log_path.display())))?;
            let mut postgres = self.process.server_command(&self.bin_dir.join("postgres"));
            postgres
                .arg("-D")
                .arg(&self.data_dir)
                .arg("-p")
                .arg(self.port.to_string())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log_err));
            self.process.spawn(&mut postgres)?;
            let (bin_dir, socket_dir, port) = (&self.bin_dir, &self.socket_dir, self.port);
            let isready = bin_dir.join("pg_isready");
            let client = |p: &Path| process::command(p, socket_dir, None);
            let probe = || {
                let mut cmd = client(&isready);
                cmd.arg("-q")
                    .arg("-h")
                    .arg(socket_dir)
                    .args(["-p", &port.to_string(), "-U", SUPERUSER, "-d", "postgres"])
                    .args(["-t", "2"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                cmd.status().is_ok_and(|s| s.success())
            };
            match self.process.wait_ready(self.port, &self.log_path, probe)? {
                Readiness::Ready => return Ok(()),
                Readiness::PortTaken => {
                    tracing::debug!(port = self.port, "PostgreSQL port taken; retrying");
                }
            }
        }
        Err(TestkitError::PortRace {
            server: "PostgreSQL",
            attempts: PORT_ATTEMPTS,
        })
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bootstrap superuser (`postgres`).
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// The superuser's (random) password, for TCP logins.
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// How TCP clients authenticate.
    pub fn host_auth(&self) -> PgHostAuth {
        self.options.host_auth
    }

    /// Whether the server offers TLS.
    pub fn tls_enabled(&self) -> bool {
        self.options.tls.is_some()
    }

    /// The server version, e.g. `15.14`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The directory of the private unix socket (trust auth).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The temp dir holding everything; removed on drop.
    pub fn root_dir(&self) -> &Path {
        self.process.dir()
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The directory of this server's binaries (psql, pgbench, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Runs `sql` with psql as the superuser over the unix socket in database
    /// `postgres`; returns stdout (unaligned, tuples only, no trailing newline).
    ///
    /// `sql` is a psql script fed on stdin: several statements (each in its
    /// own transaction, output concatenated) and meta-commands are fine; the
    /// first error stops it and becomes [`TestkitError::CommandFailed`].
    pub fn psql_admin(&self, sql: &str) -> Result<String> {
        self.psql_db("postgres", sql)
    }

    /// Lets `user` in over TCP without a password (`trust` ahead of the
    /// password rule in pg_hba.conf), then reloads the server's
    /// configuration: for tests of what airlock does when a server
    /// trusts its address.
    pub fn trust_host_user(&self, user: &str) -> Result<()> {
        let path = self.data_dir.join("pg_hba.conf");
        let hba = fs::read_to_string(&path).map_err(io_err(format!("read {}", path.display())))?;
        let hba = format!("host all {user} 127.0.0.1/32 trust\n{hba}");
        self.process.write_file(&path, hba.as_bytes(), 0o600)?;
        self.psql_admin("SELECT pg_reload_conf()").map(|_| ())
    }

    /// Like [`psql_admin`](Self::psql_admin), in database `db`.
    pub fn psql_db(&self, db: &str, sql: &str) -> Result<String> {
        let mut psql = self.psql_command();
        psql.arg("-h").arg(&self.socket_dir).args([
            "-p",
            &self.port.to_string(),
            "-U",
            SUPERUSER,
            "-d",
            db,
        ]);
        let output = process::run_with_input(&mut psql, "psql", sql.as_bytes())?;
        Ok(process::stdout_text(&output))
    }

    /// psql with a clean environment and `-X -A -t -q -v ON_ERROR_STOP=1`,
    /// reading its script from stdin.
    fn psql_command(&self) -> Command {
        let mut psql = self.process.client_command(&self.bin_dir.join("psql"));
        psql.env("PGCONNECT_TIMEOUT", "10").args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
        ]);
        psql
    }

    /// Creates a login role with `password` (hashed per the auth option).
    pub fn create_user(&self, name: &str, password: &str) -> Result<()> {
        let sql = format!(
            "CREATE ROLE {} LOGIN PASSWORD {}",
            quote_ident(name),
            quote_literal(password)
        );
        self.psql_admin(&sql).map(drop)
    }

    /// Creates database `name` owned by role `owner`.
    pub fn create_database(&self, name: &str, owner: &str) -> Result<()> {
        let sql = format!(
            "CREATE DATABASE {} OWNER {}",
            quote_ident(name),
            quote_ident(owner)
        );
        self.psql_admin(&sql).map(drop)
    }

    /// A key=value connection string for TCP, accepted by libpq and
    /// tokio-postgres, e.g. `host=127.0.0.1 port=5 user='u' password='p' dbname='d'`.
    pub fn connection_string(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host={} port={} user={} password={} dbname={}",
            self.host(),
            self.port,
            conninfo_quote(user),
            conninfo_quote(password),
            conninfo_quote(db)
        )
    }
}

/// Runs `sql` with `server`'s psql against any `conninfo` (a URL or
/// key=value string, e.g. pointing at airlock); returns stdout like
/// [`PgServer::psql_admin`].
pub fn psql_via(server: &PgServer, conninfo: &str, sql: &str) -> Result<String> {
    let mut psql = server.psql_command();
    psql.arg("-d").arg(conninfo);
    let output =
        process::run_with_input(&mut psql, "psql (via connection string)", sql.as_bytes())?;
    Ok(process::stdout_text(&output))
}

/// `$AIRLOCK_PG_BIN_DIR`, else the newest `/usr/lib/postgresql/<N>/bin`,
/// else the first `$PATH` dir with both `initdb` and `postgres`.
fn find_bin_dir() -> Result<PathBuf> {
    let has_server = |dir: &Path| {
        process::is_executable(&dir.join("initdb")) && process::is_executable(&dir.join("postgres"))
    };
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    let mut dirs = process::search_dirs();
    dirs.insert(0, PathBuf::from("/usr/lib/postgresql/<version>/bin"));
    if let Some(dir) = dirs.iter().find(|d| has_server(d)) {
        return Ok(dir.clone());
    }
    Err(TestkitError::MissingBinary {
        binary: "initdb` and `postgres".to_owned(),
        searched: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
        package: PACKAGE,
    })
}

/// The version `postgres --version` reports, e.g. `15.14`.
fn server_version(bin_dir: &Path) -> Result<String> {
    let mut cmd = process::command(&bin_dir.join("postgres"), Path::new("/"), None);
    let output = process::run(cmd.arg("--version"), "postgres --version")?;
    // "postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)"
    let text = process::stdout_text(&output);
    Ok(text
        .split_whitespace()
        .nth(2)
        .unwrap_or(text.as_str())
        .to_owned())
}

/// Quotes an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal (standard_conforming_strings is on).
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Quotes a value for a key=value connection string.
fn conninfo_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

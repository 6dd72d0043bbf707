//! A throwaway MariaDB server: `mariadb-install-db` into a temp dir, then
//! `mariadbd` as a child process on a free 127.0.0.1 port, with a random
//! root password and `mysql_native_password` users.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use super::process::{self, io_err, Readiness, ServerProcess, PORT_ATTEMPTS};
use super::{Result, TestkitError};

const SERVER_PACKAGE: &str = "mariadb-server";
const CLIENT_PACKAGE: &str = "mariadb-client";
const ROOT: &str = "root";

/// Options shared by `mariadb-install-db` and `mariadbd`: small and fast,
/// durability off (the data is thrown away).
const INNODB_OPTIONS: [&str; 6] = [
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=8M",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    // Many parallel servers could exhaust io_uring/AIO limits.
    "--innodb-use-native-aio=0",
    "--skip-name-resolve",
];

/// The binaries a MariaDB server needs.
#[derive(Debug)]
struct Binaries {
    server: PathBuf,
    install_db: PathBuf,
    client: PathBuf,
    admin: PathBuf,
}

impl Binaries {
    fn find() -> Result<Self> {
        let dirs = process::search_dirs();
        let find = |names: &[&str], package| process::find_binary(names, &dirs, package);
        Ok(Self {
            server: find(&["mariadbd", "mysqld"], SERVER_PACKAGE)?,
            install_db: find(&["mariadb-install-db", "mysql_install_db"], SERVER_PACKAGE)?,
            client: find(&["mariadb", "mysql"], CLIENT_PACKAGE)?,
            admin: find(&["mariadb-admin", "mysqladmin"], CLIENT_PACKAGE)?,
        })
    }
}

/// A running throwaway MariaDB server; dropping it stops the server and
/// deletes its files.
pub struct MariaDbServer {
    process: ServerProcess,
    bins: Binaries,
    data_dir: PathBuf,
    socket_path: PathBuf,
    log_path: PathBuf,
    client_config: PathBuf,
    port: u16,
    password: String,
}

impl std::fmt::Debug for MariaDbServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MariaDbServer")
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field("process", &self.process)
            .finish_non_exhaustive()
    }
}

impl MariaDbServer {
    /// Installs, starts and secures a server.
    pub fn start() -> Result<Self> {
        let started = Instant::now();
        let bins = Binaries::find()?;
        let process = ServerProcess::new("MariaDB", "airlock-mariadb-", libc::SIGTERM)?;
        let root = process.dir().to_path_buf();
        let mut server = Self {
            process,
            bins,
            data_dir: root.join("data"),
            socket_path: root.join("mysql.sock"),
            log_path: root.join("err.log"),
            client_config: root.join("client.cnf"),
            port: 0,
            password: process::random_password(),
        };
        server.install()?;
        server.launch()?;
        server.secure()?;
        tracing::debug!(port = server.port, elapsed = ?started.elapsed(), "MariaDB started");
        Ok(server)
    }

    /// Creates the system tables.
    fn install(&self) -> Result<()> {
        let mut install = self.process.server_command(&self.bins.install_db);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.data_dir.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            // Private temp files: parallel installs sharing /tmp collide
            // on `#sql-temptable-*` names.
            .arg(format!("--tmpdir={}", self.process.dir().display()))
            .args(INNODB_OPTIONS);
        process::run(&mut install, "mariadb-install-db").map(drop)
    }

    /// Starts mariadbd, moving to a fresh port if ours was taken.
    fn launch(&mut self) -> Result<()> {
        let root = self.process.dir().to_path_buf();
        for _ in 0..PORT_ATTEMPTS {
            self.port = process::free_port()?;
            // mariadbd (as the server account) appends to this file.
            self.process.write_file(&self.log_path, b"", 0o640)?;
            let log = fs::OpenOptions::new()
                .append(true)
                .open(&self.log_path)
                .map_err(io_err(format!("open {}", self.log_path.display())))?;
            let log_err = log
                .try_clone()
                .map_err(io_err(format!("dup {}", self.log_path.display())))?;
            let mut mariadbd = self.process.server_command(&self.bins.server);
            mariadbd
                .arg("--no-defaults")
                .arg(format!("--datadir={}", self.data_dir.display()))
                .arg(format!("--port={}", self.port))
                .arg(format!("--tmpdir={}", root.display()))
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--socket={}", self.socket_path.display()))
                .arg(format!(
                    "--pid-file={}",
                    root.join("mariadbd.pid").display()
                ))
                .arg(format!("--log-error={}", self.log_path.display()))
                .arg(format!("--tmpdir={}", root.display()))
                .args(INNODB_OPTIONS)
                .args([
                    "--max-connections=200",
                    "--character-set-server=utf8mb4",
                    "--collation-server=utf8mb4_general_ci",
                    "--performance-schema=OFF",
                    // The data is thrown away: skip flushing on shutdown.
                    "--innodb-fast-shutdown=2",
                ])
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log_err));
            self.process.spawn(&mut mariadbd)?;
            let (admin, socket, root) = (&self.bins.admin, &self.socket_path, &root);
            let probe = || {
                // Before `secure`, root has no password; afterwards we are ready anyway.
                let mut ping = process::command(admin, root, None);
                ping.arg("--no-defaults")
                    .arg(format!("--socket={}", socket.display()))
                    .args(["--user=root", "--connect-timeout=2", "ping"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                ping.status().is_ok_and(|s| s.success())
            };
            match self.process.wait_ready(self.port, &self.log_path, probe)? {
                Readiness::Ready => return Ok(()),
                Readiness::PortTaken => {
                    tracing::debug!(port = self.port, "MariaDB port taken; retrying");
                }
            }
        }
        Err(TestkitError::PortRace {
            server: "MariaDB",
            attempts: PORT_ATTEMPTS,
        })
    }

    /// Drops anonymous users and root accounts for other hosts (unusable
    /// under --skip-name-resolve), gives root the random password for the
    /// socket and 127.0.0.1/::1, and writes the option file `admin_sql` uses.
    fn secure(&self) -> Result<()> {
        let unwanted =
            "User = '' OR (User = 'root' AND Host NOT IN ('localhost', '127.0.0.1', '::1'))";
        let password = quote_literal(&self.password);
        let root_accounts = ["'root'@'localhost'", "'root'@'127.0.0.1'", "'root'@'::1'"]
            .map(|account| {
                format!("{account} IDENTIFIED VIA mysql_native_password USING PASSWORD({password})")
            })
            .join(", ");
        let script = format!(
            "DELETE FROM mysql.global_priv WHERE {unwanted};\n\
             DELETE FROM mysql.proxies_priv WHERE {unwanted};\n\
             FLUSH PRIVILEGES;\n\
             ALTER USER IF EXISTS {root_accounts};\n"
        );
        self.root_sql_without_password(&script)?;

        let config = format!(
            "[client]\nuser={ROOT}\npassword={}\nsocket={}\nprotocol=socket\n",
            self.password,
            self.socket_path.display()
        );
        let path = &self.client_config;
        fs::write(path, config).map_err(io_err(format!("write {}", path.display())))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(io_err(format!("chmod {}", path.display())))
    }

    /// Runs SQL as root before the password is set.
    fn root_sql_without_password(&self, sql: &str) -> Result<String> {
        let mut client = self.process.client_command(&self.bins.client);
        client
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket_path.display()))
            .args(["--user=root", "--batch", "--skip-column-names", "-e", sql]);
        let output = process::run(&mut client, "mariadb (setup)")?;
        Ok(process::stdout_text(&output))
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin user (`root`).
    pub fn root_user(&self) -> &str {
        ROOT
    }

    /// Root's (random) password; it works over the socket and over TCP.
    pub fn root_password(&self) -> &str {
        &self.password
    }

    /// The server's unix socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The temp dir holding everything; removed on drop.
    pub fn root_dir(&self) -> &Path {
        self.process.dir()
    }

    /// The server's error log.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The `mariadb` command-line client.
    pub fn client_binary(&self) -> &Path {
        &self.bins.client
    }

    /// Runs `sql` (one or more `;`-separated statements) with the `mariadb`
    /// client as root over the socket; returns stdout in batch mode
    /// (tab-separated, no column names, no trailing newline).
    pub fn admin_sql(&self, sql: &str) -> Result<String> {
        let mut client = self.process.client_command(&self.bins.client);
        // --defaults-file must come first; it carries the password.
        client
            .arg(format!("--defaults-file={}", self.client_config.display()))
            .args(["--batch", "--skip-column-names", "-e", sql]);
        let output = process::run(&mut client, "mariadb")?;
        Ok(process::stdout_text(&output))
    }

    /// Creates `'name'@'%'` with a `mysql_native_password` password. With no
    /// anonymous accounts, `%` also matches socket and 127.0.0.1 logins.
    pub fn create_user(&self, name: &str, password: &str) -> Result<()> {
        let sql = format!(
            "CREATE USER {}@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD({})",
            quote_literal(name),
            quote_literal(password)
        );
        self.admin_sql(&sql).map(drop)
    }

    /// Creates database `name` and grants all privileges on it to `'owner'@'%'`.
    pub fn create_database(&self, name: &str, owner: &str) -> Result<()> {
        let db = quote_ident(name);
        let sql = format!(
            "CREATE DATABASE {db}; GRANT ALL PRIVILEGES ON {db}.* TO {}@'%'",
            quote_literal(owner)
        );
        self.admin_sql(&sql).map(drop)
    }
}

/// Quotes an identifier with backticks.
fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quotes a string literal (backslash escapes are on by default).
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

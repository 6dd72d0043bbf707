//! Throwaway database servers for integration tests, benchmarks and `airlock demo`.
//!
//! [`PgServer`] and [`MariaDbServer`] each run a private server from the
//! system's binaries: its own temp dir, a free loopback port, real password
//! authentication and a random admin password. The server is a child process
//! of the caller; dropping the handle (also while a test panics) stops it and
//! deletes its temp dir. When the caller is root, the servers run as
//! `nobody:nogroup`, because PostgreSQL refuses to run as root.
//!
//! * [`postgres`]: PostgreSQL via `initdb` + `postgres`.
//! * [`mariadb`]: MariaDB via `mariadb-install-db` + `mariadbd`.
//! * [`process`]: ports, users, binaries and child-process lifetimes.

pub mod mariadb;
pub mod postgres;
pub mod process;

pub use mariadb::MariaDbServer;
pub use postgres::{PgHostAuth, PgOptions, PgServer};

/// Everything that can go wrong while starting or driving a test server.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A server or client binary is not installed.
    #[error(
        "`{binary}` not found (searched: {searched}); install it with `apt-get install -y {package}`"
    )]
    MissingBinary {
        /// The binary that was looked for.
        binary: String,
        /// The directories that were searched.
        searched: String,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A file-system or process operation failed.
    #[error("{context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A helper command (initdb, psql, mariadb, ...) exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    CommandFailed {
        /// The command line, without secrets.
        command: String,
        /// Its exit status.
        status: String,
        /// The last lines of its stdout and stderr.
        output: String,
    },
    /// The server process exited before it was ready.
    #[error("{server} exited during startup ({status}); server log tail:\n{log_tail}")]
    ServerExited {
        /// Which server.
        server: &'static str,
        /// Its exit status.
        status: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The server did not accept connections in time.
    #[error("{server} was not ready after {seconds}s; server log tail:\n{log_tail}")]
    StartTimeout {
        /// Which server.
        server: &'static str,
        /// How long we waited.
        seconds: u64,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The server kept losing the race for a free port.
    #[error("{server} could not bind a free port after {attempts} attempts")]
    PortRace {
        /// Which server.
        server: &'static str,
        /// How many ports were tried.
        attempts: u32,
    },
    /// Running as root, but no unprivileged account exists to run servers as.
    #[error("cannot run database servers as root and found no unprivileged user: {0}")]
    NoUnprivilegedUser(String),
}

/// The result type of the test kit.
pub type Result<T, E = TestkitError> = std::result::Result<T, E>;

/// Servers are shared between tasks and threads, e.g. in an `Arc`.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PgServer>();
    assert_send_sync::<MariaDbServer>();
};

//! Ephemeral upstream credentials: every session runs as a database user
//! that exists only for that session.
//!
//! For a target with `credentials = "ephemeral"`, the target's `user` and
//! `password_*` are the *broker* credential. A broker (one per target,
//! shared by its sessions) logs in with it and, per session, creates a
//! login with a random unguessable name and a random password that gets its
//! privileges from a template role; it drops the user when the session
//! ends, when the TTL expires, or (leftovers of a crashed airlock) in the
//! janitor's next pass, at start and every `janitor_interval`.
//!
//! * [`pg`]: PostgreSQL (`CREATE ROLE ... VALID UNTIL ... IN ROLE`, marked
//!   by a role comment).
//! * [`mysql`]: MariaDB/MySQL (`CREATE USER`, `GRANT` and `SET DEFAULT
//!   ROLE`, marked by the name itself).
//!
//! [`Brokers`] keeps one broker and one janitor task per ephemeral target
//! across config reloads. Passwords never appear in logs or errors; user
//! names only in debug logs. Errors for the client are generic and never
//! fall back to the broker's credential.

pub mod lease;
pub mod mysql;
pub mod pg;
mod sql;

pub use mysql::{MyBroker, MyLease};
pub use pg::{spawn_janitor, Broker, Lease};

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use rand::Rng;
use tokio::task::JoinHandle;

use crate::config::{CredentialMode, Protocol};
use crate::pg::error::SessionError;
use crate::secret::Secret;

/// Length of a generated password (62^40 ≈ 2^238).
const PASSWORD_LEN: usize = 40;

/// Why a credential could not be created or dropped. Messages never contain
/// a password or an ephemeral role's name.
#[derive(Debug, thiserror::Error)]
pub enum CredError {
    /// The target is not set up for ephemeral credentials.
    #[error("ephemeral credentials misconfigured for target {target:?}: {message}")]
    Config { target: String, message: String },
    /// airlock could not log in as the broker.
    #[error("broker login failed for target {target:?}: {message}")]
    Login { target: String, message: String },
    /// The broker connection failed mid-request.
    #[error("broker connection to target {target:?} failed: {message}")]
    Connection { target: String, message: String },
    /// The server refused a statement.
    #[error("server refused the broker's statement for target {target:?} ({sqlstate}): {message}")]
    Server {
        target: String,
        sqlstate: String,
        message: String,
    },
}

impl CredError {
    /// The error the agent sees: generic, names only the target (the
    /// details were logged where the error arose).
    pub fn client_error(&self, target_name: &str) -> SessionError {
        unavailable(target_name)
    }
}

/// The error the agent sees when no ephemeral credential can be had.
pub fn unavailable(target_name: &str) -> SessionError {
    SessionError::Upstream {
        code: "08006",
        message: format!("airlock could not obtain a database credential for \"{target_name}\""),
    }
}

/// A target's broker, whichever its protocol.
#[derive(Clone)]
enum AnyBroker {
    Pg(Arc<Broker>),
    My(Arc<MyBroker>),
}

/// The brokers of a running airlock, one per ephemeral target, kept across
/// config reloads (a reload must not orphan live leases: the janitor of a
/// fresh broker would take them for leftovers), each with its janitor.
pub struct Brokers {
    instance_id: String,
    map: StdMutex<HashMap<String, BrokerEntry>>,
}

/// A broker and its janitor task.
type BrokerEntry = (AnyBroker, Option<JoinHandle<()>>);

impl Brokers {
    pub fn new(instance_id: &str) -> Self {
        Brokers {
            instance_id: instance_id.to_owned(),
            map: StdMutex::new(HashMap::new()),
        }
    }

    /// Brings the set in line with `config`: a broker (and janitor, when
    /// called within a runtime) for each new ephemeral target, the new
    /// settings for existing ones, and none for targets that are gone or no
    /// longer ephemeral (their live leases are still released normally).
    /// `tls` gives a target's upstream TLS config by name.
    pub fn sync(
        &self,
        config: &crate::config::Config,
        tls: impl Fn(&str) -> Option<Arc<rustls::ClientConfig>>,
    ) {
        let Ok(mut map) = self.map.lock() else { return };
        map.retain(|name, (broker, janitor)| {
            let keep = config.targets.get(name).is_some_and(|t| {
                t.credentials == CredentialMode::Ephemeral
                    && matches!(
                        (broker, t.protocol),
                        (AnyBroker::Pg(_), Protocol::Postgres)
                            | (AnyBroker::My(_), Protocol::Mysql)
                    )
            });
            if !keep {
                if let Some(j) = janitor.take() {
                    j.abort();
                }
            }
            keep
        });
        let runtime = tokio::runtime::Handle::try_current().ok();
        for (name, target) in &config.targets {
            if target.credentials != CredentialMode::Ephemeral {
                continue;
            }
            match map.get(name) {
                Some((AnyBroker::Pg(b), _)) => b.reconfigure(target, tls(name)),
                Some((AnyBroker::My(b), _)) => b.reconfigure(target, tls(name)),
                None => {
                    let entry = match target.protocol {
                        Protocol::Postgres => {
                            let b =
                                Arc::new(Broker::new(name, target, tls(name), &self.instance_id));
                            let janitor = runtime
                                .as_ref()
                                .map(|h| h.spawn(pg::janitor_loop(Arc::clone(&b))));
                            (AnyBroker::Pg(b), janitor)
                        }
                        Protocol::Mysql => {
                            let b =
                                Arc::new(MyBroker::new(name, target, tls(name), &self.instance_id));
                            let janitor = runtime
                                .as_ref()
                                .map(|h| h.spawn(mysql::janitor_loop(Arc::clone(&b))));
                            (AnyBroker::My(b), janitor)
                        }
                    };
                    map.insert(name.clone(), entry);
                }
            }
        }
    }

    /// The broker of an ephemeral Postgres target.
    pub fn get(&self, target_name: &str) -> Option<Arc<Broker>> {
        let map = self.map.lock().ok()?;
        match map.get(target_name) {
            Some((AnyBroker::Pg(b), _)) => Some(Arc::clone(b)),
            _ => None,
        }
    }

    /// The broker of an ephemeral MySQL/MariaDB target.
    pub fn get_mysql(&self, target_name: &str) -> Option<Arc<MyBroker>> {
        let map = self.map.lock().ok()?;
        match map.get(target_name) {
            Some((AnyBroker::My(b), _)) => Some(Arc::clone(b)),
            _ => None,
        }
    }
}

impl Drop for Brokers {
    fn drop(&mut self) {
        if let Ok(map) = self.map.get_mut() {
            for (_, janitor) in map.values_mut() {
                if let Some(j) = janitor.take() {
                    j.abort();
                }
            }
        }
    }
}

/// A stable id for this airlock: a hash of the host name and the Postgres
/// listen address, so that a restart drops its predecessor's leftovers
/// while two airlocks on different hosts or ports leave each other's alone.
pub fn default_instance_id(listen: Option<std::net::SocketAddr>) -> String {
    instance_id_of(listen, None)
}

/// [`default_instance_id`] for a config's listeners: the MySQL address
/// counts too when there is one (two MySQL-only airlocks on one host must
/// not share an id), and a Postgres-only config keeps its id.
pub fn instance_id(listen: &crate::config::Listen) -> String {
    instance_id_of(listen.postgres, listen.mysql)
}

fn instance_id_of(
    postgres: Option<std::net::SocketAddr>,
    mysql: Option<std::net::SocketAddr>,
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(hostname().as_bytes());
    h.update(b"\0");
    h.update(
        postgres
            .map(|a| a.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    if let Some(mysql) = mysql {
        h.update(b"\0mysql\0");
        h.update(mysql.to_string().as_bytes());
    }
    crate::hex::encode(&h.finalize()[..8])
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most
    // that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `len` random characters from `[a-z0-9]`.
fn random_name(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

fn random_password() -> Secret {
    let pw: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect();
    Secret::new(pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords_are_random() {
        let a = random_name(24);
        assert_eq!(a.len(), 24);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_ne!(a, random_name(24));
        let p = random_password();
        assert_eq!(p.expose().len(), PASSWORD_LEN);
        assert_ne!(p.expose(), random_password().expose());
        assert_eq!(format!("{p:?}"), "***");
    }

    #[test]
    fn instance_id_is_stable() {
        let addr = "127.0.0.1:6432".parse().ok();
        assert_eq!(default_instance_id(addr), default_instance_id(addr));
        assert_ne!(default_instance_id(addr), default_instance_id(None));
        assert_eq!(default_instance_id(addr).len(), 16);
        let pg_only = crate::config::Listen {
            postgres: addr,
            ..Default::default()
        };
        assert_eq!(instance_id(&pg_only), default_instance_id(addr));
        let a = crate::config::Listen {
            mysql: "127.0.0.1:3307".parse().ok(),
            ..Default::default()
        };
        let b = crate::config::Listen {
            mysql: "127.0.0.1:3308".parse().ok(),
            ..Default::default()
        };
        assert_ne!(instance_id(&a), instance_id(&b));
    }
}

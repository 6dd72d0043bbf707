//! Ephemeral upstream credentials on MariaDB/MySQL.
//!
//! Per session the broker runs (three statements, no multi-statements):
//!
//! ```sql
//! CREATE USER 'airlock_eph_<tag><expiry><random>'@'%'
//!   IDENTIFIED BY PASSWORD '*<native hash>' WITH MAX_USER_CONNECTIONS 2;
//! GRANT `<template>` TO '<user>'@'%';
//! SET DEFAULT ROLE `<template>`;     -- as the new user itself (MariaDB)
//! ```
//!
//! The password hash (`mysql_native_password`) is computed by airlock, so
//! the cleartext never appears in a statement (or the server's logs).
//!
//! MariaDB lets a user set another user's default role only with write
//! access to the `mysql` schema, which would make the broker as strong as
//! root; so airlock logs in once as the new user and sets its own default
//! role (needed before the session connects, because the session selects the
//! target's database at login and only the role grants access to it). On
//! MySQL the broker runs `SET DEFAULT ROLE ... TO '<user>'@'%'` (its
//! `CREATE USER` privilege suffices there).
//!
//! **The marker is the name.** MariaDB 10.11 has no user comments or
//! attributes, so the name carries what the janitor needs: the configured
//! prefix, a 6-character tag of the airlock instance, the expiry as 7
//! base-36 digits of unix seconds (`0000000`: no TTL), then 22 random
//! characters (36^22 ≈ 2^113), e.g. `airlock_eph_3fa9c1` `1u0x2kq`
//! `k2m…`. A name that has the prefix but not this shape is never touched.
//! The janitor lists `mysql.user` (the broker needs `SELECT` on it) and drops
//! the users of this instance that are not live leases of this process, and
//! every expired one. A bookkeeping table would need a writable schema for
//! the broker, and the name works with any server.
//!
//! Revocation: `KILL CONNECTION` for each of the user's threads
//! (`information_schema.PROCESSLIST`; the broker needs `PROCESS` and, on
//! MariaDB 10.5+, `CONNECTION ADMIN`), `DROP USER IF EXISTS`, then kill
//! again whatever logged in between the two.
//!
//! MySQL limits user names to 32 characters: there, use a short
//! `name_prefix` (at most 7 bytes leaves 12 random characters); tested on
//! MariaDB.

mod names;
mod session;
pub(crate) mod wire;

pub use session::{is_expiry, lease_for, until_expiry};

use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Mutex;

use super::{random_password, CredError};
use crate::config::Target;
use crate::credentials::lease::{self as lease, LiveLeases};
use crate::mysql::error::MyError;
use crate::policy::Principal;
use crate::secret::Secret;
use names::{instance_tag, make_name, parse_name, MARIADB_MAX_NAME, MYSQL_MAX_NAME};
use wire::{account, quote_ident, quote_literal, BrokerConn, Reply};

/// Connections an ephemeral user may have at once: the session's, the
/// one that sets its default role (maybe still closing), one spare.
const MAX_CONNECTIONS: u32 = 3;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// ER_NO_SUCH_THREAD: the thread ended before KILL reached it.
const NO_SUCH_THREAD: u16 = 1094;

/// A short-lived MariaDB/MySQL user, for one session.
pub type MyLease = crate::credentials::lease::Lease<Inner>;

type Settings = (Arc<Target>, Option<Arc<rustls::ClientConfig>>, u64);

/// Creates and drops ephemeral users for one MariaDB/MySQL target.
pub struct MyBroker {
    inner: Arc<Inner>,
}

/// The broker's state, shared with its leases and expiry timers.
pub struct Inner {
    target_name: String,
    /// The target, its upstream TLS config and a generation counter,
    /// replaced on reload.
    settings: StdMutex<Settings>,
    tag: String,
    timeout: Duration,
    conn: Mutex<Option<(u64, BrokerConn)>>,
    live: LiveLeases,
}

impl MyBroker {
    /// A broker for `target` (whose user/password are the broker
    /// credential); `instance_id` as for the Postgres broker. Nothing
    /// connects until the first request.
    pub fn new(
        target_name: &str,
        target: &Target,
        tls: Option<Arc<rustls::ClientConfig>>,
        instance_id: &str,
    ) -> Self {
        MyBroker {
            inner: Arc::new(Inner {
                target_name: target_name.to_owned(),
                settings: StdMutex::new((Arc::new(target.clone()), tls, 0)),
                tag: instance_tag(instance_id),
                timeout: DEFAULT_TIMEOUT,
                conn: Mutex::new(None),
                live: LiveLeases::default(),
            }),
        }
    }

    /// Applies a reloaded config to later leases.
    pub fn reconfigure(&self, target: &Target, tls: Option<Arc<rustls::ClientConfig>>) {
        if let Ok(mut s) = self.inner.settings.lock() {
            *s = (Arc::new(target.clone()), tls, s.2 + 1);
        }
    }

    /// Creates a user for `principal`'s session, with the template role of
    /// the first of its groups found in `ephemeral.group_roles`, else
    /// `ephemeral.template_role`, as its default role.
    pub async fn lease(&self, principal: &Principal) -> Result<MyLease, CredError> {
        let inner = &self.inner;
        let target = inner.target();
        let eph = &target.ephemeral;
        let template = principal
            .groups
            .iter()
            .find_map(|g| eph.group_roles.get(g))
            .unwrap_or(&eph.template_role)
            .clone();
        if template.is_empty() {
            return Err(inner.config_err("no template_role (and no group_roles entry) applies"));
        }
        let started = Instant::now();
        let (expires_at, expires_unix) = if eph.ttl.is_zero() {
            (None, 0)
        } else {
            (Some(started + eph.ttl), unix(SystemTime::now() + eph.ttl))
        };
        let password = random_password();
        let hash = airlock_protocol::mysql::auth::native_hash_string(password.expose().as_bytes());
        // The name depends on the server's limit: known once connected.
        let mut user = String::new();
        inner
            .with_conn(|c| {
                let limit = if c.mariadb {
                    MARIADB_MAX_NAME
                } else {
                    MYSQL_MAX_NAME
                };
                user = make_name(&eph.name_prefix, &inner.tag, expires_unix, limit);
            })
            .await?;
        if user.is_empty() {
            return Err(inner.config_err(
                "name_prefix is too long for the server's user names (MySQL: at most 7 bytes)",
            ));
        }
        let acct = account(&user);
        let role = quote_ident(&template);
        // Live before it exists, so the janitor never takes it for a leftover.
        inner.live.insert(&user);
        let created = inner
            .run(
                &format!(
                    "CREATE USER {acct} IDENTIFIED BY PASSWORD {pw} WITH MAX_USER_CONNECTIONS {MAX_CONNECTIONS}",
                    pw = quote_literal(&hash),
                ),
                &user,
            )
            .await;
        if let Err(e) = created {
            inner.live.remove(&user);
            tracing::warn!(target = %inner.target_name, error = %e, "could not create an ephemeral user");
            return Err(e);
        }
        let granted = async {
            inner.run(&format!("GRANT {role} TO {acct}"), &user).await?;
            if inner.is_mariadb().await {
                inner.set_own_default_role(&user, &password, &role).await
            } else {
                inner
                    .run(&format!("SET DEFAULT ROLE {role} TO {acct}"), &user)
                    .await
            }
        }
        .await;
        if let Err(e) = granted {
            tracing::warn!(target = %inner.target_name, error = %e, "could not give an ephemeral user its role; dropping it");
            lease::release(&**inner, &user).await;
            return Err(e);
        }
        Ok(MyLease::created(
            &self.inner,
            user,
            password,
            template,
            expires_at,
            eph.ttl,
            started,
        ))
    }

    /// Drops leftovers: users whose name has the prefix and airlock's shape
    /// that are this instance's but not live here, or expired. Returns how
    /// many were dropped.
    pub async fn janitor_pass(&self) -> Result<usize, CredError> {
        let inner = &self.inner;
        let target = inner.target();
        let prefix = &target.ephemeral.name_prefix;
        let like = prefix
            .replace('\\', "\\\\")
            .replace('_', "\\_")
            .replace('%', "\\%");
        let reply = inner
            .query(
                &format!(
                    "SELECT DISTINCT User FROM mysql.user WHERE User LIKE {}",
                    quote_literal(&format!("{like}%"))
                ),
                "",
            )
            .await?;
        if let Some((code, message)) = reply.error {
            return Err(inner.server_err(code, &message, ""));
        }
        let now = unix(SystemTime::now());
        let doomed: Vec<String> = reply
            .rows
            .into_iter()
            .filter_map(|row| row.into_iter().next().flatten())
            .filter(|name| {
                let Some((tag, expires)) = parse_name(name, prefix) else {
                    return false;
                };
                let expired = expires != 0 && expires <= now;
                let orphan = tag == inner.tag && !inner.live.contains(name);
                expired || orphan
            })
            .collect();
        Ok(super::lease::drop_leftovers(&**inner, doomed).await)
    }

    /// Leases of this process not yet released.
    pub fn live_count(&self) -> usize {
        self.inner.live.len()
    }
}

/// Runs [`MyBroker::janitor_pass`] now and then every `janitor_interval`
/// (only once if that is 0).
pub(super) async fn janitor_loop(broker: Arc<MyBroker>) {
    loop {
        let interval = broker.inner.target().ephemeral.janitor_interval;
        if let Err(e) = broker.janitor_pass().await {
            tracing::warn!(target = %broker.inner.target_name, error = %e, "janitor pass failed");
        }
        if interval.is_zero() {
            return;
        }
        crate::timer_thread::sleep(interval).await;
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Inner {
    fn settings(&self) -> Settings {
        match self.settings.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn target(&self) -> Arc<Target> {
        self.settings().0
    }

    fn config_err(&self, message: &str) -> CredError {
        CredError::Config {
            target: self.target_name.clone(),
            message: message.to_owned(),
        }
    }

    /// A server error, with the ephemeral user's name taken out.
    fn server_err(&self, code: u16, message: &str, user: &str) -> CredError {
        let message = if user.is_empty() {
            message.to_owned()
        } else {
            message.replace(user, "<ephemeral user>")
        };
        CredError::Server {
            target: self.target_name.clone(),
            sqlstate: code.to_string(),
            message,
        }
    }

    /// Kills `user`'s connections and drops it (gone already counts as
    /// dropped). Errors are logged.
    async fn revoke(&self, user: &str) -> Result<(), CredError> {
        let result = async {
            self.kill_threads(user).await?;
            self.run(&format!("DROP USER IF EXISTS {}", account(user)), user)
                .await?;
            self.kill_threads(user).await
        }
        .await;
        if let Err(e) = &result {
            tracing::warn!(target = %self.target_name, error = %e, "could not drop an ephemeral user; the janitor will retry");
            tracing::debug!(target = %self.target_name, user = %user, "ephemeral user not dropped");
        }
        result
    }

    async fn kill_threads(&self, user: &str) -> Result<(), CredError> {
        let reply = self
            .query(
                &format!(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = {}",
                    quote_literal(user)
                ),
                user,
            )
            .await?;
        if let Some((code, message)) = reply.error {
            return Err(self.server_err(code, &message, user));
        }
        for id in reply
            .rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
        {
            let Ok(id) = id.parse::<u64>() else { continue };
            let reply = self.query(&format!("KILL CONNECTION {id}"), user).await?;
            match reply.error {
                None => {}
                Some((NO_SUCH_THREAD, _)) => {}
                Some((code, message)) => return Err(self.server_err(code, &message, user)),
            }
        }
        Ok(())
    }

    /// Logs in as `user` (no database) and sets its default role.
    async fn set_own_default_role(
        &self,
        user: &str,
        password: &Secret,
        role: &str,
    ) -> Result<(), CredError> {
        let (target, tls, _) = self.settings();
        let mut t = (*target).clone();
        t.user = user.to_owned();
        t.password = Some(password.clone());
        let failed = |e: MyError| CredError::Connection {
            target: self.target_name.clone(),
            message: format!(
                "setting the default role: {}",
                e.to_string().replace(user, "<ephemeral user>")
            ),
        };
        let mut conn = wire::connect(&t, self.timeout, tls).await.map_err(failed)?;
        let reply = crate::timer_thread::timeout(
            self.timeout,
            conn.query(&format!("SET DEFAULT ROLE {role}")),
        )
        .await
        .map_err(|_| failed(MyError::Upstream("timed out".into())))?
        .map_err(failed)?;
        conn.quit().await;
        match reply.error {
            None => Ok(()),
            Some((code, message)) => Err(self.server_err(code, &message, user)),
        }
    }

    /// Runs a statement that must succeed.
    async fn run(&self, sql: &str, user: &str) -> Result<(), CredError> {
        match self.query(sql, user).await?.error {
            None => Ok(()),
            Some((code, message)) => Err(self.server_err(code, &message, user)),
        }
    }

    async fn is_mariadb(&self) -> bool {
        let slot = self.conn.lock().await;
        slot.as_ref().is_none_or(|(_, c)| c.mariadb)
    }

    /// Runs `f` on the broker connection, logging in first if needed.
    async fn with_conn(&self, f: impl FnOnce(&BrokerConn)) -> Result<(), CredError> {
        let mut slot = self.conn.lock().await;
        let conn = self.ensure(&mut slot).await?;
        f(conn);
        Ok(())
    }

    async fn ensure<'s>(
        &self,
        slot: &'s mut Option<(u64, BrokerConn)>,
    ) -> Result<&'s mut BrokerConn, CredError> {
        let (target, tls, generation) = self.settings();
        if slot.as_ref().is_some_and(|(g, _)| *g != generation) {
            *slot = None;
        }
        if slot.is_none() {
            let conn = wire::connect(&target, self.timeout, tls)
                .await
                .map_err(|e| CredError::Login {
                    target: self.target_name.clone(),
                    message: e.to_string(),
                })?;
            *slot = Some((generation, conn));
        }
        match slot.as_mut() {
            Some((_, c)) => Ok(c),
            None => Err(self.config_err("no broker connection")),
        }
    }

    /// Runs `sql` on the broker connection; a reused connection that fails
    /// is replaced and the statement retried once.
    async fn query(&self, sql: &str, user: &str) -> Result<Reply, CredError> {
        let mut slot = self.conn.lock().await;
        let mut retried = false;
        loop {
            let reused = slot.is_some();
            let conn = self.ensure(&mut slot).await?;
            let failure = match crate::timer_thread::timeout(self.timeout, conn.query(sql)).await {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(e)) => e.to_string().replace(user, "<ephemeral user>"),
                Err(_) => "timed out".to_owned(),
            };
            *slot = None;
            if reused && !retried {
                tracing::debug!(target = %self.target_name, error = %failure, "broker connection failed; reconnecting");
                retried = true;
                continue;
            }
            return Err(CredError::Connection {
                target: self.target_name.clone(),
                message: failure,
            });
        }
    }
}

impl crate::credentials::lease::Revoker for Inner {
    fn target_name(&self) -> &str {
        &self.target_name
    }

    fn live(&self) -> &LiveLeases {
        &self.live
    }

    async fn drop_user(&self, user: &str) -> Result<(), CredError> {
        self.revoke(user).await
    }
}

//! Ephemeral upstream credentials on PostgreSQL.
//!
//! For a target with `credentials = "ephemeral"`, the target's `user` and
//! `password_*` are the *broker* credential. A [`Broker`] (one per target,
//! shared by its sessions) logs in with it and, per session, creates a login
//! role with a random unguessable name and a random password, a member of a
//! template role that carries the privileges:
//!
//! ```sql
//! CREATE ROLE "airlock_eph_<24 random>" LOGIN INHERIT NOSUPERUSER ...
//!   PASSWORD 'SCRAM-SHA-256$...' VALID UNTIL '<now + ttl>' CONNECTION LIMIT 2
//!   IN ROLE "<template>" ROLE CURRENT_USER;
//! COMMENT ON ROLE "airlock_eph_..." IS 'airlock:ephemeral:<instance id>:<expiry, unix s>'
//! ```
//!
//! The password is hashed (SCRAM-SHA-256) by airlock before it is sent, so
//! it never appears in the server's statement log. `ROLE CURRENT_USER` makes
//! the broker a member of the new role, which Postgres requires for
//! `pg_terminate_backend` and `DROP OWNED BY` on it.
//!
//! The [`Lease`] is revoked (backends terminated, `DROP OWNED BY`, `DROP
//! ROLE`) when the session ends ([`Lease::release`], or on drop as a safety
//! net), when its TTL expires (a timer in the broker, independent of the
//! session's own timer), and otherwise by the janitor ([`Broker::janitor_pass`],
//! [`spawn_janitor`]), which drops leftovers of a crashed airlock: roles with
//! the configured prefix and airlock's marker comment that are either this
//! instance's but not live, or expired (any instance).
//!
//! `DROP OWNED BY` runs in the target's database only: objects an ephemeral
//! user created in another database would make `DROP ROLE` fail (and be
//! logged); the role's `VALID UNTIL` still stops it from logging in.
//!
//! Passwords never appear in logs or errors; role names only in debug logs.
//! Errors for the client are generic and never fall back to the broker's
//! credential.
//!
//! Revocation does not wait for terminated backends to exit: `DROP OWNED
//! BY` waits for any lock a dying backend still holds, and `DROP ROLE`
//! succeeds while a backend of the role is exiting.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::lease::LiveLeases;
use super::sql::{self, quote_ident, quote_literal, simple_query, Reply};
use super::{random_name, random_password, CredError};
use crate::config::Target;
use crate::pg::conn::Conn;
use crate::pg::upstream;
use crate::policy::Principal;

/// Marks airlock's ephemeral roles, in their `COMMENT`.
const MARKER: &str = "airlock:ephemeral:";
/// Random characters in a role name after the prefix (36^24 ≈ 2^124).
const NAME_RANDOM: usize = 24;
/// Postgres truncates identifiers longer than this.
const MAX_IDENT: usize = 63;
/// Backends an ephemeral user may have at once (the session's, plus one
/// still exiting).
const CONNECTION_LIMIT: u32 = 2;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A short-lived role, for one session.
pub type Lease = super::lease::Lease<Inner>;

#[derive(Clone)]
struct Settings {
    target: Arc<Target>,
    tls: Option<Arc<rustls::ClientConfig>>,
    generation: u64,
}

/// Creates and drops ephemeral users for one target.
pub struct Broker {
    inner: Arc<Inner>,
}

/// The broker's state, shared with its leases and expiry timers.
pub struct Inner {
    target_name: String,
    /// The target and its TLS config; replaced by [`Broker::reconfigure`].
    settings: StdMutex<Settings>,
    instance_id: String,
    timeout: Duration,
    max_message: usize,
    /// The broker's logged-in connection, reused; `None` after an error.
    /// Tagged with the settings generation it was made with.
    conn: Mutex<Option<(u64, Conn)>>,
    /// This process's leases not yet released, with their expiry timers.
    live: LiveLeases,
}

impl Broker {
    /// A broker for `target` (whose user/password are the broker credential).
    /// `instance_id` tags the roles it creates so that a restarted airlock
    /// with the same id drops its own leftovers at once; see
    /// [`super::default_instance_id`]. Nothing connects until the first request.
    pub fn new(
        target_name: &str,
        target: &Target,
        tls: Option<Arc<rustls::ClientConfig>>,
        instance_id: &str,
    ) -> Self {
        Broker {
            inner: Arc::new(Inner {
                target_name: target_name.to_owned(),
                settings: StdMutex::new(Settings {
                    target: Arc::new(target.clone()),
                    tls,
                    generation: 0,
                }),
                instance_id: instance_id.to_owned(),
                timeout: DEFAULT_TIMEOUT,
                max_message: airlock_protocol::pg::frame::DEFAULT_MAX_MESSAGE,
                conn: Mutex::new(None),
                live: LiveLeases::default(),
            }),
        }
    }

    /// Sets the connect/statement timeout (default 10 s) and the largest
    /// message accepted from the server. Call before sharing the broker.
    pub fn with_limits(mut self, timeout: Duration, max_message: usize) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.timeout = timeout;
            inner.max_message = max_message;
        }
        self
    }

    pub fn target_name(&self) -> &str {
        &self.inner.target_name
    }

    /// Applies a reloaded config: later leases use the new template roles,
    /// TTL and broker credential (the broker connection is replaced). Live
    /// leases are unaffected.
    pub fn reconfigure(&self, target: &Target, tls: Option<Arc<rustls::ClientConfig>>) {
        if let Ok(mut s) = self.inner.settings.lock() {
            s.target = Arc::new(target.clone());
            s.tls = tls;
            s.generation += 1;
        }
    }

    /// Creates a user for `principal`'s session: a member of the first of
    /// its groups found in `ephemeral.group_roles`, else of
    /// `ephemeral.template_role`.
    pub async fn lease(&self, principal: &Principal) -> Result<Lease, CredError> {
        let inner = &self.inner;
        let target = inner.settings().target;
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
        if eph.name_prefix.len() + NAME_RANDOM > MAX_IDENT {
            return Err(inner.config_err("name_prefix is too long (at most 39 bytes)"));
        }
        let started = Instant::now();
        let user = format!("{}{}", eph.name_prefix, random_name(NAME_RANDOM));
        let password = random_password();
        // Hashing (PBKDF2) is CPU work: keep it off the async workers.
        let verifier = {
            let pw = password.clone();
            tokio::task::spawn_blocking(move || {
                airlock_protocol::pg::scram::make_verifier(pw.expose())
            })
            .await
            .map_err(|e| inner.config_err(&format!("hashing the password failed: {e}")))?
        };
        let ttl = eph.ttl;
        let (expires_at, expires_unix, valid_until) = if ttl.is_zero() {
            (None, 0, String::new())
        } else {
            let at = SystemTime::now() + ttl;
            let unix = at
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let stamp = humantime::format_rfc3339_seconds(at).to_string();
            (
                Some(started + ttl),
                unix,
                format!(" VALID UNTIL {}", quote_literal(&stamp)),
            )
        };
        let comment = format!("{MARKER}{}:{expires_unix}", inner.instance_id);
        let statement = format!(
            "CREATE ROLE {name} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
             NOBYPASSRLS CONNECTION LIMIT {CONNECTION_LIMIT} PASSWORD {pw}{valid_until} \
             IN ROLE {template_q} ROLE CURRENT_USER; COMMENT ON ROLE {name} IS {comment}",
            name = quote_ident(&user),
            pw = quote_literal(&verifier),
            template_q = quote_ident(&template),
            comment = quote_literal(&comment),
        );
        // Live before it exists, so the janitor never takes it for a leftover.
        inner.live.insert(&user);
        let reply = match inner.exec(&statement, &user).await {
            Ok(r) => r,
            Err(e) => {
                // It may exist if the reply was lost: leave it to the janitor.
                inner.live.remove(&user);
                tracing::warn!(target = %inner.target_name, error = %e, "could not create an ephemeral user");
                return Err(e);
            }
        };
        if let Some(err) = reply.error {
            inner.live.remove(&user);
            let e = inner.server_err(err, &user);
            tracing::warn!(target = %inner.target_name, error = %e, "could not create an ephemeral user");
            return Err(e);
        }
        Ok(Lease::created(
            &self.inner,
            user,
            password,
            template,
            expires_at,
            ttl,
            started,
        ))
    }

    /// Drops leftovers: roles with the prefix and airlock's marker comment
    /// that belong to this instance but are not live leases of this process,
    /// or that have expired (whatever instance made them). Returns how many
    /// were dropped.
    pub async fn janitor_pass(&self) -> Result<usize, CredError> {
        let inner = &self.inner;
        let target = inner.settings().target;
        let prefix = &target.ephemeral.name_prefix;
        let query = format!(
            "SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles \
             WHERE starts_with(rolname::text, {p}) \
             AND starts_with(shobj_description(oid, 'pg_authid'), {m})",
            p = quote_literal(prefix),
            m = quote_literal(MARKER),
        );
        let reply = inner.exec(&query, "").await?;
        if let Some(err) = reply.error {
            return Err(inner.server_err(err, ""));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut doomed = Vec::new();
        for row in reply.rows {
            let (Some(Some(name)), Some(Some(comment))) = (row.first(), row.get(1)) else {
                continue;
            };
            if !name.starts_with(prefix.as_str()) {
                continue;
            }
            let Some((instance, expires)) = parse_marker(comment) else {
                continue;
            };
            let expired = expires != 0 && expires <= now;
            let orphan = instance == inner.instance_id && !inner.live.contains(name);
            if expired || orphan {
                doomed.push(name.clone());
            }
        }
        Ok(super::lease::drop_leftovers(&**inner, doomed).await)
    }

    /// Leases of this process not yet released.
    pub fn live_count(&self) -> usize {
        self.inner.live.len()
    }
}

/// Runs [`Broker::janitor_pass`] now and then every `ephemeral.janitor_interval`
/// (only once if that is 0). Abort the handle to stop it.
pub fn spawn_janitor(broker: Arc<Broker>) -> JoinHandle<()> {
    tokio::spawn(janitor_loop(broker))
}

pub(super) async fn janitor_loop(broker: Arc<Broker>) {
    loop {
        let interval = broker.inner.settings().target.ephemeral.janitor_interval;
        if let Err(e) = broker.janitor_pass().await {
            tracing::warn!(target = %broker.inner.target_name, error = %e, "janitor pass failed");
        }
        if interval.is_zero() {
            return;
        }
        crate::timer_thread::sleep(interval).await;
    }
}

/// `airlock:ephemeral:<instance>:<expires>` → (instance, expires).
fn parse_marker(comment: &str) -> Option<(&str, u64)> {
    let rest = comment.strip_prefix(MARKER)?;
    let (instance, expires) = rest.rsplit_once(':')?;
    Some((instance, expires.parse().ok()?))
}

impl Inner {
    fn settings(&self) -> Settings {
        match self.settings.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn config_err(&self, message: &str) -> CredError {
        CredError::Config {
            target: self.target_name.clone(),
            message: message.to_owned(),
        }
    }

    /// A server error, with the ephemeral role's name taken out.
    fn server_err(&self, err: sql::ServerError, user: &str) -> CredError {
        let message = if user.is_empty() {
            err.message
        } else {
            err.message.replace(user, "<ephemeral user>")
        };
        CredError::Server {
            target: self.target_name.clone(),
            sqlstate: err.sqlstate,
            message,
        }
    }

    /// Terminates `user`'s backends and drops the role. A role that is
    /// already gone counts as dropped. Errors are logged.
    async fn revoke(&self, user: &str) -> Result<(), CredError> {
        // First, on its own (it stays when the drop below fails): the user
        // can log in no more, whatever password the session gave it.
        let lock_out = format!(
            "SET lock_timeout = '5s'; ALTER ROLE {} NOLOGIN PASSWORD NULL",
            quote_ident(user)
        );
        if let Ok(Reply { error: Some(e), .. }) = self.exec(&lock_out, user).await {
            if e.sqlstate != "42704" {
                tracing::warn!(target = %self.target_name, sqlstate = %e.sqlstate, "could not lock an ephemeral user out before dropping it");
            }
        }
        // CASCADE: objects of others that depend on the user's (a view
        // handed to another role over the user's table) go with them, or
        // the drop would fail and the user outlive its session. A lock
        // held by another session fails it after a few seconds instead of
        // stalling the broker; the janitor retries.
        let statement = format!(
            "SET lock_timeout = '5s'; \
             SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE usename = {lit}; DROP OWNED BY {ident} CASCADE; DROP ROLE {ident}",
            lit = quote_literal(user),
            ident = quote_ident(user),
        );
        let result = match self.exec(&statement, user).await {
            Ok(Reply { error: None, .. }) => Ok(()),
            // undefined_object: dropped already (by the janitor, or another airlock).
            Ok(Reply { error: Some(e), .. }) if e.sqlstate == "42704" => Ok(()),
            Ok(Reply { error: Some(e), .. }) => Err(self.server_err(e, user)),
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            tracing::warn!(target = %self.target_name, error = %e, "could not drop an ephemeral user; the janitor will retry");
            tracing::debug!(target = %self.target_name, user = %user, "ephemeral user not dropped");
        }
        result
    }

    /// Runs `sql` on the broker connection, logging in first if there is
    /// none. A reused connection that fails is replaced and the query
    /// retried once (the statements are safe to repeat: a repeated CREATE
    /// fails, a repeated drop finds nothing).
    async fn exec(&self, sql: &str, user: &str) -> Result<Reply, CredError> {
        let mut slot = self.conn.lock().await;
        let mut retried = false;
        loop {
            let settings = self.settings();
            if slot
                .as_ref()
                .is_some_and(|(g, _)| *g != settings.generation)
            {
                *slot = None; // reconfigured: log in afresh
            }
            let reused = slot.is_some();
            let conn = match slot.as_mut() {
                Some((_, c)) => c,
                None => {
                    let c = self.connect(&settings).await?;
                    &mut slot.insert((settings.generation, c)).1
                }
            };
            let sql = format!("{}{sql}", upstream::OWN_SEARCH_PATH);
            let failure =
                match crate::timer_thread::timeout(self.timeout, simple_query(conn, &sql)).await {
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

    async fn connect(&self, settings: &Settings) -> Result<Conn, CredError> {
        let params = upstream::own_params("airlock credential broker");
        match upstream::connect(
            &self.target_name,
            &settings.target,
            settings.tls.clone(),
            &params,
            self.timeout,
            self.max_message,
        )
        .await
        {
            Ok(up) => Ok(up.conn),
            Err(e) => Err(CredError::Login {
                target: self.target_name.clone(),
                message: e.to_string(),
            }),
        }
    }
}

impl super::lease::Revoker for Inner {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        assert_eq!(
            parse_marker("airlock:ephemeral:ab12:1700000000"),
            Some(("ab12", 1_700_000_000))
        );
        assert_eq!(parse_marker("airlock:ephemeral:a:b:5"), Some(("a:b", 5)));
        assert_eq!(parse_marker("airlock:ephemeral:x"), None);
        assert_eq!(parse_marker("someone else's role"), None);
    }

    #[test]
    fn names_fit_an_identifier() {
        assert!(random_name(NAME_RANDOM).len() + "airlock_eph_".len() <= MAX_IDENT);
    }
}

//! A short-lived database user leased to one session, whichever server's
//! broker made it: what the session logs in upstream with, the leases a
//! broker has live, and the user's revocation by whoever gets there first:
//! the session's end, its TTL running out, or (as a safety net) the lease
//! dropped without being released.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;

use super::CredError;
use crate::config::{CredentialMode, Target};
use crate::secret::Secret;

/// A broker revokes an expired lease this long after its TTL, so that the
/// session's own timer (which tells the agent why) normally acts first.
const EXPIRY_GRACE: Duration = Duration::from_millis(500);

/// The broker that made a lease, as its leases see it.
pub trait Revoker: Send + Sync + 'static {
    /// The broker's target, for messages.
    fn target_name(&self) -> &str;

    /// The leases it made in this process and has not revoked yet.
    fn live(&self) -> &LiveLeases;

    /// Drops `user` on the server (a user already gone counts as dropped).
    /// Errors are the implementation's to log; the janitor retries later.
    fn drop_user(&self, user: &str) -> impl Future<Output = Result<(), CredError>> + Send;
}

/// Revokes `user` if it is still live (the first caller does; the others
/// find it gone). Never panics.
pub async fn release<R: Revoker>(broker: &R, user: &str) {
    if !broker.live().remove(user) {
        return;
    }
    let started = Instant::now();
    if broker.drop_user(user).await.is_ok() {
        tracing::info!(
            target = %broker.target_name(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ephemeral user dropped"
        );
    }
}

/// The janitor's drops: each of `doomed` (leftovers, or expired) is
/// taken off the live leases and dropped. Returns how many were dropped.
pub async fn drop_leftovers<R: Revoker>(broker: &R, doomed: Vec<String>) -> usize {
    let mut dropped = 0;
    for name in doomed {
        broker.live().remove(&name);
        tracing::debug!(target = %broker.target_name(), user = %name, "janitor drops ephemeral user");
        if broker.drop_user(&name).await.is_ok() {
            dropped += 1;
        }
    }
    if dropped > 0 {
        tracing::info!(target = %broker.target_name(), dropped, "janitor dropped leftover ephemeral users");
    }
    dropped
}

/// Revokes `user` when its TTL (`at`) has run out, if it is live then.
pub fn expire_at<R: Revoker>(broker: &Arc<R>, user: &str, at: Instant) {
    let weak = Arc::downgrade(broker);
    let name = user.to_owned();
    let timer = tokio::spawn(async move {
        crate::timer_thread::sleep_until(at + EXPIRY_GRACE).await;
        let Some(broker) = weak.upgrade() else { return };
        if broker.live().contains(&name) {
            tracing::info!(target = %broker.target_name(), "ephemeral user expired; revoking it");
            release(&*broker, &name).await;
        }
    });
    if let Ok(mut live) = broker.live().0.lock() {
        match live.get_mut(user) {
            Some(slot) => *slot = Some(timer.abort_handle()),
            // Released already.
            None => timer.abort(),
        }
    }
}

/// The users a broker leased in this process and has not revoked, each
/// with its expiry timer (the janitor leaves these alone).
#[derive(Default)]
pub struct LiveLeases(Mutex<HashMap<String, Option<AbortHandle>>>);

impl LiveLeases {
    /// Marks `user` live (before it exists, so that the janitor never
    /// takes it for a leftover).
    pub fn insert(&self, user: &str) {
        if let Ok(mut l) = self.0.lock() {
            l.insert(user.to_owned(), None);
        }
    }

    /// Whether `user` was live (and now is not). Stops its expiry timer,
    /// unless that is the caller.
    pub fn remove(&self, user: &str) -> bool {
        let entry = self.0.lock().ok().and_then(|mut l| l.remove(user));
        match entry {
            Some(timer) => {
                if let Some(t) = timer {
                    if tokio::task::try_id() != Some(t.id()) {
                        t.abort();
                    }
                }
                true
            }
            None => false,
        }
    }

    pub fn contains(&self, user: &str) -> bool {
        self.0.lock().map(|l| l.contains_key(user)).unwrap_or(false)
    }

    pub fn len(&self) -> usize {
        self.0.lock().map(|l| l.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A short-lived database user, for one session.
pub struct Lease<R: Revoker> {
    /// The user name to log in as.
    pub user: String,
    pub password: Secret,
    /// When the user stops working (the session must end by then); `None`
    /// when the target's `ttl` is 0.
    pub expires_at: Option<Instant>,
    /// The template role or user it takes its privileges from.
    pub template: String,
    /// Set until released.
    broker: Option<Arc<R>>,
}

impl<R: Revoker> Lease<R> {
    /// The lease of `user`, which `broker` has just created (`started`
    /// is when it began): logged, and revoked at `expires_at` if it is
    /// still live then.
    pub(super) fn created(
        broker: &Arc<R>,
        user: String,
        password: Secret,
        template: String,
        expires_at: Option<Instant>,
        ttl: Duration,
        started: Instant,
    ) -> Self {
        let target = broker.target_name();
        tracing::info!(
            target = %target,
            template = %template,
            ttl = ?ttl,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ephemeral user created"
        );
        tracing::debug!(target = %target, user = %user, "ephemeral user name");
        if let Some(at) = expires_at {
            expire_at(broker, &user, at);
        }
        Lease {
            user,
            password,
            expires_at,
            template,
            broker: Some(Arc::clone(broker)),
        }
    }

    /// `base` (the broker's target) with this lease's user and password, to
    /// connect the session upstream with.
    pub fn target(&self, base: &Target) -> Target {
        let mut t = base.clone();
        t.user = self.user.clone();
        t.password = Some(self.password.clone());
        t.password_env = None;
        t.password_file = None;
        t.credentials = CredentialMode::Static;
        t
    }

    /// Revokes the user now: its connections end and it is dropped.
    /// Errors are logged (the janitor retries later); never panics.
    pub async fn release(mut self) {
        if let Some(broker) = self.broker.take() {
            release(&*broker, &self.user).await;
        }
    }
}

impl<R: Revoker> std::fmt::Debug for Lease<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("template", &self.template)
            .field("expires_at", &self.expires_at)
            .field("released", &self.broker.is_none())
            .finish_non_exhaustive()
    }
}

impl<R: Revoker> Drop for Lease<R> {
    /// Safety net for a lease that was not released: revoke it in the
    /// background on the current runtime, or leave it to the janitor.
    fn drop(&mut self) {
        let Some(broker) = self.broker.take() else {
            return;
        };
        let user = std::mem::take(&mut self.user);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move { release(&*broker, &user).await });
            }
            Err(_) => tracing::warn!(
                target = %broker.target_name(),
                "ephemeral credential dropped outside a runtime; the janitor will drop it"
            ),
        }
    }
}

//! A short-lived database user leased to one session, whichever server's
//! broker made it: what the session logs in upstream with, and the user's
//! revocation when the session ends (or, as a safety net, when the lease
//! is dropped without being released).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{CredentialMode, Target};
use crate::secret::Secret;

/// What revokes a lease's user: the broker that made it.
pub trait Revoker: Send + Sync + 'static {
    /// The broker's target, for messages.
    fn target_name(&self) -> &str;

    /// Revokes `user` now. Errors are logged (the janitor retries later);
    /// never panics.
    fn revoke(self: Arc<Self>, user: String) -> impl Future<Output = ()> + Send + 'static;
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
    /// A lease of `user`, which `broker` revokes.
    pub(super) fn new(
        user: String,
        password: Secret,
        expires_at: Option<Instant>,
        template: String,
        broker: Arc<R>,
    ) -> Self {
        Lease {
            user,
            password,
            expires_at,
            template,
            broker: Some(broker),
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

    /// Revokes the user now (see [`Revoker::revoke`]).
    pub async fn release(mut self) {
        if let Some(broker) = self.broker.take() {
            let user = std::mem::take(&mut self.user);
            broker.revoke(user).await;
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
                handle.spawn(broker.revoke(user));
            }
            Err(_) => tracing::warn!(
                target = %broker.target_name(),
                "ephemeral credential dropped outside a runtime; the janitor will drop it"
            ),
        }
    }
}

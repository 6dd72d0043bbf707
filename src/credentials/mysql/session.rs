//! The MySQL session's side of ephemeral credentials: a lease at login
//! (never falling back to the broker's credential), and the TTL cut.

use std::time::Instant;

use super::MyLease;
use crate::config::{CredentialMode, Target};
use crate::mysql::error::MyError;
use crate::policy::Principal;
use crate::proxy::Proxy;
use crate::wake_gate::WakeGate;

/// The MySQL session's hook: for an ephemeral target, a lease for
/// `principal` (the session connects upstream as its user); `None` for a
/// static target. Never falls back to the broker's credential.
pub async fn lease_for(
    proxy: &Proxy,
    target_name: &str,
    target: &Target,
    principal: &Principal,
) -> Result<Option<MyLease>, MyError> {
    if target.credentials != CredentialMode::Ephemeral {
        return Ok(None);
    }
    let broker = proxy
        .brokers
        .get_mysql(target_name)
        .ok_or_else(|| unavailable(target_name))?;
    match broker.lease(principal).await {
        Ok(lease) => Ok(Some(lease)),
        Err(_) => Err(unavailable(target_name)),
    }
}

/// The ERR an agent gets when no credential can be had.
fn unavailable(target_name: &str) -> MyError {
    MyError::refused(
        1105,
        "HY000",
        format!("airlock could not obtain a database credential for '{target_name}'"),
    )
}

/// Runs the session's command loop until it ends or the lease's TTL
/// expires, which ends the session with a clear ERR.
pub async fn until_expiry(
    expires_at: Option<Instant>,
    commands: impl std::future::Future<Output = Result<(), MyError>>,
) -> Result<(), MyError> {
    match expires_at {
        None => commands.await,
        // The timer first, and gated (see `wake_gate`): polled only when it
        // fired, not at every packet the commands move.
        Some(at) => tokio::select! {
            biased;
            _ = WakeGate::new(crate::timer_thread::sleep_until(at)) => Err(MyError::refused(
                EXPIRED_CODE,
                "70100",
                "airlock: terminating connection because its database credential expired (ephemeral.ttl)",
            )),
            r = commands => r,
        },
    }
}

/// ER_CONNECTION_KILLED: what a TTL cut ends the session with.
const EXPIRED_CODE: u16 = 1927;

/// Whether a session ended because its credential expired. The ERR then
/// goes out while the client is most likely idle: it should carry sequence
/// id 1, answering the client's next command.
pub fn is_expiry<T>(result: &Result<T, MyError>) -> bool {
    matches!(
        result,
        Err(MyError::Refused {
            code: EXPIRED_CODE,
            ..
        })
    )
}

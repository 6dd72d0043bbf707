//! Connections that have not logged in yet, counted per client address.
//!
//! A connection holds one of the listener's `max_client_connections`
//! slots from its accept, and a client that sends nothing keeps it for
//! `limits.login_timeout`: one host opening connections and saying
//! nothing took every slot, and every agent's login was refused for as
//! long as it kept doing so (resource-exhaustion finding). With
//! `limits.max_pending_logins_per_address`, one address may hold at most
//! that many connections that have not logged in, across both listeners;
//! one more is closed at once, unanswered (answering would mean reading
//! it first). A login that succeeds gives its place back at once; so
//! does one that fails or gives up.

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;

/// The per-address counts, shared by both listeners.
#[derive(Debug, Default)]
pub struct PendingLogins {
    by_address: DashMap<IpAddr, usize>,
}

/// One connection's place among its address's logins in progress; given
/// back when dropped.
#[derive(Debug)]
pub struct PendingLogin {
    logins: Option<Arc<PendingLogins>>,
    address: IpAddr,
}

impl PendingLogins {
    /// A place for a login from `address`, or `None` when it holds
    /// `limit` already (0: no limit).
    pub fn start(self: &Arc<Self>, address: IpAddr, limit: usize) -> Option<PendingLogin> {
        if limit == 0 {
            return Some(PendingLogin {
                logins: None,
                address,
            });
        }
        let mut count = self.by_address.entry(address).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(PendingLogin {
            logins: Some(Arc::clone(self)),
            address,
        })
    }

    /// Logins in progress from `address` (for tests and metrics).
    pub fn count(&self, address: IpAddr) -> usize {
        self.by_address.get(&address).map_or(0, |c| *c)
    }
}

impl PendingLogin {
    /// The login is over (it succeeded): the place is given back now
    /// rather than when the session ends.
    pub fn finish(&mut self) {
        let Some(logins) = self.logins.take() else {
            return;
        };
        // Removed at zero, so that the map holds only addresses with
        // logins in progress (a scan of many addresses leaves nothing).
        logins.by_address.remove_if_mut(&self.address, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }
}

impl Drop for PendingLogin {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_limit_and_gets_places_back() {
        let logins = Arc::new(PendingLogins::default());
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = logins.start(a, 2);
        let mut second = logins.start(a, 2).expect("a second place");
        assert!(first.is_some());
        assert!(logins.start(a, 2).is_none(), "the third is refused");
        assert!(logins.start(b, 2).is_some(), "another address is not");
        second.finish();
        assert_eq!(logins.count(a), 1);
        drop(second);
        assert_eq!(logins.count(a), 1, "finished once, given back once");
        drop(first);
        assert_eq!(logins.count(a), 0);
        assert!(logins.by_address.is_empty());
        assert!(logins.start(a, 0).is_some(), "0: no limit");
    }
}

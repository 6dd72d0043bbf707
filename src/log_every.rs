//! Warnings about a flood, logged at most once per period with a count of
//! the events since the last one, so that a client opening connections as
//! fast as it can does not fill airlock's log as well.

use std::time::{Duration, Instant};

/// Counts events and says when one should be logged.
#[derive(Debug)]
pub struct LogEvery {
    period: Duration,
    last: Option<Instant>,
    since: u64,
}

impl LogEvery {
    pub const fn new(period: Duration) -> LogEvery {
        LogEvery {
            period,
            last: None,
            since: 0,
        }
    }

    /// Counts one event. `Some(n)` when it is time to log: `n` events
    /// (this one included) since the last time.
    pub fn hit(&mut self) -> Option<u64> {
        self.since += 1;
        if self.last.is_some_and(|at| at.elapsed() < self.period) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.since))
    }
}

/// [`LogEvery`] shared by every connection's task (a `static`).
pub struct SharedLogEvery(std::sync::Mutex<LogEvery>);

impl SharedLogEvery {
    pub const fn new(period: Duration) -> SharedLogEvery {
        SharedLogEvery(std::sync::Mutex::new(LogEvery::new(period)))
    }

    /// [`LogEvery::hit`].
    pub fn hit(&self) -> Option<u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).hit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_is_logged_then_counted_until_the_period_ends() {
        let mut every = LogEvery::new(Duration::from_secs(3600));
        assert_eq!(every.hit(), Some(1));
        assert_eq!(every.hit(), None);
        assert_eq!(every.hit(), None);
        let mut now = LogEvery::new(Duration::ZERO);
        assert_eq!(now.hit(), Some(1));
        assert_eq!(now.hit(), Some(1));
    }
}

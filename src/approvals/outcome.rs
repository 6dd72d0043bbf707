//! How a held statement ends, and the words for the client and the log.

use std::time::Duration;

/// The end of a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A reviewer approved this request (and maybe opened a window).
    Approved {
        by: String,
        window: Option<Duration>,
    },
    /// An earlier approval window covered it: released without asking.
    Window {
        by: String,
    },
    Denied {
        by: String,
        reason: String,
    },
    /// Nobody decided within the configured timeout.
    TimedOut(Duration),
    /// airlock is shutting down (or the registry went away).
    Cancelled,
    /// The client cancelled the held statement (a Postgres CancelRequest):
    /// the request was withdrawn.
    Withdrawn,
    /// The client hung up while its statement was held (a MySQL session,
    /// which reads nothing from its client meanwhile, watches for that):
    /// the request was withdrawn.
    ClientGone,
}

impl Outcome {
    pub fn is_approved(&self) -> bool {
        matches!(self, Outcome::Approved { .. } | Outcome::Window { .. })
    }

    /// The reason recorded in the audit log for this outcome.
    pub fn audit_reason(&self, id: Option<u64>) -> String {
        let req = id.map(|i| format!(" (request {i})")).unwrap_or_default();
        match self {
            Outcome::Approved { by, window: None } => format!("approved by {by}{req}"),
            Outcome::Approved {
                by,
                window: Some(w),
            } => format!(
                "approved by {by} for {}{req}",
                humantime::format_duration(*w)
            ),
            Outcome::Window { by } => format!("released by an approval window of {by}"),
            Outcome::Denied { by, reason } => format!("denied by {by}: {reason}{req}"),
            Outcome::TimedOut(after) => format!(
                "approval timed out after {}{req}",
                humantime::format_duration(*after)
            ),
            Outcome::Cancelled => format!("approval cancelled: airlock is shutting down{req}"),
            Outcome::Withdrawn => format!("withdrawn: the client cancelled the statement{req}"),
            Outcome::ClientGone => format!("withdrawn: the client disconnected{req}"),
        }
    }

    /// The error message the client gets, or `None` when released.
    pub fn refusal(&self, rule: &str) -> Option<String> {
        match self {
            Outcome::Approved { .. } | Outcome::Window { .. } => None,
            Outcome::Denied { by, reason } => {
                Some(format!("airlock: rule {rule}: denied by {by}: {reason}"))
            }
            Outcome::TimedOut(after) => Some(format!(
                "airlock: rule {rule}: approval timed out after {}",
                humantime::format_duration(*after)
            )),
            Outcome::Cancelled => Some(format!(
                "airlock: rule {rule}: approval cancelled, airlock is shutting down"
            )),
            // What Postgres says of a cancelled statement.
            Outcome::Withdrawn => Some("canceling statement due to user request".into()),
            // Nobody is left to read it; the session ends.
            Outcome::ClientGone => Some(format!(
                "airlock: rule {rule}: withdrawn, the client disconnected"
            )),
        }
    }

    /// The SQLSTATE of the refusal: 57014 (query_canceled) for a statement
    /// the client cancelled, else 42501 (insufficient_privilege).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Outcome::Withdrawn => "57014",
            _ => "42501",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let denied = Outcome::Denied {
            by: "alice".into(),
            reason: "not today".into(),
        };
        assert_eq!(
            denied.refusal("p.orders").as_deref(),
            Some("airlock: rule p.orders: denied by alice: not today")
        );
        let timed_out = Outcome::TimedOut(Duration::from_secs(120));
        assert_eq!(
            timed_out.refusal("p.orders").as_deref(),
            Some("airlock: rule p.orders: approval timed out after 2m")
        );
        assert_eq!(
            Outcome::Approved {
                by: "bob".into(),
                window: Some(Duration::from_secs(600))
            }
            .audit_reason(Some(3)),
            "approved by bob for 10m (request 3)"
        );
    }
}

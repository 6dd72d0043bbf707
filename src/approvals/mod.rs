//! Human approval of held statements, independent of the wire protocol.
//!
//! A session whose statement a `require_approval` rule holds calls
//! [`Approvals::hold`] and awaits the [`Ticket`] (or is released at once by
//! an approval window). Reviewers list the pending requests and approve or
//! deny them through the admin API ([`crate::admin`]), the CLI or the web
//! console. An approval releases exactly that statement: once, or for a
//! window during which the same fingerprint from the same identity passes
//! without asking. The session records every step in the audit log (held,
//! approved by whom, denied with the reason, timed out): see
//! [`Outcome::audit_reason`].
//!
//! * [`registry`]: the pending requests, the windows, decisions.
//! * [`outcome`]: how a hold ends and what the client and the log are told.
//! * [`wait`]: hold, audit and wait in one call, for sessions (MySQL)
//!   whose audit hook has no approval steps of its own.

pub mod outcome;
pub mod registry;
pub mod wait;
pub mod window_key;

pub use outcome::Outcome;
pub use registry::{ApprovalError, Approvals, Hold, HoldRequest, PendingInfo, Ticket};

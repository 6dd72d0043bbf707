//! What a Postgres session tells the audit log: the protocol-neutral
//! [`crate::audit::session::SessionAudit`] with the Postgres protocol name.
//!
//! Recording never waits on disk (the log's writer thread does the work).
//! When the log cannot take an event and `audit.fail_closed` is set, the
//! statement is refused instead of running unrecorded.

use std::sync::Arc;

use crate::audit::session::{self, SessionInfo};
use crate::audit::AuditLog;
use crate::policy::Principal;

pub use crate::audit::session::SessionAudit;

const PROTOCOL: &str = "postgres";

impl SessionAudit {
    /// The audit context of a Postgres session.
    pub fn new(
        log: Arc<AuditLog>,
        fail_closed: bool,
        session: u64,
        principal: &Principal,
        client: &str,
        application_name: Option<&str>,
        declared_model: Option<&str>,
    ) -> Self {
        SessionAudit::with_info(
            log,
            fail_closed,
            &SessionInfo {
                session,
                principal,
                client,
                application_name,
                declared_model,
                protocol: PROTOCOL,
                database: &principal.target,
            },
        )
    }
}

/// Records a failed Postgres login (no session context exists yet).
pub fn auth_failed(log: &AuditLog, session: u64, identity: &str, client: &str) {
    session::auth_failed(log, session, identity, client, PROTOCOL);
}

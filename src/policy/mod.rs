//! Policy: SQL text in, decision out. Shared by every protocol.
//!
//! Sessions call [`Gate::judge`] for every statement before it is forwarded:
//! simple Query text, extended-protocol Parse text, and FunctionCall messages
//! (which carry no SQL). This is the single point where statements are
//! judged; the guardrails engine plugs in behind it.

use std::fmt;

/// Where a statement came from on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Simple query protocol (may hold several statements).
    Query,
    /// Extended protocol Parse (one statement).
    Parse,
    /// FunctionCall message: a function OID, no SQL.
    FunctionCall,
}

/// What is being judged.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub source: Source,
    /// The SQL as sent; empty for FunctionCall.
    pub sql: &'a [u8],
}

/// Who is asking.
#[derive(Debug, Clone, Default)]
pub struct Principal {
    pub identity: String,
    pub model: Option<String>,
    pub target: String,
}

/// The verdict for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Block { rule: String, message: String },
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow => f.write_str("allow"),
            Decision::Block { rule, message } => write!(f, "blocked by rule {rule}: {message}"),
        }
    }
}

/// Judges statements. Implementations must be cheap to call per statement.
pub trait Gate: Send + Sync {
    fn judge(&self, who: &Principal, request: &Request<'_>) -> Decision;
}

/// The gate until guardrails are configured: lets everything through.
#[derive(Debug, Default)]
pub struct AllowAll;

impl Gate for AllowAll {
    fn judge(&self, _who: &Principal, _request: &Request<'_>) -> Decision {
        Decision::Allow
    }
}

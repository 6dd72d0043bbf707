//! Refusing a statement without breaking the session.
//!
//! A refused message never reaches the server. In its place airlock sends a
//! *sentinel*: a message that carries no client data and that the server is
//! certain to reject at once, naming a token unique to the session and the
//! refusal (`airlock_blocked_<session nonce>_<seq>`):
//!
//! | refused | sentinel | server's error |
//! |---|---|---|
//! | Query, FunctionCall | Query `airlock_blocked_…` | 42601 syntax error at or near "airlock_blocked_…" |
//! | Parse `name` | Parse `name` of `airlock_blocked_…` | 42601 (and `name` is left undefined) |
//! | Bind of an unvetted statement | Bind of statement `airlock_blocked_…` | 26000 prepared statement "airlock_blocked_…" does not exist |
//! | Execute of an unvetted portal | Execute of portal `airlock_blocked_…` | 34000 portal "airlock_blocked_…" does not exist |
//!
//! The server side of the relay swaps that error for airlock's own
//! ErrorResponse (42501 with the rule id and message). Because the server
//! produced the error, everything else stays exactly as Postgres would have
//! it: the error arrives in order within a pipeline, the server discards the
//! rest of the extended-protocol batch up to Sync, a transaction block goes
//! into the failed state, and ReadyForQuery carries the right status. If an
//! earlier error in the same batch makes the server skip the sentinel, the
//! client sees that earlier error only, as it would have without airlock.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::{BufMut, Bytes, BytesMut};

use airlock_protocol::pg::backend::{self, Severity};
use airlock_protocol::pg::frame::encode;

/// The sentinels of one session, and the errors that replace them.
pub struct Refusals {
    /// `airlock_blocked_<nonce>_`
    prefix: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_seq: u64,
    /// Outstanding refusals: (seq, the ErrorResponse to send instead).
    pending: VecDeque<(u64, Bytes)>,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals {
            prefix: format!("airlock_blocked_{:016x}_", rand::random::<u64>()),
            state: Mutex::new(State::default()),
        }
    }
}

impl Refusals {
    /// Registers a refusal with the client-facing error and returns the
    /// sentinel token to put in the message sent upstream.
    fn register(&self, sqlstate: &str, message: &str) -> String {
        let mut error = BytesMut::new();
        backend::error_response(&mut error, Severity::Error, sqlstate, message);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let seq = state.next_seq;
        state.next_seq += 1;
        state.pending.push_back((seq, error.freeze()));
        format!("{}{seq}", self.prefix)
    }

    /// A Query that fails upstream, for a refused Query or FunctionCall.
    pub fn query(&self, sqlstate: &str, message: &str) -> Bytes {
        let token = self.register(sqlstate, message);
        let mut out = BytesMut::new();
        encode(b'Q', &mut out, |b| cstr(b, &token));
        out.freeze()
    }

    /// A Parse of the same statement name that fails upstream.
    pub fn parse(&self, name: &[u8], sqlstate: &str, message: &str) -> Bytes {
        let token = self.register(sqlstate, message);
        let mut out = BytesMut::new();
        encode(b'P', &mut out, |b| {
            b.put_slice(name);
            b.put_u8(0);
            cstr(b, &token);
            b.put_i16(0);
        });
        out.freeze()
    }

    /// A Bind (to the same portal) of a statement that does not exist.
    pub fn bind(&self, portal: &[u8], sqlstate: &str, message: &str) -> Bytes {
        let token = self.register(sqlstate, message);
        let mut out = BytesMut::new();
        encode(b'B', &mut out, |b| {
            b.put_slice(portal);
            b.put_u8(0);
            cstr(b, &token);
            b.put_i16(0);
            b.put_i16(0);
            b.put_i16(0);
        });
        out.freeze()
    }

    /// An Execute of a portal that does not exist.
    pub fn execute(&self, sqlstate: &str, message: &str) -> Bytes {
        let token = self.register(sqlstate, message);
        let mut out = BytesMut::new();
        encode(b'E', &mut out, |b| {
            cstr(b, &token);
            b.put_i32(0);
        });
        out.freeze()
    }

    /// Whether any refusal awaits its server error (cheap check for the
    /// server side's fast path).
    pub fn any_pending(&self) -> bool {
        !self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending
            .is_empty()
    }

    /// For a server ErrorResponse body: the replacement, if it is the
    /// answer to one of this session's sentinels. Older refusals that the
    /// server skipped are forgotten.
    pub fn replacement(&self, error_body: &[u8]) -> Option<Bytes> {
        let at = memchr::memmem::find(error_body, self.prefix.as_bytes())?;
        let digits = &error_body[at + self.prefix.len()..];
        let end = digits
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(digits.len());
        let seq: u64 = std::str::from_utf8(&digits[..end]).ok()?.parse().ok()?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((s, error)) = state.pending.pop_front() {
            if s == seq {
                return Some(error);
            }
            if s > seq {
                state.pending.push_front((s, error));
                break;
            }
        }
        None
    }
}

fn cstr(b: &mut BytesMut, s: &str) {
    b.put_slice(s.as_bytes());
    b.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_errors_are_matched_in_order() {
        let r = Refusals::default();
        let q1 = r.query("42501", "first");
        let _q2 = r.query("42501", "second");
        let token1 = String::from_utf8_lossy(&q1[5..q1.len() - 1]).into_owned();
        let token2 = format!(
            "{}_1",
            token1
                .strip_suffix("_0")
                .expect("first sentinel ends in _0")
        );
        // The server skipped the first; the second's error arrives.
        let err = format!("Msyntax error at or near \"{token2}\"\0");
        let rep = r.replacement(err.as_bytes()).unwrap();
        assert!(rep.windows(6).any(|w| w == b"second"));
        assert!(!r.any_pending());
        // An unrelated error is left alone.
        assert!(r.replacement(b"Mdivision by zero\0").is_none());
        let err = format!("M\"{token1}\"\0");
        assert!(r.replacement(err.as_bytes()).is_none());
    }
}

//! Keeping a masking session's books of statements and portals in step
//! with the server's.
//!
//! A masking session plans each Bind and Execute from its own books: the
//! statements its Parses made and the portals its Binds made (the client
//! side's vetted names, and [`super::masking::PlanBook`]). The client side
//! changes them when it forwards a Parse, Bind or Close, before the server
//! has carried it out. The server does not always carry it out: it
//! refuses a Parse of a statement name it already has, and after an error
//! it skips every message up to Sync. A book that then says `s` is the
//! text of a second Parse, while the server still holds the first, would
//! plan a masked query's rows as another query's rows, and let them
//! through.
//!
//! So, in masking sessions:
//! * a Parse of a statement name the session already has is refused, as
//!   the server would refuse it (42P05): a Parse airlock forwards always
//!   makes a new statement, or replaces the unnamed one;
//! * the client side keeps a [`Journal`] of the Parse, Bind and Close
//!   messages it forwarded, by request;
//! * the server side counts the ParseComplete, BindComplete and
//!   CloseComplete replies of the request in progress and, at an error,
//!   reports how many of its Parse, Bind and Close messages were carried
//!   out ([`SkipReports`]): the rest were not;
//! * a request with such messages makes the next Query, Parse, Bind,
//!   Execute or Close wait for its answer (the fence's wait, see
//!   [`super::ddl_fence`]); drivers wait for it anyway, so only pipelines
//!   pay;
//! * then the client side undoes what the server did not carry out
//!   ([`Journal::settle`]): a statement or portal the server did not make
//!   is forgotten (it is not bound or executed through airlock until made
//!   again); a statement the server did not close stays taken and unusable
//!   until it is closed; a portal the server may still hold cannot be read
//!   by name (see [`crate::masking::by_name`]);
//! * at most [`MAX_ENTRIES`] such messages await their answer: a session
//!   that sends more without waiting for a Sync's answer ends, so its
//!   memory stays bounded.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// What the server side tells the client side: requests in which an
/// error cut the Parse, Bind and Close messages short.
#[derive(Debug, Default)]
pub struct SkipReports {
    any: AtomicBool,
    reports: Mutex<Vec<Skip>>,
}

/// In request `request`, only the first `carried_out` Parse, Bind and
/// Close messages were carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skip {
    pub request: u64,
    pub carried_out: u32,
}

impl SkipReports {
    /// The server side: an error ended request `request` after
    /// `carried_out` ParseComplete, BindComplete and CloseComplete.
    pub fn report(&self, request: u64, carried_out: u32) {
        if let Ok(mut r) = self.reports.lock() {
            r.push(Skip {
                request,
                carried_out,
            });
            self.any.store(true, Ordering::Release);
        }
    }

    /// The reports so far, oldest first (one atomic load when there are
    /// none).
    fn take(&self) -> Vec<Skip> {
        if !self.any.load(Ordering::Acquire) {
            return Vec::new();
        }
        match self.reports.lock() {
            Ok(mut r) => {
                self.any.store(false, Ordering::Release);
                std::mem::take(&mut *r)
            }
            Err(_) => Vec::new(),
        }
    }
}

/// A Parse, Bind or Close the client side forwarded (and applied to its
/// books), by the name it makes, binds or closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Parse(Box<[u8]>),
    Bind(Box<[u8]>),
    CloseStatement(Box<[u8]>),
    ClosePortal(Box<[u8]>),
}

/// The client side's record of the Parse, Bind and Close messages of the
/// requests not yet answered, and of the statements the server kept
/// although the session closed them.
#[derive(Debug, Default)]
pub struct Journal {
    /// (request, op), in the order sent.
    entries: VecDeque<(u64, Op)>,
    /// Reports taken from the server side, not yet matched with entries.
    skips: Vec<Skip>,
    /// Statement names whose Close the server skipped: it still holds
    /// them, airlock does not know them any more.
    kept: Vec<Box<[u8]>>,
    /// More than [`MAX_ENTRIES`] were pushed: the session must end (see
    /// [`Journal::full`]).
    full: bool,
    /// The request whose first Query, Parse, Bind, Execute or Close
    /// settled the journal last ([`Journal::needs_settling`]).
    settled_for: u64,
}

/// Most Parse, Bind and Close messages kept awaiting their answer: those
/// of one request (a pipeline without Sync, such as a JDBC batch) are
/// kept until it is answered, so this bounds a session's memory (about
/// 10 MB).
pub const MAX_ENTRIES: usize = 1 << 18;

impl Journal {
    /// A Parse, Bind or Close of request `request` was forwarded.
    pub fn push(&mut self, request: u64, op: Op) {
        if let Op::CloseStatement(name) = &op {
            self.kept.retain(|k| k != name);
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.full = true;
            return;
        }
        self.entries.push_back((request, op));
    }

    /// Whether more than [`MAX_ENTRIES`] messages awaited their answer:
    /// what the server carries out of the rest could not be followed, so
    /// the session ends.
    pub fn full(&self) -> bool {
        self.full
    }

    /// Whether request `request` has entries (its Sync makes the next
    /// request wait for its answer).
    pub fn has_request(&self, request: u64) -> bool {
        self.entries.back().is_some_and(|(r, _)| *r == request)
    }

    /// Whether the server still holds statement `name`, closed by the
    /// session in a message it skipped.
    pub fn kept(&self, name: &[u8]) -> bool {
        !self.kept.is_empty() && self.kept.iter().any(|k| **k == *name)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether request `request` (the one being sent) has not settled
    /// the journal yet: it does so once, at its first Query, Parse, Bind,
    /// Execute or Close, which waited for the answers before it. (Not at
    /// its first frame whatever it is: a Describe first waits for
    /// nothing.)
    pub fn needs_settling(&self, request: u64) -> bool {
        !self.entries.is_empty() && self.settled_for != request
    }

    /// Notes that request `request` settled the journal.
    pub fn settled_for(&mut self, request: u64) {
        self.settled_for = request;
    }

    /// Drops the entries of the requests answered (numbers up to
    /// `answered`), and returns those the server did not carry out, most
    /// recent first: the caller undoes them in that order. Without an
    /// error report (the usual case) it only drops entries.
    pub fn settle(&mut self, reports: &SkipReports, answered: u64) -> Vec<Op> {
        if self.skips.is_empty() && !reports.any.load(Ordering::Acquire) {
            while self.entries.front().is_some_and(|(r, _)| *r <= answered) {
                self.entries.pop_front();
            }
            return Vec::new();
        }
        self.skips.extend(reports.take());
        let mut undo = Vec::new();
        let mut carried = 0u32;
        let mut current = 0u64;
        while let Some((request, _)) = self.entries.front() {
            let request = *request;
            if request > answered {
                break;
            }
            if request != current {
                current = request;
                carried = 0;
            }
            let Some((_, op)) = self.entries.pop_front() else {
                break;
            };
            let limit = self
                .skips
                .iter()
                .find(|s| s.request == request)
                .map(|s| s.carried_out);
            match limit {
                Some(limit) if carried >= limit => undo.push(op),
                _ => carried += 1,
            }
        }
        self.skips
            .retain(|s| self.entries.front().is_some_and(|(r, _)| s.request >= *r));
        for op in &undo {
            if let Op::CloseStatement(name) = op {
                if !self.kept.contains(name) {
                    self.kept.push(name.clone());
                }
            }
        }
        undo.reverse();
        undo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Box<[u8]> {
        s.as_bytes().into()
    }

    #[test]
    fn what_an_error_cut_short_is_undone_newest_first() {
        let reports = SkipReports::default();
        let mut j = Journal::default();
        j.push(1, Op::Parse(name("a")));
        j.push(2, Op::Parse(name("b")));
        j.push(2, Op::CloseStatement(name("a")));
        j.push(2, Op::Parse(name("a")));
        j.push(3, Op::Bind(name("p")));
        assert!(j.has_request(3));
        // Request 2: only its first Parse was carried out.
        reports.report(2, 1);
        let undo = j.settle(&reports, 2);
        assert_eq!(
            undo,
            vec![Op::Parse(name("a")), Op::CloseStatement(name("a"))]
        );
        assert!(j.kept(b"a"));
        assert!(!j.kept(b"b"));
        // Request 3 is not answered yet.
        assert!(!j.is_empty());
        assert_eq!(j.settle(&reports, 3), vec![]);
        assert!(j.is_empty());
        // Closing it again (carried out) frees the name.
        j.push(4, Op::CloseStatement(name("a")));
        assert!(!j.kept(b"a"));
    }

    #[test]
    fn a_request_too_long_to_follow_fills_the_journal() {
        let mut j = Journal::default();
        for _ in 0..MAX_ENTRIES {
            j.push(1, Op::Bind(name("")));
        }
        assert!(!j.full());
        j.push(1, Op::Bind(name("")));
        assert!(j.full());
        assert_eq!(j.entries.len(), MAX_ENTRIES);
    }

    #[test]
    fn a_request_without_a_report_was_carried_out() {
        let reports = SkipReports::default();
        let mut j = Journal::default();
        j.push(1, Op::Parse(name("")));
        j.push(1, Op::Bind(name("")));
        assert_eq!(j.settle(&reports, u64::MAX), vec![]);
        // An error in a request without Parse, Bind or Close changes
        // nothing, and is not kept.
        reports.report(2, 0);
        j.push(3, Op::Bind(name("")));
        assert_eq!(j.settle(&reports, 3), vec![]);
        assert!(j.skips.is_empty());
    }
}

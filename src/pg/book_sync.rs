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
//! * a SQL-level statement a simple Query's `PREPARE` made is forgotten
//!   again when the Query was answered with an error anywhere
//!   ([`Op::SqlPrepare`]): the server may have refused the `PREPARE` and
//!   hold another statement of that name;
//! * likewise, a SQL-level statement masking holds outdated (see
//!   [`super::sides::ClientMasking`]) is current again only once a simple
//!   Query's `PREPARE`, `DEALLOCATE` or `DISCARD ALL` of it was answered
//!   without an error, against the same catalog snapshot
//!   ([`Op::Reprepare`]); until then it is refused;
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
/// books), by the name it makes, binds or closes; or a simple Query that
/// prepares again SQL-level statements masking holds outdated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Parse(Box<[u8]>),
    Bind(Box<[u8]>),
    CloseStatement(Box<[u8]>),
    ClosePortal(Box<[u8]>),
    /// Not a message the server answers with a completion, and not
    /// undone: applied once the request is answered without an error.
    /// `at`: the catalog generation it was judged against.
    Reprepare {
        what: Reprepared,
        at: u64,
    },
    /// SQL-level statements a simple Query's `PREPARE` made, taken for
    /// their new text when it was forwarded. Not a message the server
    /// answers with a completion: forgotten again ([`Settled::revoked`])
    /// when the request was answered with an error anywhere, since the
    /// server then may not have made them and may hold another statement
    /// under the name (red-team finding: after a `DEALLOCATE` the server
    /// refused, the statement it kept was executed under a `PREPARE`'s
    /// harmless text, in clear).
    SqlPrepare(Box<[String]>),
}

/// SQL-level prepared statements, judged against an older catalog
/// snapshot, that a simple Query's `PREPARE`, `DEALLOCATE` or `DISCARD
/// ALL` replaces or removes. They are current again only once the server
/// has run it: it refuses a PREPARE of a name it has, and runs nothing
/// after an error in the request or in an aborted transaction. A request
/// with an error anywhere leaves them outdated (refused until prepared
/// again), whatever its other statements did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reprepared {
    Names(Box<[String]>),
    All,
}

/// What [`Journal::settle`] found in the answered requests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Parse, Bind and Close messages the server did not carry out, most
    /// recent first: the caller undoes them in that order.
    pub undo: Vec<Op>,
    /// Statements prepared again by requests answered without an error,
    /// with the catalog generation they were judged against.
    pub reprepared: Vec<(Reprepared, u64)>,
    /// SQL-level statements whose `PREPARE` was in a request answered
    /// with an error: the caller forgets them ([`Op::SqlPrepare`]).
    pub revoked: Vec<String>,
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
    /// them, airlock does not know them any more. At most [`MAX_KEPT`],
    /// the oldest dropped first.
    kept: VecDeque<Box<[u8]>>,
    /// More than [`MAX_ENTRIES`] were pushed: the session must end (see
    /// [`Journal::full`]).
    full: bool,
    /// The request whose first Query, Parse, Bind, Execute or Close
    /// settled the journal last ([`Journal::needs_settling`]).
    settled_for: u64,
    /// How many entries are [`Op::Reprepare`]: without any, settling a
    /// request answered without an error only drops its entries.
    reprepares: usize,
}

/// Most Parse, Bind and Close messages kept awaiting their answer: those
/// of one request (a pipeline without Sync, such as a JDBC batch) are
/// kept until it is answered, so this bounds a session's memory (about
/// 10 MB).
pub const MAX_ENTRIES: usize = 1 << 18;

/// Most statement names kept in [`Journal::kept`]. The list only refuses
/// early what the server refuses anyway: a Parse of a name dropped from it
/// is forwarded, the server refuses it (42P05), and the journal undoes it
/// like any Parse the server did not carry out. So dropping the oldest
/// name costs nothing in safety, and the list cannot grow with a client
/// that keeps erroring.
pub const MAX_KEPT: usize = 256;

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
        if matches!(op, Op::Reprepare { .. }) {
            self.reprepares += 1;
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
    /// `answered`), and returns what the caller must undo and apply (see
    /// [`Settled`]). Without an error report (the usual case) it only
    /// drops entries.
    pub fn settle(&mut self, reports: &SkipReports, answered: u64) -> Settled {
        let mut settled = Settled::default();
        if self.skips.is_empty() && !reports.any.load(Ordering::Acquire) {
            while self.entries.front().is_some_and(|(r, _)| *r <= answered) {
                if self.reprepares == 0 {
                    self.entries.pop_front();
                } else if let Some((_, Op::Reprepare { what, at })) = self.entries.pop_front() {
                    self.reprepares -= 1;
                    settled.reprepared.push((what, at));
                }
            }
            return settled;
        }
        self.skips.extend(reports.take());
        let undo = &mut settled.undo;
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
            if matches!(op, Op::Reprepare { .. }) {
                self.reprepares -= 1;
            }
            let limit = self
                .skips
                .iter()
                .find(|s| s.request == request)
                .map(|s| s.carried_out);
            match (op, limit) {
                (Op::Reprepare { what, at }, None) => settled.reprepared.push((what, at)),
                // An error in the request: left outdated.
                (Op::Reprepare { .. }, Some(_)) => {}
                (Op::SqlPrepare(_), None) => {}
                (Op::SqlPrepare(names), Some(_)) => settled.revoked.extend(names.into_vec()),
                (op, Some(limit)) if carried >= limit => undo.push(op),
                _ => carried += 1,
            }
        }
        self.skips
            .retain(|s| self.entries.front().is_some_and(|(r, _)| s.request >= *r));
        for op in undo.iter() {
            if let Op::CloseStatement(name) = op {
                if !self.kept.contains(name) {
                    if self.kept.len() >= MAX_KEPT {
                        self.kept.pop_front();
                    }
                    self.kept.push_back(name.clone());
                }
            }
        }
        undo.reverse();
        settled
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
        let undo = j.settle(&reports, 2).undo;
        assert_eq!(
            undo,
            vec![Op::Parse(name("a")), Op::CloseStatement(name("a"))]
        );
        assert!(j.kept(b"a"));
        assert!(!j.kept(b"b"));
        // Request 3 is not answered yet.
        assert!(!j.is_empty());
        assert_eq!(j.settle(&reports, 3), Settled::default());
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
    fn statements_kept_are_bounded_oldest_dropped_first() {
        let reports = SkipReports::default();
        let mut j = Journal::default();
        for i in 0..=MAX_KEPT {
            j.push(i as u64 + 1, Op::CloseStatement(name(&format!("s{i}"))));
            reports.report(i as u64 + 1, 0);
            j.settle(&reports, i as u64 + 1);
        }
        assert_eq!(j.kept.len(), MAX_KEPT);
        assert!(!j.kept(b"s0"));
        assert!(j.kept(b"s1"));
        assert!(j.kept(format!("s{MAX_KEPT}").as_bytes()));
    }

    #[test]
    fn statements_are_prepared_again_only_by_requests_without_an_error() {
        let reports = SkipReports::default();
        let mut j = Journal::default();
        let names = Reprepared::Names(vec!["s1".to_string()].into());
        let op = |what: &Reprepared| Op::Reprepare {
            what: what.clone(),
            at: 7,
        };
        j.push(1, op(&names));
        j.push(2, op(&Reprepared::All));
        assert!(j.has_request(2));
        // Request 1 answered without an error; request 2 with one.
        reports.report(2, 0);
        let settled = j.settle(&reports, 2);
        assert_eq!(settled.reprepared, vec![(names.clone(), 7)]);
        assert_eq!(settled.undo, vec![]);
        // Without any report: the fast path applies them too.
        j.push(3, op(&names));
        assert_eq!(j.settle(&reports, 3).reprepared, vec![(names, 7)]);
        assert!(j.is_empty());
    }

    #[test]
    fn a_request_without_a_report_was_carried_out() {
        let reports = SkipReports::default();
        let mut j = Journal::default();
        j.push(1, Op::Parse(name("")));
        j.push(1, Op::Bind(name("")));
        assert_eq!(j.settle(&reports, u64::MAX), Settled::default());
        // An error in a request without Parse, Bind or Close changes
        // nothing, and is not kept.
        reports.report(2, 0);
        j.push(3, Op::Bind(name("")));
        assert_eq!(j.settle(&reports, 3), Settled::default());
        assert!(j.skips.is_empty());
    }

    /// A simple Query's PREPARE counts only if the Query was answered
    /// without an error; it never counts as a Parse, Bind or Close
    /// carried out.
    #[test]
    fn a_sql_prepare_in_a_request_with_an_error_is_revoked() {
        let reports = SkipReports::default();
        let mut j = Journal::default();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Box<[String]>>();
        j.push(1, Op::SqlPrepare(names(&["a"])));
        assert_eq!(j.settle(&reports, 1), Settled::default());
        j.push(2, Op::SqlPrepare(names(&["b", "c"])));
        j.push(3, Op::Parse(name("p")));
        j.push(3, Op::SqlPrepare(names(&["d"])));
        reports.report(2, 0);
        reports.report(3, 1);
        let settled = j.settle(&reports, 3);
        assert_eq!(settled.revoked, ["b", "c", "d"]);
        // The Parse before the error was carried out: nothing to undo.
        assert!(settled.undo.is_empty(), "{:?}", settled.undo);
        assert!(j.is_empty());
    }
}

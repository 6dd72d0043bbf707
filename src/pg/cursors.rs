//! Portals and cursors made under rules that a reload has since replaced.
//!
//! A Bind, or a SQL `DECLARE ... CURSOR`, is judged under the rules in
//! force when it is sent. The portal it makes then hands out rows at every
//! later Execute or `FETCH`, which are not judged again: what they read
//! was settled when the portal was made. After a reload that must not go
//! on under the old rules, so the names of the portals and cursors open at
//! the reload become *stale*: an Execute or a `FETCH`/`MOVE` of one is
//! refused (`builtin.rules-reloaded`).
//!
//! How long a name stays stale follows how long the server keeps what it
//! names:
//!
//! | what | dies | stale until |
//! |---|---|---|
//! | protocol portal (Bind) | at the end of its transaction | the session is seen idle |
//! | `DECLARE c CURSOR` | at the end of its transaction | the session is seen idle |
//! | `DECLARE c CURSOR WITH HOLD` | at `CLOSE`, or with the session | the session ends |
//!
//! "Seen idle": a message arrives with no extended-protocol message sent
//! since the last Sync or Query, every request answered, and the last
//! ReadyForQuery saying `I` (no transaction). Then the server holds no
//! portal and no cursor without hold.
//!
//! A Bind of a stale name does not make it fresh for good, nor does a
//! `CLOSE`: the server may refuse either (a named portal that exists, a
//! Bind with the wrong parameter count, an aborted transaction), keeping
//! the old portal, and a `ROLLBACK TO SAVEPOINT` can then bring the
//! transaction back to read it. But an Execute in the same batch as the
//! Bind (no Sync or Query between) reads what the Bind made: after an
//! error the server skips everything up to the Sync, the Execute too. So
//! a Bind lifts the name for the rest of its batch, which is how drivers
//! run statements (Parse, Bind, Execute, Sync), transactions included.
//! A cursor held across transactions stays stale for the rest of the
//! session; declare a new one under another name.
//!
//! Portal and cursor names share one namespace on the server: `FETCH ALL
//! FROM p` reads the protocol portal `p`. So both kinds are checked at both
//! an Execute and a `FETCH`.

use crate::fasthash::{FastMap, FastSet};
use crate::masking::by_name::{self, ReadByName};
use crate::policy::parse::Limits;
use crate::policy::Dialect;

/// The most SQL cursors the session keeps the names of. Past that, a
/// reload makes every `FETCH` and `MOVE` stale.
const MAX_TRACKED: usize = 1024;

/// The session's cursors and the names a reload made stale.
#[derive(Debug, Default)]
pub struct Cursors {
    /// SQL cursors the session declared, as the server names them, and
    /// whether each is held across transactions (`WITH HOLD`).
    declared: Vec<(Box<[u8]>, bool)>,
    /// Cursors were declared past [`MAX_TRACKED`] without being tracked:
    /// `Some(held)`, `held` when any of them was declared `WITH HOLD`.
    untracked: Option<bool>,
    /// Names open at a reload, and whether each outlives its transaction.
    /// Hashed: a reload inside a transaction that bound many portals makes
    /// them all stale (red-team finding: a list took quadratic time).
    stale: FastMap<Box<[u8]>, bool>,
    /// A reload came while untracked cursors may have been open: every
    /// `FETCH` and `MOVE` is refused. `Some(held)` as for `untracked`.
    all_stale: Option<bool>,
    /// Stale names bound again in the current batch: an Execute of one
    /// before the batch's Sync reads the new portal (see the module doc).
    bound_in_batch: FastSet<Box<[u8]>>,
}

impl Cursors {
    /// Nothing is tracked: the session may drop this.
    pub fn is_empty(&self) -> bool {
        self.declared.is_empty()
            && self.stale.is_empty()
            && self.untracked.is_none()
            && self.all_stale.is_none()
    }

    /// A `DECLARE` of cursor `name` went to the server.
    pub fn declared(&mut self, name: &str, hold: bool) {
        let name = name.as_bytes();
        let full = self.declared.len() >= MAX_TRACKED;
        match self.declared.iter_mut().find(|(n, _)| **n == *name) {
            Some(entry) => entry.1 |= hold,
            None if full => self.untracked = Some(self.untracked == Some(true) || hold),
            None => self.declared.push((name.into(), hold)),
        }
    }

    /// No transaction is open: only cursors declared `WITH HOLD` are left.
    pub fn transaction_ended(&mut self) {
        self.declared.retain(|(_, hold)| *hold);
        self.stale.retain(|_, hold| *hold);
        self.untracked = self.untracked.filter(|held| *held);
        self.all_stale = self.all_stale.filter(|held| *held);
    }

    /// The rules changed. Every declared cursor is stale, and so are
    /// `portals` (the names of protocol portals that may be open, empty
    /// when the session is idle).
    pub fn rules_changed<'a>(&mut self, portals: impl Iterator<Item = &'a [u8]>) {
        if let Some(held) = self.untracked {
            self.all_stale = Some(self.all_stale == Some(true) || held);
        }
        for (name, hold) in self.declared.drain(..) {
            *self.stale.entry(name).or_insert(false) |= hold;
        }
        for name in portals {
            if !self.stale.contains_key(name) {
                self.stale.insert(name.into(), false);
            }
        }
    }

    /// Whether the portal or cursor `name` was open at a reload.
    pub fn is_stale(&self, name: &[u8]) -> bool {
        self.stale.contains_key(name)
    }

    /// A Bind of portal `name` went to the server.
    pub fn bound(&mut self, name: &[u8]) {
        if self.is_stale(name) && !self.bound_in_batch.contains(name) {
            self.bound_in_batch.insert(name.into());
        }
    }

    /// A Sync or a Query went to the server: the batch ended.
    pub fn batch_ended(&mut self) {
        self.bound_in_batch.clear();
    }

    /// The refusal of an Execute of protocol portal `portal`, when stale
    /// and not bound again in this batch.
    pub fn execute_refusal(&self, portal: &[u8]) -> Option<String> {
        let lifted = || self.bound_in_batch.contains(portal);
        (self.is_stale(portal) && !lifted()).then(|| {
            format!(
                "the rules were reloaded after portal \"{}\" was bound: bind it again in the same batch as its Execute, or end the transaction",
                String::from_utf8_lossy(portal)
            )
        })
    }

    /// The refusal of statement `sql` (a Query or a Parse), when it reads
    /// a stale cursor or portal (`FETCH`, `MOVE`). Cheap when it does not
    /// spell either keyword; a text that does but does not parse here is
    /// refused (the policy refuses it anyway).
    pub fn fetch_refusal(&self, sql: &[u8]) -> Option<String> {
        if (self.stale.is_empty() && self.all_stale.is_none()) || !spells_fetch_or_move(sql) {
            return None;
        }
        if self.all_stale.is_some() {
            return Some(
                "the rules were reloaded while this session had more cursors open than airlock tracks: cursors opened before cannot be read; reconnect"
                    .into(),
            );
        }
        let reads = std::str::from_utf8(sql)
            .ok()
            .filter(|t| t.len() <= crate::policy::engine::INLINE_PARSE_BYTES)
            .and_then(|t| by_name::reads(Dialect::Postgres, t, &Limits::default()));
        let Some(reads) = reads else {
            return Some(
                "the rules were reloaded while cursors were open, and airlock cannot tell which cursor this statement reads: send FETCH or MOVE on its own"
                    .into(),
            );
        };
        reads.iter().find_map(|r| match r {
            ReadByName::Portal(names) => names.iter().find_map(|n| {
                let held = *self.stale.get(n.as_bytes())?;
                let what_to_do = match held {
                    true => "declare a new cursor under another name",
                    false => "end the transaction, or declare a new cursor under another name",
                };
                Some(format!(
                    "the rules were reloaded after cursor \"{n}\" was opened: it cannot be read any more; {what_to_do}"
                ))
            }),
            ReadByName::Statement(_) => None,
        })
    }
}

/// Whether `sql` spells the word FETCH or MOVE anywhere (SQL keywords have
/// no escapes, so a statement that is one spells it).
fn spells_fetch_or_move(sql: &[u8]) -> bool {
    use by_name::starts_with_word;
    sql.iter().enumerate().any(|(i, &b)| match b | 0x20 {
        b'f' => starts_with_word(&sql[i..], b"fetch"),
        b'm' => starts_with_word(&sql[i..], b"move"),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_makes_open_names_stale() {
        let mut c = Cursors::default();
        c.declared("held", true);
        c.declared("plain", false);
        c.rules_changed([&b"P1"[..], b""].into_iter());
        assert!(c.is_stale(b"held") && c.is_stale(b"plain"));
        assert!(c.execute_refusal(b"P1").is_some());
        assert!(c.execute_refusal(b"").is_some());
        assert!(c.execute_refusal(b"P2").is_none());
        assert!(c.fetch_refusal(b"FETCH ALL FROM held").is_some());
        assert!(c.fetch_refusal(b"fetch forward 5 from PLAIN").is_some());
        assert!(c.fetch_refusal(b"MOVE FORWARD 5 IN plain").is_some());
        assert!(c.fetch_refusal(b"fetch all from \"P1\"").is_some());
        assert!(c.fetch_refusal(b"select 1; fetch all from p1").is_none());
        assert!(c.fetch_refusal(b"FETCH ALL FROM fresh").is_none());
        assert!(c.fetch_refusal(b"SELECT 1").is_none());
        // A new cursor after the reload is fresh.
        c.declared("fresh", false);
        assert!(!c.is_stale(b"fresh"));
    }

    #[test]
    fn a_bind_lifts_a_stale_portal_for_its_batch_only() {
        let mut c = Cursors::default();
        c.rules_changed([&b""[..], b"P1"].into_iter());
        c.bound(b"");
        assert!(c.execute_refusal(b"").is_none());
        assert!(c.execute_refusal(b"P1").is_some());
        c.batch_ended();
        assert!(c.execute_refusal(b"").is_some());
        // Names that were not stale are not tracked.
        c.bound(b"P2");
        assert!(c.bound_in_batch.is_empty() && c.execute_refusal(b"P2").is_none());
    }

    #[test]
    fn the_end_of_a_transaction_frees_names_without_hold() {
        let mut c = Cursors::default();
        c.declared("held", true);
        c.declared("plain", false);
        c.rules_changed([&b"P1"[..]].into_iter());
        c.transaction_ended();
        assert!(c.is_stale(b"held"));
        assert!(!c.is_stale(b"plain") && !c.is_stale(b"P1"));
        assert!(!c.is_empty());
        let mut d = Cursors::default();
        d.declared("plain", false);
        d.transaction_ended();
        assert!(d.is_empty());
    }

    #[test]
    fn texts_it_cannot_read_are_refused_while_names_are_stale() {
        let mut c = Cursors::default();
        c.declared("held", true);
        c.rules_changed(std::iter::empty());
        assert!(c.fetch_refusal(b"FETCH ALL FROM held(").is_some());
        let long = format!("FETCH ALL FROM x; SELECT '{}'", "a".repeat(9000));
        assert!(c.fetch_refusal(long.as_bytes()).is_some());
    }

    #[test]
    fn too_many_cursors_make_every_fetch_stale_at_a_reload() {
        let many = |last_held: bool| {
            let mut c = Cursors::default();
            for i in 0..MAX_TRACKED {
                c.declared(&format!("c{i}"), false);
            }
            c.declared("untracked", last_held);
            c.rules_changed(std::iter::empty());
            assert!(c.fetch_refusal(b"FETCH ALL FROM anything").is_some());
            c.transaction_ended();
            c
        };
        // An untracked held cursor outlives the transaction.
        assert!(many(true)
            .fetch_refusal(b"FETCH ALL FROM anything")
            .is_some());
        let c = many(false);
        assert!(c.fetch_refusal(b"FETCH ALL FROM anything").is_none());
        assert!(c.is_empty());
    }
}

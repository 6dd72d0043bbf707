//! The session's portal names, as the server's one namespace of portals
//! and cursors: what makes airlock forget a portal it vetted, planned and
//! saw described.
//!
//! A name is forgotten in every book at once (the vetted portals of
//! [`ClientSide::portals`], and the masking [`PlanBook`]) when the server
//! stops meaning that portal by it, so that nothing executed under the name
//! next can run under the old portal's plan and description:
//! * a Close message of the portal ([`Self::portal_freed`]; the journal
//!   undoes it if the server skipped it);
//! * SQL `CLOSE name`, or `DECLARE name`: the name is now a cursor's
//!   ([`Self::portal_freed_by_sql`]);
//! * `CLOSE ALL`, and `ROLLBACK TO SAVEPOINT`, which closes the portals
//!   opened since the savepoint, not tracked which
//!   ([`Self::all_portals_closed_by_sql`]);
//!
//! A SQL statement may be refused by the server, which then keeps the
//! portal: a portal over masked data that a SQL statement closed stays
//! unreadable by name until the session is idle.
//! * the end of a transaction, which no protocol portal outlives
//!   ([`Self::forget_ended_portals`]).
//!
//! A Bind the server did not carry out is undone in [`super::books`]; a
//! rules reload's effect on open portals is in [`super::reload`].

use super::*;

impl<'a> ClientSide<'a> {
    /// The server no longer means the portal airlock knew by `name`.
    pub(super) fn portal_freed(&mut self, name: &[u8]) {
        self.portals.remove(name);
        if let Some(m) = &mut self.masking {
            m.book.closed_portal(name);
        }
    }

    /// A SQL statement (`CLOSE`, `DECLARE` of the name) closes portal
    /// `name`, if the server carries it out: forgotten, and, when it
    /// reads masked data, not readable by name until the session is idle
    /// (the server may refuse the statement and keep the portal).
    pub(super) fn portal_freed_by_sql(&mut self, name: &[u8]) {
        self.portals.remove(name);
        if let Some(m) = &mut self.masking {
            m.book.portal_closed_by_sql(name);
        }
    }

    /// [`Self::portal_freed_by_sql`] for every portal (`CLOSE ALL`,
    /// `ROLLBACK TO SAVEPOINT`, `DISCARD ALL`).
    pub(super) fn all_portals_closed_by_sql(&mut self) {
        self.portals.clear();
        if let Some(m) = &mut self.masking {
            m.book.all_portals_closed_by_sql();
        }
    }

    /// Between transactions (nothing in flight, none open): the server
    /// holds no protocol portal any more, as they never outlive their
    /// transaction, so the named ones are forgotten (red-team finding:
    /// binding a new name in transaction after transaction grew the books
    /// by 141 to 285 bytes a portal, without bound). The unnamed portal's
    /// entry stays, to be reused by the next Bind.
    #[cold]
    pub(super) fn forget_ended_portals(&mut self) {
        self.portals.clear_named();
        if let Some(m) = &mut self.masking {
            m.book.transaction_ended();
        }
    }
}

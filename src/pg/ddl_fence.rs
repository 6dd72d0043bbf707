//! Keeping a masking session's plans behind its own DDL.
//!
//! Masking plans each statement against a snapshot of the target's catalog
//! that airlock reads on its own connection (see [`super::catalog`]). DDL
//! that a session runs is seen there only once its transaction has ended,
//! and a client may send statements before the server has even run the DDL
//! (pipelining). A statement planned meanwhile would follow the old
//! definitions: `BEGIN; CREATE OR REPLACE VIEW v AS SELECT reverse(email)
//! AS a FROM customers;` then `SELECT a FROM v` would come back unmasked.
//!
//! So, in a masking session:
//!
//! 1. A request that carries DDL (a Query whose plan has a
//!    [`StatementPlan::Ddl`](crate::masking::StatementPlan::Ddl), or the
//!    Sync that ends a batch with an Execute of one) is *marked*. So is
//!    every request sent while the session is restricted (step 3), since
//!    it may end the DDL's transaction.
//! 2. A Query, Parse, Bind or Execute that arrives while a marked request
//!    is unanswered waits (the frame is held, nothing after it is read)
//!    until the server's ReadyForQuery for that request has gone by.
//! 3. Then, if the server reported DDL whose transaction has not ended
//!    ([`FenceSignal::ddl_open`]: a DDL CommandComplete and no idle
//!    ReadyForQuery since), or the current extended batch ran DDL and has
//!    not been synced, the session is *restricted*: only transaction and
//!    session statements are planned
//!    ([`crate::masking::Masker::plan_after_ddl`]), and Bind and Execute
//!    of anything else are refused. Otherwise the DDL's transaction has
//!    ended, the target's catalog generation has moved, and the session
//!    reloads its snapshot before planning, as after any catalog change.
//!
//! Which ReadyForQuery answers which request comes from the reply tracker
//! ([`super::results::Tracker::requests_done`]), which also knows the Syncs
//! the server ignores during COPY FROM STDIN. The client side counts the
//! requests it sends ([`Fence`]); the server side publishes how many have
//! been answered ([`FenceSignal::answered`]) after each message.
//!
//! Sessions without masking plan nothing and skip all of this; their DDL
//! still sets [`FenceSignal::ddl_open`] and moves the catalog generation
//! when its transaction ends.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

/// What the server side tells the client side; part of
/// [`super::sides::Shared`].
#[derive(Default)]
pub struct FenceSignal {
    /// Requests the server has answered, as the reply tracker counts them.
    answered: AtomicU64,
    /// The request the client side is waiting for (0: none).
    awaited: AtomicU64,
    /// DDL ran (its CommandComplete went by) in a transaction that has not
    /// ended yet (no idle ReadyForQuery since).
    ddl_open: AtomicBool,
    /// Wakes the client side when `awaited` has been answered.
    answered_awaited: Notify,
}

impl FenceSignal {
    /// The server side, after each message of a masking session: `done`
    /// requests are answered. Call it after [`Self::set_ddl_open`] for the
    /// same message, so that a client side that sees the count also sees
    /// the state it left.
    pub fn answered(&self, done: u64) {
        self.answered.store(done, Ordering::Release);
        let awaited = self.awaited.load(Ordering::Acquire);
        if awaited != 0 && done >= awaited {
            self.answered_awaited.notify_one();
        }
    }

    /// The server side: DDL ran (`true`), or its transaction ended.
    pub fn set_ddl_open(&self, open: bool) {
        self.ddl_open.store(open, Ordering::Release);
    }

    /// Whether DDL ran in a transaction that has not ended.
    pub fn ddl_open(&self) -> bool {
        self.ddl_open.load(Ordering::Acquire)
    }

    fn is_answered(&self, request: u64) -> bool {
        self.answered.load(Ordering::Acquire) >= request
    }

    /// Waits until request number `request` has been answered.
    async fn wait_for(&self, request: u64) {
        self.awaited.store(request, Ordering::Release);
        // `notify_one` keeps a permit when nobody waits yet: an answer that
        // comes between the check and the wait is not lost.
        while !self.is_answered(request) {
            self.answered_awaited.notified().await;
        }
        self.awaited.store(0, Ordering::Release);
    }
}

/// The client side's part (masking sessions only).
#[derive(Debug, Default)]
pub struct Fence {
    /// Requests sent that the server answers with ReadyForQuery (Query,
    /// Sync, FunctionCall), counted as the reply tracker counts answers.
    sent: u64,
    /// The last marked request, until it is seen answered (0: none).
    awaited: u64,
    /// The extended batch being sent (since the last Sync) ran DDL, or ran
    /// something while restricted: its Sync is marked, and until then the
    /// session is restricted.
    batch_marked: bool,
}

impl Fence {
    /// A request that the server answers with ReadyForQuery was sent.
    pub fn request_sent(&mut self) {
        self.sent += 1;
    }

    /// The request just sent carried DDL, or was sent while restricted.
    pub fn mark_request(&mut self) {
        self.awaited = self.sent;
    }

    /// An Execute of DDL, or any Execute while restricted, was sent: the
    /// batch's Sync will be marked.
    pub fn mark_batch(&mut self) {
        self.batch_marked = true;
    }

    /// A Sync was sent (after [`Self::request_sent`] for it).
    pub fn sync_sent(&mut self) {
        if std::mem::take(&mut self.batch_marked) {
            self.mark_request();
        }
    }

    /// Whether a statement must wait for a marked request's answer before
    /// it is planned. No atomic access unless a request is marked.
    pub fn must_wait(&mut self, signal: &FenceSignal) -> bool {
        if self.awaited == 0 {
            return false;
        }
        if signal.is_answered(self.awaited) {
            self.awaited = 0;
            return false;
        }
        true
    }

    /// Waits until the marked request has been answered.
    pub async fn wait(&mut self, signal: &FenceSignal) {
        if self.awaited != 0 {
            signal.wait_for(self.awaited).await;
            self.awaited = 0;
        }
    }

    /// Whether only transaction and session statements may run now (call
    /// it once [`Self::must_wait`] is false).
    pub fn restricted(&self, signal: &FenceSignal) -> bool {
        self.batch_marked || signal.ddl_open()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn nothing_marked_nothing_waits() {
        let signal = FenceSignal::default();
        let mut fence = Fence::default();
        fence.request_sent();
        fence.request_sent();
        assert!(!fence.must_wait(&signal));
        assert!(!fence.restricted(&signal));
    }

    #[test]
    fn a_marked_query_waits_for_its_own_answer() {
        let signal = FenceSignal::default();
        let mut fence = Fence::default();
        fence.request_sent(); // SELECT 1
        fence.request_sent(); // CREATE VIEW ...
        fence.mark_request();
        signal.answered(1);
        assert!(fence.must_wait(&signal), "only the SELECT was answered");
        signal.answered(2);
        assert!(!fence.must_wait(&signal));
        // Once answered, it stays settled.
        assert!(!fence.must_wait(&signal));
    }

    #[test]
    fn a_batch_with_ddl_is_restricted_until_its_sync_and_then_waits() {
        let signal = FenceSignal::default();
        let mut fence = Fence::default();
        fence.mark_batch(); // Execute of DDL
        assert!(fence.restricted(&signal), "the rest of the batch");
        fence.request_sent(); // Sync
        fence.sync_sent();
        assert!(!fence.restricted(&signal));
        assert!(fence.must_wait(&signal));
        signal.set_ddl_open(true); // ReadyForQuery 'T'
        signal.answered(1);
        assert!(!fence.must_wait(&signal));
        assert!(fence.restricted(&signal), "the DDL's transaction is open");
        signal.set_ddl_open(false);
        assert!(!fence.restricted(&signal));
    }

    #[test]
    fn an_unmarked_sync_marks_nothing() {
        let signal = FenceSignal::default();
        let mut fence = Fence::default();
        fence.request_sent();
        fence.sync_sent();
        assert!(!fence.must_wait(&signal));
    }

    #[tokio::test]
    async fn the_wait_ends_when_the_server_side_answers() {
        let signal = Arc::new(FenceSignal::default());
        let mut fence = Fence::default();
        fence.request_sent();
        fence.mark_request();
        let server = Arc::clone(&signal);
        let answer = tokio::spawn(async move {
            crate::timer_thread::sleep(Duration::from_millis(20)).await;
            server.answered(1);
        });
        crate::timer_thread::timeout(Duration::from_secs(5), fence.wait(&signal))
            .await
            .expect("woken by the answer");
        answer.await.expect("answer task");
        assert!(!fence.must_wait(&signal));
    }

    #[tokio::test]
    async fn an_answer_before_the_wait_is_not_lost() {
        let signal = FenceSignal::default();
        let mut fence = Fence::default();
        fence.request_sent();
        fence.mark_request();
        signal.answered(1);
        crate::timer_thread::timeout(Duration::from_secs(5), fence.wait(&signal))
            .await
            .expect("already answered");
    }
}

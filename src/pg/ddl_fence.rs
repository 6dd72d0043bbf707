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
//!
//! # Other sessions' DDL
//!
//! The fence keeps a session behind its own DDL; it cannot keep a
//! statement that is already planned and forwarded behind another
//! session's. `SELECT a FROM v`, planned against `v` = `name AS a`, may
//! wait for the lock of `BEGIN; CREATE OR REPLACE VIEW v AS SELECT
//! reverse(email) AS a ...` in another session, and run against the new
//! definition once that commits. Nor can waiting for the other session's
//! replies help: a client that stops reading its socket keeps airlock from
//! seeing them. So masked results are refused (fail closed) whenever they
//! may have been computed from definitions their plan did not know:
//!
//! 1. Each target's [`Generation`] counts the sessions with *unsettled*
//!    DDL ([`Generation::unsettled`]): DDL forwarded or run in a
//!    transaction airlock has not yet seen end. A session counts at most
//!    once ([`FenceSignal::count_ddl`]: one atomic holds whether it counts
//!    and the request whose idle ReadyForQuery settles it). A masking
//!    session's client side counts DDL *before forwarding it* (a Query
//!    with a Ddl plan, up to that Query; an Execute of a Ddl portal, up to
//!    its batch's Sync); every session's server side counts at a DDL
//!    CommandComplete (which covers sessions without masking, once airlock
//!    sees it), and settles ([`FenceSignal::settle_ddl`]) at an idle
//!    ReadyForQuery once that request is answered, after bumping the
//!    generation; a session that ends settles in any case.
//! 2. At each snapshot reload the client side publishes
//!    ([`FenceSignal::planned`]) the requests sent before it (the current
//!    extended batch included, if it has frames since its Sync) and the
//!    generation the new snapshot was loaded at.
//! 3. At the first DataRow of each result, the server side of a masking
//!    session refuses the result (40001, everything else up to
//!    ReadyForQuery dropped, as for `max_rows`) if another session's DDL
//!    is unsettled, the generation moved since the snapshot in use was
//!    loaded, or the request was planned against an older snapshot. A
//!    statement that waited for another session's DDL runs only once that
//!    DDL has committed, which is after it was counted; airlock then either
//!    still counts it or has bumped the generation before settling it.
//!
//! The cost: while any session of the target holds DDL in an open
//! transaction, masked sessions' results are refused. The gap: a session
//! without masking is counted only once airlock reads its DDL's
//! CommandComplete, which a client that stops reading can delay.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

use crate::masking::catalog::{InFlight, InFlightAt};
use crate::masking::Generation;

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
    /// Whether this session is counted in its target's unsettled DDL
    /// ([`Generation::unsettled`]), and until which request: 0 when it is
    /// not; otherwise the request whose idle ReadyForQuery (or any later
    /// one) settles it. One atomic, not a flag and an ordinal, so that the
    /// client side raising the ordinal and the server side settling can
    /// never leave the count out of step.
    unsettled_upto: AtomicU64,
    /// The requests (by ordinal) sent before the masking snapshot was last
    /// reloaded: their results were planned against an older one.
    planned_before: AtomicU64,
    /// The catalog generation the masking snapshot now in use was loaded at.
    planned_at: AtomicU64,
    /// A masking session's requests, as other sessions' DDL sees them
    /// (see [`crate::masking::catalog::InFlight`]).
    in_flight: std::sync::OnceLock<std::sync::Arc<InFlight>>,
}

impl FenceSignal {
    /// The server side, after each message of a masking session: `done`
    /// requests are answered. Call it after [`Self::set_ddl_open`] for the
    /// same message, so that a client side that sees the count also sees
    /// the state it left.
    pub fn answered(&self, done: u64) {
        self.answered.store(done, Ordering::Release);
        if let Some(f) = self.in_flight.get() {
            f.answered(done);
        }
        let awaited = self.awaited.load(Ordering::Acquire);
        if awaited != 0 && done >= awaited {
            self.answered_awaited.notify_one();
        }
    }

    /// A masking session starts: its requests count for other sessions'
    /// DDL (see [`Self::others_in_flight`]).
    pub fn join(&self, generation: &Generation) {
        let _ = self.in_flight.set(generation.register());
    }

    /// The client side of a masking session, before it reads
    /// [`Generation::unsettled`] for a message whose request will be
    /// answered as number `request` (see
    /// [`crate::masking::catalog::InFlight`]).
    pub fn checking(&self, request: u64) {
        if let Some(f) = self.in_flight.get() {
            f.checking(request);
        }
    }

    /// After counting its DDL unsettled, before forwarding it: the
    /// requests other masking sessions of the target have checked and not
    /// yet had answered, which may be writes that have not run yet.
    pub fn others_in_flight(&self, generation: &Generation) -> InFlightAt {
        match self.in_flight.get() {
            Some(me) => generation.in_flight_besides(me),
            None => InFlightAt::default(),
        }
    }

    /// The session ends: nothing of it is in flight any more.
    pub fn leave(&self) {
        if let Some(f) = self.in_flight.get() {
            f.ended();
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

    /// Counts this session's DDL as unsettled in the target's
    /// `generation`, until an idle ReadyForQuery answers request `upto` (or
    /// a later one). The client side calls it before it forwards DDL, the
    /// server side when it sees a DDL CommandComplete. Counted already, it
    /// only raises `upto`. Costs one load when nothing changes.
    pub fn count_ddl(&self, generation: &Generation, upto: u64) {
        let upto = upto.max(1);
        if self.unsettled_upto.load(Ordering::Acquire) >= upto {
            return;
        }
        // Counted in the target before the session is marked counted, and
        // taken back if it was already: the target's count is never short.
        generation.count_unsettled();
        if self.unsettled_upto.fetch_max(upto, Ordering::AcqRel) != 0 {
            generation.settle_unsettled();
        }
    }

    /// Whether this session is counted as having unsettled DDL.
    pub fn ddl_counted(&self) -> bool {
        self.unsettled_upto.load(Ordering::Acquire) != 0
    }

    /// The request whose idle ReadyForQuery settles the session's DDL (0:
    /// none counted).
    pub fn settle_upto(&self) -> u64 {
        self.unsettled_upto.load(Ordering::Acquire)
    }

    /// The server side, at an idle ReadyForQuery once `done` requests are
    /// answered (and after bumping the catalog generation): settles the
    /// session's DDL if the request it waits for has been answered.
    /// Returns whether it did.
    pub fn settle_ddl(&self, generation: &Generation, done: u64) -> bool {
        let mut upto = self.unsettled_upto.load(Ordering::Acquire);
        while upto != 0 && upto <= done {
            match self
                .unsettled_upto
                .compare_exchange(upto, 0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    generation.settle_unsettled();
                    return true;
                }
                // The client side raised it meanwhile.
                Err(now) => upto = now,
            }
        }
        false
    }

    /// The session ends: settles its DDL whatever it waited for (after
    /// bumping the catalog generation).
    pub fn settle_ddl_at_end(&self, generation: &Generation) {
        if self.unsettled_upto.swap(0, Ordering::AcqRel) != 0 {
            generation.settle_unsettled();
        }
    }

    /// The client side of a masking session, when it has (re)loaded its
    /// catalog snapshot: requests up to `before` were planned against an
    /// older one, and the new one was loaded at generation `at`.
    pub fn planned(&self, before: u64, at: u64) {
        // `before` first: a reader that sees the new `at` sees it too.
        self.planned_before.store(before, Ordering::Release);
        self.planned_at.store(at, Ordering::Release);
    }

    /// What [`Self::planned`] last published: `(before, at)`. A reader
    /// that races with it may get the old `at` with either `before`; the
    /// old `at` is no longer the current generation (that is why the
    /// snapshot was reloaded), so the result is refused either way.
    pub fn plan_generation(&self) -> (u64, u64) {
        let at = self.planned_at.load(Ordering::Acquire);
        (self.planned_before.load(Ordering::Acquire), at)
    }

    /// Whether request number `request` has been answered.
    fn is_answered(&self, request: u64) -> bool {
        self.answered_upto() >= request
    }

    /// The requests answered (numbers up to this one).
    pub fn answered_upto(&self) -> u64 {
        self.answered.load(Ordering::Acquire)
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
    /// The extended batch being sent has frames since its last Sync.
    batch_open: bool,
}

impl Fence {
    /// A request that the server answers with ReadyForQuery was sent.
    pub fn request_sent(&mut self) {
        self.sent += 1;
    }

    /// A Parse, Bind, Describe, Close or Execute was sent: part of the
    /// batch that the next Sync ends.
    pub fn frame_in_batch(&mut self) {
        self.batch_open = true;
    }

    /// The ordinal of the last request sent (see [`Self::request_sent`]).
    pub fn last_request(&self) -> u64 {
        self.sent
    }

    /// The ordinal of the request the current extended batch's Sync will
    /// be: what answers an Execute sent now.
    pub fn batch_request(&self) -> u64 {
        self.sent + 1
    }

    /// The requests planned, wholly or in part, against the snapshot in
    /// use until now: those sent, and the current extended batch if it has
    /// frames since its last Sync.
    pub fn planned_so_far(&self) -> u64 {
        self.sent + u64::from(self.batch_open)
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
        self.batch_open = false;
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

    #[test]
    fn ddl_counts_once_per_session_and_settles_at_its_request() {
        let generation = Generation::default();
        let signal = FenceSignal::default();
        // Client side: DDL forwarded as request 3, counted once however
        // often it is counted again (the server side at its CommandComplete).
        signal.count_ddl(&generation, 3);
        signal.count_ddl(&generation, 1);
        signal.count_ddl(&generation, 3);
        assert_eq!(generation.unsettled(), 1);
        assert!(signal.ddl_counted());
        // An idle ReadyForQuery of an earlier request does not settle it.
        assert!(!signal.settle_ddl(&generation, 2));
        assert_eq!(generation.unsettled(), 1);
        // Raised by a later DDL request before the answer came.
        signal.count_ddl(&generation, 5);
        assert_eq!(generation.unsettled(), 1);
        assert!(!signal.settle_ddl(&generation, 3));
        assert!(signal.settle_ddl(&generation, 5));
        assert_eq!(generation.unsettled(), 0);
        assert!(!signal.ddl_counted());
        // Settled once only.
        assert!(!signal.settle_ddl(&generation, 9));
        signal.settle_ddl_at_end(&generation);
        assert_eq!(generation.unsettled(), 0);
    }

    #[test]
    fn a_session_that_ends_settles_its_ddl() {
        let generation = Generation::default();
        let (a, b) = (FenceSignal::default(), FenceSignal::default());
        a.count_ddl(&generation, 1);
        b.count_ddl(&generation, u64::MAX);
        assert_eq!(generation.unsettled(), 2);
        a.settle_ddl_at_end(&generation);
        a.settle_ddl_at_end(&generation);
        assert_eq!(generation.unsettled(), 1);
        assert!(b.settle_ddl(&generation, u64::MAX));
        assert_eq!(generation.unsettled(), 0);
    }

    #[test]
    fn counting_and_settling_from_two_threads_stays_balanced() {
        let generation = Generation::default();
        let signal = Arc::new(FenceSignal::default());
        let (g2, s2) = (generation.clone(), Arc::clone(&signal));
        let settler = std::thread::spawn(move || {
            for done in 0..20_000u64 {
                s2.settle_ddl(&g2, done);
            }
        });
        for upto in 0..20_000u64 {
            signal.count_ddl(&generation, upto);
        }
        settler.join().expect("settler thread");
        // At most this session counts, and only while it is marked.
        assert_eq!(generation.unsettled(), u64::from(signal.ddl_counted()));
        signal.settle_ddl_at_end(&generation);
        assert_eq!(generation.unsettled(), 0);
    }

    #[test]
    fn the_plan_generation_is_published_for_the_server_side() {
        let signal = FenceSignal::default();
        let mut fence = Fence::default();
        signal.planned(0, 4);
        assert_eq!(signal.plan_generation(), (0, 4));
        fence.request_sent();
        assert_eq!(fence.planned_so_far(), 1);
        fence.frame_in_batch(); // Parse of the next batch
        assert_eq!(fence.planned_so_far(), 2, "the open batch counts");
        assert_eq!(fence.batch_request(), 2);
        fence.request_sent(); // its Sync
        fence.sync_sent();
        assert_eq!(fence.planned_so_far(), 2);
        signal.planned(fence.planned_so_far(), 7);
        assert_eq!(signal.plan_generation(), (2, 7));
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

//! A future that is polled only after it asked to be woken.
//!
//! A session's `select!` polls every branch at every wake-up. The control
//! branches (admin terminate, credential expiry, shutdown, idle timeout)
//! almost never have anything to say, yet each poll of them costs a timer
//! check, a lock or a watch-channel look: callgrind put them at about one
//! eighth of the instructions airlock spends per `pgbench -S` transaction.
//!
//! [`WakeGate`] wraps such a future and polls it with a waker of its own.
//! Until that waker fires, a poll of the gate only checks the task's
//! waker and returns `Pending`, without touching the inner future. When the
//! inner future's timer, channel or notification wakes it, the gate wakes
//! the task and the next poll goes through. The inner future therefore
//! sees exactly the polls it asked for (plus the first), which is all the
//! `Future` contract promises it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

pin_project_lite::pin_project! {
    /// `inner`, polled only when it has been woken since its last poll.
    pub struct WakeGate<F> {
        #[pin]
        inner: F,
        signal: Arc<Signal>,
        // The waker handed to `inner`, made once.
        waker: Waker,
    }
}

/// Set by the inner future's waker; read and cleared by the gate.
///
/// The task to wake is kept as the waker of the gate's first poll. A
/// task's waker is the same from one poll to the next, so a poll normally
/// only compares it ([`Waker::will_wake`]) and a wake-up wakes it by
/// reference: no atomic read-modify-write of a registration slot at every
/// poll, no waker clone (an [`AtomicWaker`], which this used before, takes
/// the waker out at every wake-up, so every poll had to register it
/// again: two compare-and-swaps and a clone per gate per wake-up, four
/// gates per relay wake-up). Should a poll ever come with another waker
/// (the gate moved to another task), that one is registered in `other`,
/// and from then on every wake-up wakes both (a spurious wake-up of the
/// first is harmless).
struct Signal {
    woken: AtomicBool,
    first: OnceLock<Waker>,
    /// A poll came with a waker other than `first`.
    moved: AtomicBool,
    other: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // SeqCst, paired with the poll's: a wake that reads `moved` as
        // false came before the poll that set it, so that poll reads
        // `woken` as true and goes through.
        self.woken.store(true, Ordering::SeqCst);
        if let Some(task) = self.first.get() {
            task.wake_by_ref();
        }
        if self.moved.load(Ordering::SeqCst) {
            self.other.wake();
        }
    }
}

impl<F: Future> WakeGate<F> {
    pub fn new(inner: F) -> Self {
        let signal = Arc::new(Signal {
            // The first poll goes through: the inner future has not yet
            // registered anything that could wake it.
            woken: AtomicBool::new(true),
            first: OnceLock::new(),
            moved: AtomicBool::new(false),
            other: AtomicWaker::new(),
        });
        let waker = Waker::from(signal.clone());
        Self {
            inner,
            signal,
            waker,
        }
    }
}

impl<F: Future> Future for WakeGate<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let signal = &**this.signal;
        // The task's waker is in place before the flag is read: a wake
        // between the two then finds it and is not lost. The first poll
        // stores it (nothing can wake the gate before the inner future has
        // been polled, which happens after this); later polls only check
        // that it is still the same.
        let task = cx.waker();
        match signal.first.get() {
            Some(first) if first.will_wake(task) => {}
            None if signal.first.set(task.clone()).is_ok() => {}
            _ => {
                signal.other.register(task);
                signal.moved.store(true, Ordering::SeqCst);
            }
        }
        if !signal.woken.swap(false, Ordering::SeqCst) {
            return Poll::Pending;
        }
        this.inner.poll(&mut Context::from_waker(this.waker))
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tokio::test runtimes have tokio's timer
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Counts its polls; ready once `ready` is set, after being woken.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<std::sync::Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            if let Ok(mut w) = self.waker.lock() {
                *w = Some(cx.waker().clone());
            }
            Poll::Pending
        }
    }

    type Stored = Arc<std::sync::Mutex<Option<Waker>>>;
    type Probed = (
        Pin<Box<WakeGate<Probe>>>,
        Arc<AtomicUsize>,
        Arc<AtomicBool>,
        Stored,
    );

    /// A gate around a [`Probe`], with the probe's poll count, its ready
    /// switch and the waker it last registered.
    fn probed() -> Probed {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let stored: Stored = Arc::default();
        let gate = Box::pin(WakeGate::new(Probe {
            polls: polls.clone(),
            ready: ready.clone(),
            waker: stored.clone(),
        }));
        (gate, polls, ready, stored)
    }

    /// Polls `gate` as the task whose waker is `task`.
    fn poll_as(gate: &mut Pin<Box<WakeGate<Probe>>>, task: &Waker) -> Poll<()> {
        gate.as_mut().poll(&mut Context::from_waker(task))
    }

    /// The waker the probe last registered (what its timer or channel
    /// would hold).
    fn inner_waker(stored: &Stored) -> Waker {
        let waker = stored.lock().ok().and_then(|w| w.clone());
        waker.expect("inner registered a waker")
    }

    #[test]
    fn inner_is_polled_only_after_its_waker_fired() {
        let (mut gate, polls, ready, stored) = probed();
        let task_woken = Arc::new(Flag::default());
        let task = Waker::from(task_woken.clone());
        let mut cx = Context::from_waker(&task);
        assert!(gate.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        // Polled again without a wake: the inner future is left alone.
        for _ in 0..10 {
            assert!(gate.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        assert!(!task_woken.0.load(Ordering::SeqCst));
        // The inner future's waker fires: the task is woken, and the next
        // poll reaches the inner future.
        ready.store(true, Ordering::SeqCst);
        inner_waker(&stored).wake();
        assert!(task_woken.0.load(Ordering::SeqCst));
        assert!(gate.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_gate_polled_from_another_task_wakes_that_task() {
        let (mut gate, polls, ready, stored) = probed();
        let first = Arc::new(Flag::default());
        let first_waker = Waker::from(first.clone());
        assert!(poll_as(&mut gate, &first_waker).is_pending());
        // Moved: polled with another task's waker from now on.
        let second = Arc::new(Flag::default());
        let second_waker = Waker::from(second.clone());
        for _ in 0..3 {
            assert!(poll_as(&mut gate, &second_waker).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        ready.store(true, Ordering::SeqCst);
        inner_waker(&stored).wake();
        assert!(
            second.0.load(Ordering::SeqCst),
            "the task polling it now is woken"
        );
        assert!(poll_as(&mut gate, &second_waker).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn every_wake_reaches_the_task_not_only_the_first() {
        // The waker is kept, not taken: each of several wake-ups wakes the
        // task, with no poll in between to register it again.
        let (mut gate, polls, _ready, stored) = probed();
        let count = Arc::new(Count::default());
        let task = Waker::from(count.clone());
        assert!(poll_as(&mut gate, &task).is_pending());
        let inner = inner_waker(&stored);
        inner.wake_by_ref();
        inner.wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        // One poll goes through for both, and the next waits again.
        assert!(poll_as(&mut gate, &task).is_pending());
        assert!(poll_as(&mut gate, &task).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[derive(Default)]
    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_gated_timer_still_fires_inside_select() {
        // The other branch wins several times first: each of those wake-ups
        // polls the gate without its timer having fired.
        let gated = WakeGate::new(tokio::time::sleep(Duration::from_millis(40)));
        tokio::pin!(gated);
        let mut ticks = 0;
        loop {
            tokio::select! {
                biased;
                () = &mut gated => break,
                () = tokio::time::sleep(Duration::from_millis(5)) => ticks += 1,
            }
        }
        assert!(ticks >= 1);
    }
}

//! Timers on a thread of their own, off the async runtime.
//!
//! tokio's time driver works at every park of the runtime, whether or not
//! a timer is due: it reads the clock and looks through its wheel before
//! the park, and after it reads the clock again and walks the wheel for
//! timers that have come due. Callgrind put that at about 550 instructions
//! per `pgbench -S` round trip (some 6% of what airlock spends on one),
//! paid by every request for as long as the driver exists.
//!
//! airlock's runtime is therefore built without tokio's time driver (see
//! `main.rs`), and every timer goes through this module instead:
//! [`sleep_until`] and [`sleep`] for idle timeouts, credential TTLs, the
//! janitor and rotation loops and the rules-file poll, and [`timeout`] for
//! connects, handshakes, broker calls, approval holds and the shutdown
//! drain; an [`Alarm`] is a deadline that is asked after rather than
//! awaited (the foreign-key links' age, at every statement). A deadline is
//! registered with one process-wide thread, which waits on a condition
//! variable until the earliest deadline and then wakes the futures that
//! are due. The runtime parks without touching the clock.
//!
//! A [`Sleep`] fires at its deadline rounded up to the millisecond (as
//! tokio's timer does), so that deadlines close together are fired by one
//! wake-up of the thread, never early. Dropping it removes its
//! registration.
//!
//! `airlock serve` starts the thread first ([`start`]) and refuses to run
//! without it. Elsewhere (library use, tests), if the thread cannot be
//! started, a [`Sleep`] falls back to tokio's timer, which needs a runtime
//! built with it. `tokio::time`'s sleeps and timeouts are disallowed in
//! this crate (`clippy.toml`) so that none reaches the timer-less runtime.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;

/// A future that completes at a deadline (see the module docs).
#[must_use = "futures do nothing unless polled"]
pub struct Sleep {
    deadline: Instant,
    state: State,
}

enum State {
    /// Not polled yet: nothing registered.
    New,
    /// Registered with the timer thread under this key.
    Registered { key: Key, slot: Arc<Slot> },
    /// The timer thread is not available: tokio's timer instead.
    Fallback(Pin<Box<tokio::time::Sleep>>),
}

/// Starts the timer thread if it is not running yet. `airlock serve` calls
/// it before it builds its runtime, which has no timer of its own.
pub fn start() -> std::io::Result<()> {
    match service() {
        Some(_) => Ok(()),
        None => Err(std::io::Error::other("cannot start the timer thread")),
    }
}

/// Waits until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        state: State::New,
    }
}

/// Waits for `duration`; a duration past what `Instant` can hold never
/// ends.
pub async fn sleep(duration: Duration) {
    match Instant::now().checked_add(duration) {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs `future` for at most `duration`: [`Elapsed`] if it has not
/// finished by then. A duration past what `Instant` can hold never elapses.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: Instant::now().checked_add(duration).map(sleep_until),
    }
}

pin_project_lite::pin_project! {
    /// The future [`timeout`] returns.
    #[must_use = "futures do nothing unless polled"]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        sleep: Option<Sleep>,
    }
}

/// A [`timeout`] ran out before its future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline has elapsed")]
pub struct Elapsed;

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The work first: a future that finishes in the same poll as its
        // deadline passes has finished.
        if let Poll::Ready(out) = this.future.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match this.sleep {
            Some(sleep) => Pin::new(sleep).poll(cx).map(|()| Err(Elapsed)),
            None => Poll::Pending,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.state {
            State::Registered { slot, .. } => {
                // Registered before the flag is read: a wake between the two
                // then finds this waker and is not lost.
                slot.waker.register(cx.waker());
                if slot.fired.load(Ordering::Acquire) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
            State::Fallback(sleep) => sleep.as_mut().poll(cx),
            State::New => {
                if Instant::now() >= self.deadline {
                    return Poll::Ready(());
                }
                let deadline = self.deadline;
                self.state = match service() {
                    Some(service) => {
                        let slot = Arc::new(Slot::default());
                        slot.waker.register(cx.waker());
                        let key = service.insert(deadline, Arc::clone(&slot));
                        State::Registered { key, slot }
                    }
                    // Only where the thread could not start; `airlock
                    // serve` does not run then, so this is a runtime with
                    // tokio's timer (library use, tests).
                    #[allow(clippy::disallowed_methods)]
                    None => State::Fallback(Box::pin(tokio::time::sleep_until(deadline.into()))),
                };
                // The state is set; poll it once so a fallback timer (or a
                // registration that fired already) is seen.
                self.poll(cx)
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let State::Registered { key, slot } = &self.state {
            if !slot.fired.load(Ordering::Acquire) {
                if let Some(service) = service() {
                    service.remove(*key);
                }
            }
        }
    }
}

/// A flag the timer thread raises at a deadline: for code that asks
/// often whether a deadline has passed (at every statement) and should not
/// read the clock each time. Dropping it removes its registration. Where
/// the timer thread is not available, [`Alarm::rang`] reads the clock.
pub struct Alarm {
    deadline: Instant,
    registered: Option<(Key, Arc<Slot>)>,
}

impl Alarm {
    /// An alarm that rings at `deadline` (at once when it has passed).
    pub fn at(deadline: Instant) -> Alarm {
        let registered = if Instant::now() >= deadline {
            // Passed already: a slot that has fired, and nothing to remove.
            let slot = Slot::default();
            slot.fired.store(true, Ordering::Relaxed);
            Some(((deadline, u64::MAX), Arc::new(slot)))
        } else {
            service().map(|service| {
                let slot = Arc::new(Slot::default());
                (service.insert(deadline, Arc::clone(&slot)), slot)
            })
        };
        Alarm {
            deadline,
            registered,
        }
    }

    /// Whether the deadline has passed (at most a millisecond late, see
    /// [`Sleep`]).
    pub fn rang(&self) -> bool {
        match &self.registered {
            Some((_, slot)) => slot.fired.load(Ordering::Acquire),
            None => Instant::now() >= self.deadline,
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        if let Some((key, slot)) = &self.registered {
            if !slot.fired.load(Ordering::Acquire) {
                if let Some(service) = service() {
                    service.remove(*key);
                }
            }
        }
    }
}

/// What a registered [`Sleep`] shares with the timer thread.
#[derive(Default)]
struct Slot {
    fired: AtomicBool,
    waker: AtomicWaker,
}

/// Deadline, then a sequence number: equal deadlines stay distinct.
type Key = (Instant, u64);

/// The timer thread's registrations.
struct Service {
    due: Mutex<Registrations>,
    /// Signalled when a registration becomes the earliest.
    earlier: Condvar,
}

#[derive(Default)]
struct Registrations {
    by_deadline: BTreeMap<Key, Arc<Slot>>,
    next_seq: u64,
}

impl Service {
    fn lock(&self) -> MutexGuard<'_, Registrations> {
        self.due.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert(&self, deadline: Instant, slot: Arc<Slot>) -> Key {
        let deadline = round_up_to_ms(deadline);
        let mut due = self.lock();
        let key = (deadline, due.next_seq);
        due.next_seq += 1;
        let earliest = due
            .by_deadline
            .first_key_value()
            .is_none_or(|(k, _)| key < *k);
        due.by_deadline.insert(key, slot);
        drop(due);
        if earliest {
            self.earlier.notify_one();
        }
        key
    }

    fn remove(&self, key: Key) {
        self.lock().by_deadline.remove(&key);
    }

    /// The timer thread: fires what is due, then waits for the earliest
    /// deadline or an earlier registration.
    fn run(&self) {
        let mut due = self.lock();
        loop {
            let now = Instant::now();
            let mut fired = Vec::new();
            while let Some(entry) = due.by_deadline.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                fired.push(entry.remove());
            }
            if !fired.is_empty() {
                // Woken without the lock: a woken task may register again.
                drop(due);
                for slot in fired {
                    slot.fired.store(true, Ordering::Release);
                    // A waker that panics must not take the thread, and
                    // with it every idle timeout and TTL, down.
                    let woke = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        slot.waker.wake();
                    }));
                    if woke.is_err() {
                        tracing::error!("a timer's waker panicked");
                    }
                }
                due = self.lock();
                continue;
            }
            due = match due.by_deadline.first_key_value().map(|(k, _)| k.0) {
                Some(at) => {
                    self.earlier
                        .wait_timeout(due, at.saturating_duration_since(now))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .earlier
                    .wait(due)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

/// `at` rounded up to a whole millisecond since the thread's epoch (an
/// `at` that cannot be rounded stays as it is).
fn round_up_to_ms(at: Instant) -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let since = at.saturating_duration_since(epoch);
    let ms = since.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms)
        .ok()
        .and_then(|ms| epoch.checked_add(Duration::from_millis(ms)))
        .unwrap_or(at)
}

/// The process's timer thread, started on first use; `None` if it could not
/// be started (the error is logged once).
fn service() -> Option<&'static Service> {
    static SERVICE: OnceLock<Option<&'static Service>> = OnceLock::new();
    *SERVICE.get_or_init(|| {
        let service: &'static Service = Box::leak(Box::new(Service {
            due: Mutex::new(Registrations::default()),
            earlier: Condvar::new(),
        }));
        match std::thread::Builder::new()
            .name("airlock-timer".into())
            .spawn(move || service.run())
        {
            Ok(_) => Some(service),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the timer thread; timers fall back to tokio's, which needs a runtime built with its timer");
                None
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tokio::test runtimes have tokio's timer
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_at_its_deadline_not_before() {
        let start = Instant::now();
        sleep(Duration::from_millis(30)).await;
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn an_alarm_rings_at_its_deadline_not_before() {
        let alarm = Alarm::at(Instant::now() + Duration::from_millis(30));
        assert!(!alarm.rang());
        std::thread::sleep(Duration::from_millis(60));
        assert!(alarm.rang());
        assert!(Alarm::at(Instant::now()).rang());
        // Dropped before it rings: its registration goes with it.
        drop(Alarm::at(Instant::now() + Duration::from_secs(3600)));
    }

    #[test]
    fn deadlines_round_up_to_the_millisecond_never_down() {
        let now = Instant::now();
        for nanos in [0, 1, 999_999, 1_000_000, 1_000_001, 123_456_789] {
            let at = now + Duration::from_nanos(nanos);
            let rounded = round_up_to_ms(at);
            assert!(rounded >= at);
            assert!(rounded - at < Duration::from_millis(1));
        }
        // Within one millisecond: one key, so one wake-up fires both.
        let a = round_up_to_ms(now + Duration::from_micros(100));
        let b = round_up_to_ms(a - Duration::from_micros(1));
        assert_eq!(a, b);
    }

    #[tokio::test]
    async fn a_past_deadline_is_ready_at_once() {
        sleep_until(Instant::now()).await;
        sleep(Duration::ZERO).await;
    }

    #[tokio::test]
    async fn an_earlier_registration_is_not_held_up_by_a_later_one() {
        // The thread is waiting for the hour-long sleep when the short one
        // registers: it must wake up early for it.
        let long = sleep_until(Instant::now() + Duration::from_secs(3600));
        tokio::pin!(long);
        tokio::select! {
            biased;
            () = &mut long => panic!("the hour-long sleep fired"),
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        let start = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), sleep(Duration::from_millis(20)))
            .await
            .expect("the short sleep fired while a long one was registered");
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[tokio::test]
    async fn equal_deadlines_all_fire() {
        let at = Instant::now() + Duration::from_millis(20);
        let sleeps = (0..5).map(|_| tokio::spawn(sleep_until(at)));
        for s in sleeps {
            tokio::time::timeout(Duration::from_secs(5), s)
                .await
                .expect("fired")
                .expect("task ran");
        }
    }

    #[tokio::test]
    async fn a_dropped_sleep_leaves_no_registration() {
        let at = Instant::now() + Duration::from_secs(3600);
        let mut s = Box::pin(sleep_until(at));
        // Registered by its first poll.
        assert!(futures_util::poll!(s.as_mut()).is_pending());
        let key = match &s.state {
            State::Registered { key, .. } => *key,
            _ => panic!("not registered"),
        };
        let registered = |k: Key| {
            service()
                .expect("timer thread")
                .lock()
                .by_deadline
                .contains_key(&k)
        };
        assert!(registered(key));
        drop(s);
        assert!(!registered(key));
    }

    #[test]
    fn wakes_a_task_on_another_runtime_thread() {
        // The waker runs on the timer thread, not the runtime's: the task
        // must still be scheduled.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), sleep(Duration::from_millis(10)))
                .await
                .expect("woken from the timer thread");
        });
    }

    /// A runtime built as `airlock serve` builds its own: I/O only.
    fn timerless_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime")
    }

    #[test]
    fn sleeps_and_timeouts_run_on_a_runtime_without_tokios_timer() {
        start().expect("timer thread");
        timerless_runtime().block_on(async {
            let started = Instant::now();
            sleep(Duration::from_millis(10)).await;
            assert!(started.elapsed() >= Duration::from_millis(10));
            let never = std::future::pending::<()>();
            assert_eq!(
                timeout(Duration::from_millis(10), never).await,
                Err(Elapsed)
            );
            assert_eq!(timeout(Duration::from_secs(60), async { 7 }).await, Ok(7));
        });
    }

    #[tokio::test]
    async fn a_timeout_lets_a_future_that_finishes_in_time_finish() {
        let quick = async {
            sleep(Duration::from_millis(5)).await;
            "done"
        };
        assert_eq!(timeout(Duration::from_secs(5), quick).await, Ok("done"));
    }

    #[tokio::test]
    async fn a_timeout_elapses_and_drops_its_registration() {
        let slow = sleep(Duration::from_secs(3600));
        let started = Instant::now();
        assert_eq!(timeout(Duration::from_millis(20), slow).await, Err(Elapsed));
        assert!(started.elapsed() >= Duration::from_millis(20));
        // A duration past Instant's range never elapses.
        let t = timeout(Duration::MAX, std::future::pending::<()>());
        tokio::pin!(t);
        assert!(futures_util::poll!(t.as_mut()).is_pending());
    }
}

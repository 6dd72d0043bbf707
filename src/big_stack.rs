//! Work on long SQL texts, off the async runtime's worker.
//!
//! sqlparser's syntax trees are deep for long texts: parsing, walking and
//! dropping them overflows a worker's 2 MiB stack. Texts over
//! [`crate::policy::engine::INLINE_PARSE_BYTES`] are therefore parsed and
//! analyzed on a scoped thread with a [`BIG_STACK`] (reserved address
//! space; only the pages used are committed).
//!
//! The session waits for that thread synchronously: its decision is
//! needed before the next byte moves. On a multi-thread runtime the wait
//! runs inside [`tokio::task::block_in_place`], which hands the worker's
//! other sessions to another worker first, so that one large request (a
//! 1 MiB batch of statements costs tenths of a second to parse) does not
//! stall every session that shares its worker. A current-thread runtime
//! (airlock on one CPU) has no other worker to hand them to.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Stack for parsing and analyzing long texts.
pub const BIG_STACK: usize = 256 * 1024 * 1024;

/// Runs `f` on a thread named `name` with a [`BIG_STACK`]; `None` if the
/// thread could not start or panicked.
pub fn run<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Option<T> {
    let on_thread = || {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name(name.into())
                .stack_size(BIG_STACK)
                .spawn_scoped(s, f)
                .ok()
                .and_then(|h| h.join().ok())
        })
    };
    let multi_thread =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    match multi_thread {
        true => tokio::task::block_in_place(on_thread),
        false => on_thread(),
    }
}

#[cfg(test)]
mod tests {
    use super::run;

    fn deep(n: usize) -> usize {
        // More stack than a worker has: 100k frames of a few hundred bytes.
        let pad = std::hint::black_box([1u8; 256]);
        if n == 0 {
            return 0;
        }
        deep(n - 1) + usize::from(pad[n % 256])
    }

    #[test]
    fn runs_off_any_runtime() {
        assert_eq!(run("t", || deep(100_000)), Some(100_000));
        assert_eq!(run("t", || -> u8 { panic!("contained") }), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn runs_on_a_current_thread_runtime() {
        assert_eq!(run("t", || deep(100_000)), Some(100_000));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_on_a_multi_thread_runtime() {
        // Another task on the runtime goes on while the thread runs.
        let other = tokio::spawn(async { 7 });
        assert_eq!(run("t", || deep(100_000)), Some(100_000));
        assert_eq!(other.await.unwrap(), 7);
    }
}

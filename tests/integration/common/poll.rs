//! Polling with a deadline, for effects that land in the background: a
//! rules reload, an audit record, a request withdrawn.

use std::future::Future;
use std::time::Duration;

/// Polls `f` every 50 ms until it returns `Some`, for up to 30 seconds.
pub async fn wait_for<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll(what, Duration::from_millis(50), Duration::from_secs(30), f).await
}

/// Polls `check` every 250 ms until it holds, for up to 10 seconds. For a
/// rules reload: the file watcher notices a change within about a second,
/// and each check usually opens a session (a login upstream), so not too
/// often.
pub async fn until_reloaded<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let every = Duration::from_millis(250);
    poll(what, every, Duration::from_secs(10), || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

async fn poll<T, F, Fut>(what: &str, every: Duration, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

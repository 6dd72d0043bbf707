//! The web console in headless Chromium, driven over WebDriver: it shows a
//! statement a real client sent through airlock that was blocked, and
//! clicking Approve releases a held statement a real client waits on;
//! control and bidi characters in it are shown as escapes.
//! Skipped (with the reason printed) where Chromium is not installed.

use crate::common::admin as admin_kit;
use crate::common::webdriver;

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use admin_kit::*;
use webdriver::Browser;

const RULES: &str = r#"
[[policy]]
id = "rw"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "ddl", "session", "transaction"]
deny_tables = ["public.secrets"]
require_approval = [
  { id = "orders-write", statements = ["write"], tables = ["public.orders"], message = "needs a human" },
]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_blocked_statements_and_approves_held_ones() {
    if let Some(why) = webdriver::unavailable() {
        eprintln!("skipping the web console test: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut env = Env::start_with(EnvOptions {
        rules_toml: Some(RULES.into()),
        extra_toml: admin_toml(dir.path(), "2m"),
        ..Default::default()
    })
    .await;
    env.direct()
        .await
        .batch_execute(
            "CREATE TABLE secrets (s text); CREATE TABLE orders (id int, note text);
             INSERT INTO orders VALUES (1, 'new')",
        )
        .await
        .unwrap();
    let addr = env.airlock.as_ref().and_then(|a| a.admin_addr).unwrap();
    let api = AdminApi::new(addr);

    // A real client's statement is blocked.
    let c = Arc::new(env.agent().await);
    c.simple_query("SELECT s FROM secrets WHERE s <> 'console-marker'")
        .await
        .unwrap_err();

    let browser = Browser::start().await;
    browser.goto(&format!("http://{addr}/")).await;
    let token = browser.find("#token").await.expect("a token field");
    browser.type_into(&token, TOKEN).await;
    let reviewer = browser.find("#reviewer").await.unwrap();
    browser.type_into(&reviewer, "dana").await;
    let save = browser.find("#token-save").await.unwrap();
    browser.click(&save).await;

    let shot = dir.path().join("console.png");
    // The blocked statement shows up in the log (the page polls).
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let log = browser.text("#log").await;
            if log.contains("console-marker") && log.contains("rw.deny-tables") {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    if found.is_err() {
        browser.screenshot(&shot).await;
        panic!(
            "the console never showed the blocked statement (screenshot: {})\n{}",
            shot.display(),
            browser.text("body").await
        );
    }
    assert!(browser.text("#sessions").await.contains(AGENT));

    // A held statement shows up with an Approve button; clicking it
    // releases the waiting client.
    let c1 = Arc::clone(&c);
    let held = tokio::spawn(async move {
        // A bidi override in a comment: shown as an escape, so that it
        // cannot reorder what the reviewer reads.
        c1.simple_query("UPDATE orders SET note = 'by console' /* \u{202e} */ WHERE id = 1")
            .await
            .map(|_| ())
    });
    let p = api.wait_pending(AGENT).await;
    let selector = format!("button[data-approve=\"{}\"]", p["id"]);
    let button = wait_for("the Approve button", || async {
        browser.find(&selector).await
    })
    .await;
    if let Ok(path) = std::env::var("AIRLOCK_CONSOLE_SCREENSHOT") {
        // For looking at the console: a PNG of the page at this point.
        browser.screenshot(std::path::Path::new(&path)).await;
    }
    let row = browser.text("#approvals").await;
    assert!(row.contains("UPDATE orders"), "{row}");
    assert!(row.contains("rw.orders-write"), "{row}");
    assert!(
        row.contains("\\u{202e}") && !row.contains('\u{202e}'),
        "{row}"
    );
    browser.click(&button).await;
    tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .expect("the click released the statement")
        .unwrap()
        .expect("approved statement runs");
    let note: String = env
        .direct()
        .await
        .query_one("SELECT note FROM orders WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, "by console");
    api.wait_audit_reason("identity=agent", "approved by dana")
        .await;
    wait_for("the approvals list to empty", || async {
        browser
            .text("#approvals-empty")
            .await
            .contains("No statement")
            .then_some(())
    })
    .await;
    browser.quit().await;
    env.stop().await;
}

//! A minimal W3C WebDriver client for headless Chromium (Debian's
//! `chromium` and `chromedriver` packages): start the driver, open a
//! session, find, click, type, run scripts. Speaks JSON over the admin
//! client's small HTTP/1.1 client; no extra dependencies.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use airlock::admin::client::request;
use serde_json::{json, Value};

const DRIVER: &str = "/usr/bin/chromedriver";
const BROWSERS: [&str; 2] = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"];

/// A browser session. Dropping it kills the driver (and its browser).
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

/// Why the browser tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !Path::new(DRIVER).exists() {
        return Some(format!(
            "{DRIVER} is not installed (apt-get install chromium-driver)"
        ));
    }
    if !BROWSERS.iter().any(|b| Path::new(b).exists()) {
        return Some("chromium is not installed (apt-get install chromium)".into());
    }
    None
}

impl Browser {
    /// Starts chromedriver on a free port and a headless browser session.
    pub async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let driver = Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = request("GET", &base, "/status", None, None).await {
                if r.json()["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let binary = BROWSERS.iter().find(|b| Path::new(b).exists()).unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run", "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.path().display())],
            },
        }}});
        let r = request("POST", &base, "/session", None, Some(&caps))
            .await
            .expect("create a WebDriver session");
        let session = r.json()["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {}", r.text()))
            .to_owned();
        Browser {
            driver,
            base,
            session,
            _profile: profile,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let r = request(method, &self.base, &path, None, body.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(r.is_success(), "{method} {path}: {}", r.text());
        r.json()["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// The first element matching `css`, if any.
    pub async fn find(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/elements", self.session);
        let body = json!({"using": "css selector", "value": css});
        let r = request("POST", &self.base, &path, None, Some(&body))
            .await
            .ok()?;
        let first = r.json()["value"].as_array()?.first()?.clone();
        first
            .as_object()?
            .values()
            .next()?
            .as_str()
            .map(str::to_owned)
    }

    pub async fn click(&self, element: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub async fn type_into(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub async fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// The visible text of the first element matching `css` ("" if none).
    pub async fn text(&self, css: &str) -> String {
        let js = format!(
            "const e = document.querySelector({}); return e ? e.innerText : '';",
            json!(css)
        );
        self.script(&js).await.as_str().unwrap_or("").to_owned()
    }

    /// Saves a screenshot (PNG) to `path`, for looking at failures.
    pub async fn screenshot(&self, path: &Path) {
        use base64_decode::decode;
        let v = self.call("GET", "/screenshot", None).await;
        if let Some(png) = v.as_str().and_then(decode) {
            let _ = std::fs::write(path, png);
        }
    }

    pub async fn quit(mut self) {
        let path = format!("/session/{}", self.session);
        let _ = request("DELETE", &self.base, &path, None, None).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64, enough for screenshots.
mod base64_decode {
    pub fn decode(s: &str) -> Option<Vec<u8>> {
        let val = |c: u8| -> Option<u32> {
            Some(match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            } as u32)
        };
        let bytes: Vec<u8> = s
            .bytes()
            .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
            .collect();
        let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
        for chunk in bytes.chunks(4) {
            let mut n = 0u32;
            for (i, c) in chunk.iter().enumerate() {
                n |= val(*c)? << (18 - 6 * i);
            }
            let take = chunk.len().saturating_sub(1);
            for i in 0..take {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        Some(out)
    }
}

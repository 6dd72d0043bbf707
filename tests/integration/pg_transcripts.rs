//! Wire transcripts, in the style of Materialize's pgtest: each file in
//! `testdata/transcripts/` is a script of frontend messages. It is played
//! once directly against Postgres (as the upstream user) and once through
//! airlock (as the agent), and the backend messages must be byte-identical,
//! modulo the sender pid of NotificationResponse.
//!
//! File format, one item per line:
//!
//! ```text
//! # comment
//! {"Query": "SELECT 1"}                 a frontend message in JSON (see common/raw.rs)
//! until 1                               read until this many ReadyForQuery
//! ```

use crate::common::raw::{encode_message, RawClient};
use crate::common::*;
use bytes::BytesMut;

/// Plays a script; returns the rendered backend messages.
async fn play(client: &mut RawClient, script: &str) -> Vec<String> {
    let mut rendered = Vec::new();
    let mut pending = BytesMut::new();
    for line in script.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(n) = line.strip_prefix("until ") {
            client.send(&pending).await;
            pending.clear();
            let n: usize = n.trim().parse().expect("until N");
            for f in client.until_ready(n).await {
                rendered.push(render(f.tag(), f.body()));
            }
        } else {
            encode_message(line, &mut pending);
        }
    }
    assert!(pending.is_empty(), "script ends without `until`");
    rendered
}

fn render(tag: u8, body: &[u8]) -> String {
    let body = match tag {
        // NotificationResponse: the sender pid differs between the runs.
        b'A' if body.len() >= 4 => [b"<pid>".as_slice(), &body[4..]].concat(),
        // RowDescription: tables created by the script get new OIDs each run.
        b'T' => mask_new_table_oids(body),
        _ => body.to_vec(),
    };
    format!("{} {}", char::from(tag), body.escape_ascii())
}

/// Zeroes the table OID of RowDescription fields that come from objects
/// created during the run (OID >= 16384, FirstNormalObjectId).
fn mask_new_table_oids(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    let mut pos = 2;
    let n = i16::from_be_bytes([body[0], body[1]]);
    for _ in 0..n {
        let name_end = pos + body[pos..].iter().position(|&b| b == 0).unwrap();
        let oid_at = name_end + 1;
        let oid = u32::from_be_bytes(body[oid_at..oid_at + 4].try_into().unwrap());
        if oid >= 16384 {
            out[oid_at..oid_at + 4].copy_from_slice(&[0; 4]);
        }
        pos = oid_at + 18;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcripts_are_byte_identical_through_airlock() {
    let env = Env::start().await;
    let mut files: Vec<_> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/transcripts"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pgt"))
            .collect();
    files.sort();
    assert!(files.len() >= 5, "transcripts missing");
    for file in files {
        let script = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        // A fresh schema state per file: each run cleans up after itself.
        let mut direct = RawClient::login(env.pg.port(), UPSTREAM_USER, UPSTREAM_PW, DB).await;
        let want = play(&mut direct, &script).await;
        let mut proxied = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
        let got = play(&mut proxied, &script).await;
        assert!(!want.is_empty(), "{name}: no output");
        if want != got {
            let diff: Vec<String> = want
                .iter()
                .zip(got.iter().chain(std::iter::repeat(&String::new())))
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .map(|(i, (a, b))| format!("#{i}\n  direct:  {a}\n  airlock: {b}"))
                .take(5)
                .collect();
            panic!(
                "{name}: airlock changed the backend's replies ({} vs {} messages)\n{}",
                want.len(),
                got.len(),
                diff.join("\n")
            );
        }
        eprintln!("{name}: {} backend messages identical", want.len());
        // Nothing airlock sends the agent may contain its upstream password.
        let leaked = proxied
            .received
            .windows(UPSTREAM_PW.len())
            .any(|w| w == UPSTREAM_PW.as_bytes());
        assert!(!leaked, "{name}: upstream password reached the client");
    }
}

//! A minimal raw Postgres client for wire-level tests: it logs in with
//! SCRAM, sends frontend messages built from a small JSON vocabulary, and
//! records every backend message as raw frames.
#![allow(dead_code)]

use bytes::{BufMut, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::frontend;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use airlock_protocol::pg::frame::{encode, split_frame, Frame};
use airlock_protocol::pg::startup::StartupMessage;

pub struct RawClient {
    pub tcp: TcpStream,
    pub rbuf: BytesMut,
    /// Every byte received since connecting, for leak checks.
    pub received: Vec<u8>,
}

impl RawClient {
    /// Connects and logs in; returns the client after the first ReadyForQuery.
    pub async fn login(port: u16, user: &str, password: &str, db: &str) -> RawClient {
        let params = [
            ("user", user),
            ("database", db),
            ("application_name", "transcript"),
        ];
        Self::login_with(port, &params, password)
            .await
            .unwrap_or_else(|e| panic!("login failed: {e}"))
    }

    /// Logs in with these startup parameters; the error's text when the
    /// login is refused.
    pub async fn login_with(
        port: u16,
        params: &[(&str, &str)],
        password: &str,
    ) -> Result<RawClient, String> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut c = RawClient {
            tcp,
            rbuf: BytesMut::new(),
            received: Vec::new(),
        };
        let mut out = BytesMut::new();
        StartupMessage::encode(params, &mut out);
        c.tcp.write_all(&out).await.unwrap();
        let mut scram = None;
        loop {
            let f = c.read().await.expect("server closed during login");
            match f.tag() {
                b'R' => {
                    let code = i32::from_be_bytes(f.body()[..4].try_into().unwrap());
                    let data = &f.body()[4..];
                    let mut out = BytesMut::new();
                    match code {
                        0 => continue,
                        10 => {
                            let s = ScramSha256::new(
                                password.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)
                                .unwrap();
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().unwrap();
                            s.update(data).unwrap();
                            frontend::sasl_response(s.message(), &mut out).unwrap();
                        }
                        12 => {
                            scram.take().unwrap().finish(data).unwrap();
                            continue;
                        }
                        other => panic!("unexpected auth request {other}"),
                    }
                    c.tcp.write_all(&out).await.unwrap();
                }
                b'Z' => return Ok(c),
                b'E' => return Err(String::from_utf8_lossy(f.body()).into_owned()),
                _ => {}
            }
        }
    }

    /// The next backend message, or `None` at EOF.
    pub async fn read(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = split_frame(&mut self.rbuf, 1 << 30).unwrap() {
                self.received.extend_from_slice(f.as_bytes());
                return Some(f);
            }
            if self.tcp.read_buf(&mut self.rbuf).await.unwrap_or(0) == 0 {
                return None;
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }

    /// [`Self::send`] to a peer that may have closed the connection.
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tcp.write_all(bytes).await
    }

    /// Reads until `n` ReadyForQuery messages have arrived (or EOF).
    pub async fn until_ready(&mut self, n: usize) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut seen = 0;
        while seen < n {
            let Some(f) = self.read().await else { break };
            if f.tag() == b'Z' {
                seen += 1;
            }
            frames.push(f);
        }
        frames
    }
}

fn s(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

fn cstr(b: &mut BytesMut, s: &str) {
    b.put_slice(s.as_bytes());
    b.put_u8(0);
}

/// Encodes one frontend message from its JSON form, e.g.
/// `{"Query": "SELECT 1"}` or `{"Bind": {"portal": "", "statement": "s", "params": ["1", null], "binary_results": true}}`.
pub fn encode_message(line: &str, out: &mut BytesMut) {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    let (name, arg) = v
        .as_object()
        .and_then(|o| o.iter().next())
        .expect("one key");
    match name.as_str() {
        "Query" => encode(b'Q', out, |b| cstr(b, arg.as_str().unwrap())),
        "Parse" => encode(b'P', out, |b| {
            cstr(b, &s(arg, "name"));
            cstr(b, &s(arg, "query"));
            b.put_i16(0);
        }),
        "Bind" => encode(b'B', out, |b| {
            cstr(b, &s(arg, "portal"));
            cstr(b, &s(arg, "statement"));
            b.put_i16(0);
            let params = arg
                .get("params")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            b.put_i16(params.len() as i16);
            for p in params {
                match p.as_str() {
                    Some(t) => {
                        b.put_i32(t.len() as i32);
                        b.put_slice(t.as_bytes());
                    }
                    None => b.put_i32(-1),
                }
            }
            let binary = arg
                .get("binary_results")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            b.put_i16(1);
            b.put_i16(i16::from(binary));
        }),
        "Describe" | "Close" => encode(if name == "Describe" { b'D' } else { b'C' }, out, |b| {
            b.put_u8(s(arg, "kind").bytes().next().unwrap_or(b'S'));
            cstr(b, &s(arg, "name"));
        }),
        "Execute" => encode(b'E', out, |b| {
            cstr(b, &s(arg, "portal"));
            b.put_i32(arg.get("max_rows").and_then(Value::as_i64).unwrap_or(0) as i32);
        }),
        "Sync" => encode(b'S', out, |_| {}),
        "Flush" => encode(b'H', out, |_| {}),
        "CopyData" => encode(b'd', out, |b| b.put_slice(arg.as_str().unwrap().as_bytes())),
        "CopyDone" => encode(b'c', out, |_| {}),
        "CopyFail" => encode(b'f', out, |b| cstr(b, arg.as_str().unwrap_or("fail"))),
        "Terminate" => encode(b'X', out, |_| {}),
        other => panic!("unknown message {other} in {line}"),
    }
}

/// Encodes frontend messages from their JSON forms ([`encode_message`]),
/// in order, into one buffer to send.
pub fn encode_all(lines: &[&str]) -> BytesMut {
    let mut out = BytesMut::new();
    for l in lines {
        encode_message(l, &mut out);
    }
    out
}

//! What a client that has not logged in can make airlock hold (DoS red
//! team): it has `limits.login_timeout` to log in, and its messages are
//! capped at 64 KiB until it has, whatever `max_message_size` allows.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::mysql::MyEnv;
use crate::common::*;

/// Reads until the peer closes (or 10 s pass); returns what came and how
/// long it took.
async fn until_closed(tcp: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return (got, start.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_clients_that_do_not_log_in_are_bounded() {
    let mut env = Env::start_with(EnvOptions {
        limits_toml: "login_timeout = \"1s\"\n".into(),
        ..Default::default()
    })
    .await;
    // Silent after connecting: closed at the login timeout.
    let mut silent = TcpStream::connect(("127.0.0.1", env.port)).await.unwrap();
    let (_, took) = until_closed(&mut silent).await;
    assert!(took < Duration::from_secs(5), "open for {took:?}");

    // Silent in the middle of SCRAM: told why, then closed.
    let mut stalled = TcpStream::connect(("127.0.0.1", env.port)).await.unwrap();
    let mut startup = bytes::BytesMut::new();
    airlock_protocol::pg::startup::StartupMessage::encode(
        &[("user", AGENT), ("database", DB)],
        &mut startup,
    );
    stalled.write_all(&startup).await.unwrap();
    let (got, took) = until_closed(&mut stalled).await;
    assert!(took < Duration::from_secs(5), "open for {took:?}");
    assert!(
        String::from_utf8_lossy(&got).contains("login_timeout"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    // A 1 MiB message before authenticating: refused before it is read
    // whole (max_message_size allows 64 MiB).
    let mut big = TcpStream::connect(("127.0.0.1", env.port)).await.unwrap();
    big.write_all(&startup).await.unwrap();
    let mut head = [0u8; 1];
    big.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], b'R', "an authentication request");
    let mut msg = vec![b'p'];
    msg.extend_from_slice(&(1024 * 1024 + 4u32).to_be_bytes());
    let _ = big.write_all(&msg).await;
    let (got, _) = until_closed(&mut big).await;
    assert!(
        String::from_utf8_lossy(&got).contains("08P01"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // Logging in still works.
    let c = env.agent().await;
    c.simple_query("SELECT 1").await.unwrap();
    drop(c);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_clients_that_do_not_log_in_are_bounded() {
    let mut env = MyEnv::start_limits(None, "login_timeout = \"1s\"\n").await;
    // Silent after the greeting: closed at the login timeout.
    let mut silent = TcpStream::connect(("127.0.0.1", env.port)).await.unwrap();
    let (greeting, took) = until_closed(&mut silent).await;
    assert!(took < Duration::from_secs(5), "open for {took:?}");
    assert!(!greeting.is_empty());

    // A 1 MiB packet as the handshake response: refused at once.
    let mut big = TcpStream::connect(("127.0.0.1", env.port)).await.unwrap();
    let mut head = [0u8; 4];
    big.read_exact(&mut head).await.unwrap();
    let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
    let mut greeting = vec![0u8; len];
    big.read_exact(&mut greeting).await.unwrap();
    let size = 1024 * 1024u32;
    let mut packet = size.to_le_bytes()[..3].to_vec();
    packet.push(1);
    let _ = big.write_all(&packet).await;
    let (got, _) = until_closed(&mut big).await;
    assert!(
        String::from_utf8_lossy(&got).contains("exceeds the limit of 65536 bytes"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let mut c = env.agent().await;
    use mysql_async::prelude::Queryable;
    let one: Option<i32> = c.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    drop(c);
    env.stop().await;
}

/// `identities.NAME.max_sessions` counts MySQL sessions too, and a
/// COM_CHANGE_USER to the identity (red-team finding: the MySQL listener
/// took no session slot, so three sessions of an identity capped at one
/// all ran).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_sessions_count_against_the_identity_limit() {
    use crate::common::mysql::{AGENT_PW, DB};
    use mysql_async::prelude::Queryable;
    let capped = format!(
        "[identities.capped]\nsecret = \"{scram}\"\nmysql_secret = \"{native}\"\ntargets = [\"{DB}\"]\nmax_sessions = 1\n",
        scram = airlock_protocol::pg::scram::make_verifier(AGENT_PW),
        native = airlock_protocol::mysql::auth::native_hash_string(AGENT_PW.as_bytes()),
    );
    let mut env = MyEnv::start_inner(None, "", "", &capped, "").await;
    let mut first = mysql_async::Conn::new(env.opts("capped", AGENT_PW))
        .await
        .unwrap();
    let e = mysql_async::Conn::new(env.opts("capped", AGENT_PW))
        .await
        .expect_err("a second session of the identity");
    assert!(
        matches!(&e, mysql_async::Error::Server(s) if s.code == 1203 && s.message.contains("max_sessions")),
        "{e:?}"
    );
    // COM_CHANGE_USER to it is refused too while the first runs.
    let mut other = env.agent().await;
    let changed = other
        .change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some("capped".into()))
                .with_pass(Some(AGENT_PW.into()))
                .with_db_name(Some(DB.into())),
        )
        .await;
    assert!(changed.is_err(), "COM_CHANGE_USER past the limit");
    drop(other);
    // The first still works; once it ends, the identity may log in again.
    let one: Option<i32> = first.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    first.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = mysql_async::Conn::new(env.opts("capped", AGENT_PW))
        .await
        .unwrap();
    let one: Option<i32> = again.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    drop(again);
    env.stop().await;
}

/// The login timeout covers the whole login: a client that sends its
/// startup packet just before it runs out has only what is left for the
/// authentication (red-team finding: the opening and the authentication
/// each had the full timeout, so a client held its slot for twice as long).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_login_timeout_counts_from_the_connection() {
    let mut env = Env::start_with(EnvOptions {
        limits_toml: "login_timeout = \"2s\"\n".into(),
        ..Default::default()
    })
    .await;
    let connected = Instant::now();
    let mut late = TcpStream::connect(("127.0.0.1", env.port)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let mut startup = bytes::BytesMut::new();
    airlock_protocol::pg::startup::StartupMessage::encode(
        &[("user", AGENT), ("database", DB)],
        &mut startup,
    );
    late.write_all(&startup).await.unwrap();
    let (got, _) = until_closed(&mut late).await;
    let open_for = connected.elapsed();
    // At 2 s, not at 1.8 + 2 s.
    assert!(
        open_for < Duration::from_millis(3200),
        "open for {open_for:?}"
    );
    assert!(
        String::from_utf8_lossy(&got).contains("login_timeout"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    env.stop().await;
}

/// Over `limits.max_client_connections`, a Postgres client is told why
/// (53300) once it sends its startup packet; while `MAX_OVER_LIMIT` such
/// connections are already waiting, one more is closed at once without an
/// answer, so a flood of connections does not make airlock hold a
/// descriptor for each for seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_and_bounded() {
    let mut env = Env::start_with(EnvOptions {
        // (Every connection here is from one address: its own limit off.)
        limits_toml: "max_client_connections = 1\nmax_pending_logins_per_address = 0\n".into(),
        ..Default::default()
    })
    .await;
    let _holder = env.agent().await;
    let mut startup = bytes::BytesMut::new();
    airlock_protocol::pg::startup::StartupMessage::encode(
        &[("user", AGENT), ("database", DB)],
        &mut startup,
    );
    let refused = || async {
        let mut tcp = TcpStream::connect(("127.0.0.1", env.port)).await.unwrap();
        let _ = tcp.write_all(&startup).await;
        String::from_utf8_lossy(&until_closed(&mut tcp).await.0).into_owned()
    };
    let told = refused().await;
    assert!(told.contains("53300"), "{told}");

    let mut waiting = Vec::new();
    for _ in 0..airlock::listener::MAX_OVER_LIMIT {
        waiting.push(TcpStream::connect(("127.0.0.1", env.port)).await.unwrap());
    }
    // The listener has accepted them all once a probe is closed unanswered.
    wait_for(
        "a connection past the waiting ones to be closed unanswered",
        || async { refused().await.is_empty().then_some(()) },
    )
    .await;
    drop(waiting);
    wait_for("over-limit connections to be told why again", || async {
        refused().await.contains("53300").then_some(())
    })
    .await;
    env.stop().await;
}

/// One address cannot hold every login slot (resource-exhaustion finding:
/// 1,100 silent connections from one host kept every agent out for
/// `login_timeout`): past `max_pending_logins_per_address` connections
/// that have not logged in, its next one is closed at once, unanswered,
/// while other addresses log in; a place comes back when a login ends
/// or succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_login_slot() {
    let mut env = Env::start_with(EnvOptions {
        limits_toml: "max_pending_logins_per_address = 3\nlogin_timeout = \"30s\"\n".into(),
        ..Default::default()
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(("127.0.0.1", env.port)).await.unwrap());
    }
    // The listener has counted them once a fourth is closed unanswered.
    let mut startup = bytes::BytesMut::new();
    airlock_protocol::pg::startup::StartupMessage::encode(
        &[("user", AGENT), ("database", DB)],
        &mut startup,
    );
    wait_for("a fourth connection to be closed unanswered", || async {
        let mut tcp = TcpStream::connect(("127.0.0.1", env.port)).await.unwrap();
        let _ = tcp.write_all(&startup).await;
        let (got, took) = until_closed(&mut tcp).await;
        (got.is_empty() && took < Duration::from_secs(5)).then_some(())
    })
    .await;
    // Another address logs in meanwhile.
    let port = env.port;
    let from = |ip: [u8; 4]| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((ip, 0).into()).unwrap();
        socket.connect(([127, 0, 0, 1], port).into()).await.unwrap()
    };
    let (other, conn) = env
        .agent_config()
        .connect_raw(from([127, 0, 0, 2]).await, tokio_postgres::NoTls)
        .await
        .expect("another address logs in");
    tokio::spawn(conn);
    other.simple_query("SELECT 1").await.unwrap();
    // A silent connection that goes gives its place back.
    silent.pop();
    let first = wait_for("a login from the first address", || async {
        env.agent_config().connect(tokio_postgres::NoTls).await.ok()
    })
    .await;
    tokio::spawn(first.1);
    first.0.simple_query("SELECT 1").await.unwrap();
    // And a login that succeeded holds none: a second one gets in too.
    let (second, conn) = env
        .agent_config()
        .connect(tokio_postgres::NoTls)
        .await
        .expect("logged-in sessions do not count");
    tokio::spawn(conn);
    second.simple_query("SELECT 1").await.unwrap();
    drop(silent);
    env.stop().await;
}

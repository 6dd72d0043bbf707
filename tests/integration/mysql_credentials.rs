//! Ephemeral upstream credentials on MariaDB (issue 6): each session runs as
//! a user that exists only for that session, created with the template
//! role's privileges and dropped by the broker.
//!
//! Tests named `session_*` go through airlock; the others call
//! [`MyBroker`] directly against a real server.

use crate::common::mysql as mysql_env;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use airlock::credentials::{MyBroker, MyLease};
use airlock::policy::Principal;
use mysql_env::*;

/// The direct-broker tests' prefix, apart from airlock's own.
const TEST_PREFIX: &str = "airlock_tst_";

/// Makes `airlock_svc` a broker and creates the template roles and tables:
/// `items` readable by `agent_ro`, `hidden` by nobody but the broker,
/// `notes` writable by `agent_rw`.
const SETUP: &str = "
    GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO 'airlock_svc'@'%';
    GRANT SELECT ON mysql.user TO 'airlock_svc'@'%';
    CREATE TABLE app.items (id int, name text);
    INSERT INTO app.items VALUES (1, 'one'), (2, 'two');
    CREATE TABLE app.hidden (x int);
    CREATE TABLE app.notes (t text);
    CREATE ROLE agent_ro;
    CREATE ROLE agent_rw;
    GRANT SELECT ON app.items TO agent_ro;
    GRANT SELECT, INSERT ON app.notes TO agent_rw;
    GRANT agent_ro TO 'airlock_svc'@'%' WITH ADMIN OPTION;
    GRANT agent_rw TO 'airlock_svc'@'%' WITH ADMIN OPTION;
";

async fn start(ttl: &str) -> MyEnv {
    let target = format!(
        "credentials = \"ephemeral\"\n[targets.{DB}.ephemeral]\ntemplate_role = \"agent_ro\"\n\
         ttl = \"{ttl}\"\n[targets.{DB}.ephemeral.group_roles]\nwriters = \"agent_rw\"\n"
    );
    MyEnv::start_with(None, &target, SETUP).await
}

fn broker(env: &MyEnv, ttl: Duration, instance: &str) -> Arc<MyBroker> {
    let config = env
        .airlock
        .as_ref()
        .expect("airlock running")
        .proxy
        .config();
    let mut t = config.targets.get(DB).expect("target app").clone();
    t.ephemeral.name_prefix = TEST_PREFIX.into();
    t.ephemeral.ttl = ttl;
    Arc::new(MyBroker::new(DB, &t, None, instance))
}

fn principal(groups: &[&str]) -> Principal {
    Principal {
        identity: AGENT.into(),
        user: Some("tester".into()),
        model: None,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        target: DB.into(),
    }
}

fn root(env: &MyEnv, sql: &str) -> String {
    env.db.admin_sql(sql).unwrap()
}

fn user_exists(env: &MyEnv, name: &str) -> bool {
    !root(
        env,
        &format!("SELECT 1 FROM mysql.user WHERE User = '{name}'"),
    )
    .trim()
    .is_empty()
}

fn count_prefixed(env: &MyEnv, prefix: &str) -> usize {
    root(
        env,
        &format!("SELECT count(*) FROM mysql.user WHERE User LIKE '{prefix}%'"),
    )
    .trim()
    .parse()
    .unwrap()
}

/// Polls until `done` holds, for at most 10 s.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

/// Logs in directly to MariaDB as the lease's user.
async fn connect_as(
    env: &MyEnv,
    user: &str,
    password: &str,
) -> mysql_async::Result<mysql_async::Conn> {
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(env.db.port())
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some(DB))
        .prefer_socket(false)
        .into();
    mysql_async::Conn::new(opts).await
}

async fn current_user(c: &mut mysql_async::Conn) -> String {
    let u: Option<String> = c.query_first("SELECT CURRENT_USER()").await.unwrap();
    let u = u.expect("a row");
    u.split('@').next().unwrap_or_default().to_owned()
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

// ------------------------------------------------------------ the broker alone

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_has_only_the_template_role_and_release_drops_it() {
    let env = start("15m").await;
    let broker = broker(&env, Duration::from_secs(900), "test-a");
    let lease = broker.lease(&principal(&[])).await.expect("lease");
    assert!(lease.user.starts_with(TEST_PREFIX), "{}", lease.user);
    assert!(user_exists(&env, &lease.user));
    let grants = root(&env, &format!("SHOW GRANTS FOR '{}'@'%'", lease.user));
    let grants: Vec<&str> = grants.lines().collect();
    assert_eq!(grants.len(), 3, "{grants:?}");
    assert!(
        grants.iter().any(|g| g.starts_with("GRANT `agent_ro` TO")),
        "{grants:?}"
    );
    assert!(
        grants
            .iter()
            .any(|g| g.starts_with("GRANT USAGE ON *.* TO")),
        "{grants:?}"
    );
    assert!(
        grants
            .iter()
            .any(|g| g.starts_with("SET DEFAULT ROLE `agent_ro`")),
        "{grants:?}"
    );

    // Its password works, with the template's privileges and no more.
    let mut c = connect_as(&env, &lease.user, lease.password.expose())
        .await
        .expect("the ephemeral user logs in");
    let n: Option<i64> = c.query_first("SELECT count(*) FROM items").await.unwrap();
    assert_eq!(n, Some(2));
    let e = c.query_drop("SELECT * FROM hidden").await.unwrap_err();
    assert_eq!(server_code(&e), Some(1142), "{e}");
    let e = c
        .query_drop("INSERT INTO notes VALUES ('x')")
        .await
        .unwrap_err();
    assert_eq!(server_code(&e), Some(1142), "{e}");

    let (user, password) = (lease.user.clone(), lease.password.expose().to_owned());
    lease.release().await;
    assert!(!user_exists(&env, &user));
    // Its connection was killed, and its password no longer works.
    assert!(c.query_drop("SELECT 1").await.is_err());
    let e = connect_as(&env, &user, &password)
        .await
        .expect_err("refused");
    assert_eq!(server_code(&e), Some(1045), "{e}");
    assert_eq!(broker.live_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_roles_pick_the_template_and_agents_get_distinct_users() {
    let env = start("15m").await;
    let broker = broker(&env, Duration::from_secs(900), "test-b");
    let writer = broker.lease(&principal(&["writers"])).await.expect("lease");
    let reader = broker.lease(&principal(&["readers"])).await.expect("lease");
    assert_ne!(writer.user, reader.user);
    assert_eq!(writer.template, "agent_rw");
    assert_eq!(reader.template, "agent_ro");
    let mut c = connect_as(&env, &writer.user, writer.password.expose())
        .await
        .unwrap();
    c.query_drop("INSERT INTO notes VALUES ('hello')")
        .await
        .unwrap();
    drop(c);
    writer.release().await;
    reader.release().await;
    assert_eq!(count_prefixed(&env, TEST_PREFIX), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janitor_drops_leftovers_and_expired_users_only() {
    let env = start("15m").await;
    // A crashed airlock's lease: same instance, no longer live here.
    let crashed = broker(&env, Duration::from_secs(900), "test-j");
    let leftover = crashed.lease(&principal(&[])).await.expect("lease");
    let leftover_user = leftover.user.clone();
    std::mem::forget(leftover); // never released, like a kill -9
                                // Another instance's live lease, not expired: left alone.
    let other = broker(&env, Duration::from_secs(900), "other-instance");
    let alive = other.lease(&principal(&[])).await.expect("lease");
    // Another instance's lease that expired (TTL 1 s, its timer stopped by
    // dropping the broker's last reference before it fires).
    let short = broker(&env, Duration::from_secs(1), "expiring-one");
    let expired = short.lease(&principal(&[])).await.expect("lease");
    let expired_user = expired.user.clone();
    std::mem::forget(expired);
    drop(short);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let restarted = broker(&env, Duration::from_secs(900), "test-j");
    let dropped = restarted.janitor_pass().await.expect("janitor pass");
    assert_eq!(dropped, 2);
    assert!(!user_exists(&env, &leftover_user));
    assert!(!user_exists(&env, &expired_user));
    assert!(user_exists(&env, &alive.user));
    alive.release().await;
    assert_eq!(count_prefixed(&env, TEST_PREFIX), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_leases_create_and_drop_cleanly() {
    let env = start("15m").await;
    let broker = broker(&env, Duration::from_secs(900), "test-c");
    let leases = futures_util::future::join_all((0..20).map(|_| {
        let b = Arc::clone(&broker);
        async move { b.lease(&principal(&[])).await }
    }))
    .await;
    let leases: Vec<MyLease> = leases.into_iter().map(|l| l.expect("lease")).collect();
    let names: std::collections::HashSet<&str> = leases.iter().map(|l| l.user.as_str()).collect();
    assert_eq!(names.len(), 20);
    assert_eq!(count_prefixed(&env, TEST_PREFIX), 20);
    futures_util::future::join_all(leases.into_iter().map(MyLease::release)).await;
    assert_eq!(count_prefixed(&env, TEST_PREFIX), 0);
    assert_eq!(broker.live_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_neither_password_nor_user() {
    let env = start("15m").await;
    let config = env.airlock.as_ref().unwrap().proxy.config();
    let mut t = config.targets.get(DB).unwrap().clone();
    t.ephemeral.name_prefix = TEST_PREFIX.into();
    t.ephemeral.template_role = "no_such_role".into();
    let e = MyBroker::new(DB, &t, None, "test-e")
        .lease(&principal(&[]))
        .await
        .unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(UPSTREAM_PW), "{shown}");
    assert!(!shown.contains(TEST_PREFIX), "{shown}");
    // The half-made user was dropped again.
    assert!(eventually(|| count_prefixed(&env, TEST_PREFIX) == 0).await);

    // A broker that cannot log in fails the same way, without its password.
    t.ephemeral.template_role = "agent_ro".into();
    t.password = Some(airlock::secret::Secret::new("wrong-password".into()));
    let e = MyBroker::new(DB, &t, None, "test-e")
        .lease(&principal(&[]))
        .await
        .unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("wrong-password"), "{shown}");
}

// ------------------------------------------------------------ through airlock

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_runs_as_its_own_ephemeral_user() {
    let env = start("15m").await;
    let mut a = env.agent().await;
    let mut b = env.agent().await;
    let ua = current_user(&mut a).await;
    let ub = current_user(&mut b).await;
    assert!(ua.starts_with("airlock_eph_"), "session runs as {ua}");
    assert!(ub.starts_with("airlock_eph_"), "session runs as {ub}");
    assert_ne!(ua, ub);
    assert!(user_exists(&env, &ua));

    let n: Option<i64> = a.query_first("SELECT count(*) FROM items").await.unwrap();
    assert_eq!(n, Some(2));
    let e = a.query_drop("SELECT * FROM hidden").await.unwrap_err();
    assert_eq!(server_code(&e), Some(1142), "{e}");

    a.disconnect().await.unwrap();
    assert!(
        eventually(|| !user_exists(&env, &ua)).await,
        "user outlived its session"
    );
    assert!(user_exists(&env, &ub), "the other session's user went too");
    drop(b);
    assert!(
        eventually(|| !user_exists(&env, &ub)).await,
        "user outlived its session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_is_cut_when_its_ttl_expires() {
    let env = start("2s").await;
    let mut c = env.agent().await;
    let user = current_user(&mut c).await;
    assert!(user.starts_with("airlock_eph_"), "session runs as {user}");
    assert!(
        eventually(|| !user_exists(&env, &user)).await,
        "expired user not dropped"
    );
    let e = c
        .query_drop("SELECT 1")
        .await
        .expect_err("the session outlived its TTL");
    let text = e.to_string();
    assert!(text.contains("credential expired"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_twenty_concurrent_sessions_create_and_drop_cleanly() {
    let env = start("15m").await;
    let sessions = futures_util::future::join_all((0..20).map(|_| async {
        let mut c = env.agent().await;
        let user = current_user(&mut c).await;
        let n: Option<i64> = c.query_first("SELECT count(*) FROM items").await.unwrap();
        assert_eq!(n, Some(2));
        (c, user)
    }))
    .await;
    let names: std::collections::HashSet<&str> = sessions.iter().map(|(_, u)| u.as_str()).collect();
    assert_eq!(names.len(), 20);
    assert_eq!(count_prefixed(&env, "airlock_eph_"), 20);
    futures_util::future::join_all(sessions.into_iter().map(|(c, _)| c.disconnect())).await;
    assert!(
        eventually(|| count_prefixed(&env, "airlock_eph_") == 0).await,
        "users outlived their sessions"
    );
}

/// Forwards one connection to airlock, recording what airlock sends.
async fn recording_proxy(airlock_port: u16) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = tokio::net::TcpStream::connect(("127.0.0.1", airlock_port))
            .await
            .unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let up = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut cr, &mut sw).await;
            let _ = sw.shutdown().await;
        });
        let mut seen = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        up.abort();
        seen
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_bytes_never_contain_the_broker_credential() {
    let env = start("15m").await;
    let (port, recorded) = recording_proxy(env.port).await;
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(env.opts(AGENT, AGENT_PW))
        .tcp_port(port)
        .into();
    let mut c = mysql_async::Conn::new(opts).await.unwrap();
    let user = current_user(&mut c).await;
    assert!(user.starts_with("airlock_eph_"));
    let _ = c.query_drop("SELECT * FROM hidden").await;
    let _ = c.query_drop("SELECT User, Password FROM mysql.user").await;
    let _ = c.query_drop("SHOW GRANTS").await;
    let _ = c
        .query_drop("SELECT * FROM information_schema.PROCESSLIST")
        .await;
    c.disconnect().await.unwrap();
    let seen = String::from_utf8_lossy(&recorded.await.unwrap()).into_owned();
    assert!(seen.contains("airlock_eph_"), "not an ephemeral session");
    assert!(!seen.contains(UPSTREAM_PW));
    assert!(
        !seen.contains(UPSTREAM_USER),
        "the broker's name reached the agent"
    );

    // A broker that cannot create users: a clear error, and no session
    // with the broker's credential.
    root(&env, "DROP ROLE agent_ro");
    let e = mysql_async::Conn::new(env.opts(AGENT, AGENT_PW))
        .await
        .expect_err("a session started without an ephemeral user");
    let text = e.to_string();
    assert!(
        text.contains("airlock could not obtain a database credential"),
        "{text}"
    );
    assert!(!text.contains(UPSTREAM_PW), "{text}");
}

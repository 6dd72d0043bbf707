//! Ephemeral upstream credentials (issue 6): each session runs as a database
//! user that exists only for that session, created and dropped by the
//! broker credential.
//!
//! Tests named `session_*` go through airlock and need the session wiring
//! (lease at login, release at the end, TTL timer); the others call
//! [`Broker`] directly against a real server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::raw::RawClient;
use crate::common::*;
use airlock::config::Target;
use airlock::credentials::{Broker, Lease};
use airlock::policy::Principal;

const TEMPLATE: &str = "agent_ro";
/// The prefix of the direct-broker tests, apart from airlock's own
/// (`airlock_eph_`), so that airlock's janitor never races them.
const TEST_PREFIX: &str = "airlock_tst_";

fn ephemeral_toml(ttl: &str) -> String {
    format!(
        "credentials = \"ephemeral\"\n[targets.app.ephemeral]\ntemplate_role = \"{TEMPLATE}\"\n\
         ttl = \"{ttl}\"\n[targets.app.ephemeral.group_roles]\nwriters = \"agent_rw\"\n"
    )
}

/// Makes `airlock_svc` a broker and creates the template roles and tables:
/// `items` readable by `agent_ro`, `hidden` by nobody but its owner,
/// `notes` writable by `agent_rw`.
async fn start(ttl: &str) -> Env {
    start_opts(ttl, None).await
}

/// [`start`] under these guardrails (without, every statement is allowed).
async fn start_with_rules(ttl: &str, rules: &str) -> Env {
    start_opts(ttl, Some(rules.to_owned())).await
}

async fn start_opts(ttl: &str, rules_toml: Option<String>) -> Env {
    let env = Env::start_with(EnvOptions {
        target_toml: ephemeral_toml(ttl),
        rules_toml,
        ..Default::default()
    })
    .await;
    env.pg
        .psql_admin(
            "ALTER ROLE airlock_svc CREATEROLE;
             CREATE ROLE agent_ro NOLOGIN;
             CREATE ROLE agent_rw NOLOGIN;
             GRANT agent_ro TO airlock_svc WITH ADMIN OPTION;
             GRANT agent_rw TO airlock_svc WITH ADMIN OPTION;",
        )
        .unwrap();
    env.pg
        .psql_db(
            DB,
            "CREATE TABLE items (id int, name text);
             INSERT INTO items VALUES (1, 'one'), (2, 'two');
             CREATE TABLE hidden (x int);
             CREATE TABLE notes (t text);
             GRANT SELECT ON items TO agent_ro;
             GRANT SELECT, INSERT ON notes TO agent_rw;",
        )
        .unwrap();
    env
}

/// The app target as airlock loaded it, with the test prefix and `ttl`.
fn target(env: &Env, ttl: Duration) -> Target {
    let config = env
        .airlock
        .as_ref()
        .expect("airlock running")
        .proxy
        .config();
    let mut t = config.targets.get(DB).expect("target app").clone();
    t.ephemeral.name_prefix = TEST_PREFIX.into();
    t.ephemeral.ttl = ttl;
    t
}

fn broker(env: &Env, ttl: Duration, instance: &str) -> Arc<Broker> {
    Arc::new(Broker::new(DB, &target(env, ttl), None, instance))
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

fn role_exists(env: &Env, name: &str) -> bool {
    let out = env
        .pg
        .psql_admin(&format!("SELECT 1 FROM pg_roles WHERE rolname = '{name}'"))
        .unwrap();
    !out.trim().is_empty()
}

/// Roles `name` is a member of, comma-separated, sorted.
fn memberships(env: &Env, name: &str) -> String {
    env.pg
        .psql_admin(&format!(
            "SELECT string_agg(r.rolname, ',' ORDER BY r.rolname) FROM pg_auth_members m \
             JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
             WHERE u.rolname = '{name}'"
        ))
        .unwrap()
        .trim()
        .to_owned()
}

/// Waits up to 3 s for the role to disappear.
async fn gone(env: &Env, name: &str) -> bool {
    for _ in 0..30 {
        if !role_exists(env, name) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn count_prefixed(env: &Env, prefix: &str) -> usize {
    env.pg
        .psql_admin(&format!(
            "SELECT count(*) FROM pg_roles WHERE starts_with(rolname::text, '{prefix}')"
        ))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Logs in directly as the lease's user.
async fn connect_as(
    env: &Env,
    lease: &Lease,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_with(env, &lease.user, lease.password.expose()).await
}

async fn connect_with(
    env: &Env,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(env.pg.port())
        .user(user)
        .password(password)
        .dbname(DB)
        .connect_timeout(Duration::from_secs(5));
    let (client, conn) = c.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

// ---------------------------------------------------------------- direct

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_is_a_template_member_and_release_drops_it() {
    let env = start("15m").await;
    let broker = broker(&env, Duration::from_secs(900), "test-a");

    let t = Instant::now();
    let lease = broker.lease(&principal(&[])).await.expect("lease");
    let first = t.elapsed();
    let t = Instant::now();
    let second = broker.lease(&principal(&[])).await.expect("lease");
    let reused = t.elapsed();
    eprintln!("lease latency: first (with broker login) {first:?}, reused connection {reused:?}");

    assert!(lease.user.starts_with(TEST_PREFIX), "{}", lease.user);
    assert_eq!(lease.user.len(), TEST_PREFIX.len() + 24);
    assert_ne!(lease.user, second.user);
    assert!(lease.password.expose().len() >= 32);
    assert_eq!(lease.template, TEMPLATE);
    assert!(lease.expires_at.is_some());
    assert!(role_exists(&env, &lease.user));
    assert_eq!(memberships(&env, &lease.user), TEMPLATE);
    let attrs = env
        .pg
        .psql_admin(&format!(
            "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolconnlimit, \
             rolvaliduntil > now() + interval '14 minutes', \
             shobj_description(oid, 'pg_authid') LIKE 'airlock:ephemeral:test-a:%' \
             FROM pg_roles WHERE rolname = '{}'",
            lease.user
        ))
        .unwrap();
    assert_eq!(attrs.trim(), "t|f|f|f|2|t|t");
    // The server stored a SCRAM verifier, never the clear password.
    let stored = env
        .pg
        .psql_admin(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = '{}'",
            lease.user
        ))
        .unwrap();
    assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");

    // It can do what the template can, and nothing more.
    let client = connect_as(&env, &lease).await.expect("log in as the lease");
    let me: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(me, lease.user);
    let n: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let e = client.query("SELECT * FROM hidden", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    let e = client
        .execute("INSERT INTO notes VALUES ('x')", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    let e = client
        .batch_execute("CREATE ROLE sneaky LOGIN")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");

    // Release: its backend is terminated, the role dropped, the password dead.
    let user = lease.user.clone();
    let password = lease.password.clone();
    let t = Instant::now();
    lease.release().await;
    eprintln!("release latency (one live backend): {:?}", t.elapsed());
    assert!(
        !role_exists(&env, &user),
        "release returned before the drop"
    );
    let mut alive = true;
    for _ in 0..20 {
        if client.query_one("SELECT 1", &[]).await.is_err() {
            alive = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive, "the backend outlived its user");
    let Err(e) = connect_with(&env, &user, password.expose()).await else {
        panic!("the dropped user could still log in");
    };
    assert_eq!(sqlstate(&e), "28P01", "{e}");

    let t = Instant::now();
    second.release().await;
    eprintln!("release latency (no backend): {:?}", t.elapsed());
    assert_eq!(count_prefixed(&env, TEST_PREFIX), 0);
    assert_eq!(broker.live_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_roles_pick_the_template() {
    let env = start("15m").await;
    let broker = broker(&env, Duration::from_secs(900), "test-g");
    let lease = broker
        .lease(&principal(&["readers", "writers"]))
        .await
        .expect("lease");
    assert_eq!(lease.template, "agent_rw");
    assert_eq!(memberships(&env, &lease.user), "agent_rw");
    let client = connect_as(&env, &lease).await.unwrap();
    client
        .execute("INSERT INTO notes VALUES ('x')", &[])
        .await
        .unwrap();
    let e = client.query("SELECT * FROM items", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    lease.release().await;
    assert_eq!(count_prefixed(&env, TEST_PREFIX), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_lease_releases_it() {
    let env = start("15m").await;
    let broker = broker(&env, Duration::from_secs(900), "test-d");
    let lease = broker.lease(&principal(&[])).await.unwrap();
    let user = lease.user.clone();
    drop(lease);
    assert!(gone(&env, &user).await, "a dropped lease was not revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_terminates_backends_and_drops_the_role() {
    let env = start("15m").await;
    let broker = broker(&env, Duration::from_secs(2), "test-t");
    let lease = broker.lease(&principal(&[])).await.unwrap();
    let client = connect_as(&env, &lease).await.unwrap();
    client.query_one("SELECT 1", &[]).await.unwrap();
    let started = Instant::now();
    let mut cut = None;
    while started.elapsed() < Duration::from_secs(6) {
        if client.query_one("SELECT 1", &[]).await.is_err() {
            cut = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cut = cut.expect("the backend outlived the TTL");
    eprintln!("backend terminated {cut:?} after login (ttl 2s)");
    // TTL plus the broker's grace (0.5 s), plus slack.
    assert!(cut < Duration::from_millis(3500), "cut after {cut:?}");
    assert!(gone(&env, &lease.user).await, "expired role not dropped");
    assert_eq!(broker.live_count(), 0);
    lease.release().await; // a no-op now
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janitor_drops_leftovers_of_a_crashed_airlock() {
    let env = start("15m").await;
    // A crashed airlock: its lease is never released.
    let crashed = broker(&env, Duration::from_secs(600), "host-1");
    let orphan = crashed.lease(&principal(&[])).await.unwrap();
    let orphan_user = orphan.user.clone();
    std::mem::forget(orphan);
    // Another airlock's roles: one expired, one still valid; and roles that
    // only look like airlock's.
    let far = 4_102_444_800u64; // 2100-01-01
    env.pg
        .psql_admin(&format!(
            "CREATE ROLE {p}expired LOGIN ROLE airlock_svc;
             COMMENT ON ROLE {p}expired IS 'airlock:ephemeral:host-2:1';
             CREATE ROLE {p}valid LOGIN ROLE airlock_svc;
             COMMENT ON ROLE {p}valid IS 'airlock:ephemeral:host-2:{far}';
             CREATE ROLE {p}nocomment LOGIN;
             CREATE ROLE unprefixed LOGIN; COMMENT ON ROLE unprefixed IS 'airlock:ephemeral:host-1:1';
             CREATE ROLE airlockxtstxlike LOGIN; COMMENT ON ROLE airlockxtstxlike IS 'airlock:ephemeral:host-1:1';",
            p = TEST_PREFIX
        ))
        .unwrap();

    // The restarted airlock (same instance id) with one live lease of its own.
    let restarted = broker(&env, Duration::from_secs(600), "host-1");
    let live = restarted.lease(&principal(&[])).await.unwrap();
    let t = Instant::now();
    let dropped = restarted.janitor_pass().await.expect("janitor pass");
    eprintln!("janitor pass (2 drops): {:?}", t.elapsed());
    assert_eq!(dropped, 2);
    assert!(!role_exists(&env, &orphan_user));
    assert!(!role_exists(&env, &format!("{TEST_PREFIX}expired")));
    assert!(role_exists(&env, &format!("{TEST_PREFIX}valid")));
    assert!(role_exists(&env, &format!("{TEST_PREFIX}nocomment")));
    assert!(role_exists(&env, "unprefixed"));
    assert!(
        role_exists(&env, "airlockxtstxlike"),
        "prefix matched as a LIKE pattern"
    );
    assert!(
        role_exists(&env, &live.user),
        "janitor dropped a live lease"
    );
    assert_eq!(restarted.janitor_pass().await.unwrap(), 0);
    live.release().await;
}

/// The broker's queries never run a function an agent made (audit
/// finding: `public.shobj_description(oid, text)` beat the built-in
/// `(oid, name)` for the janitor's `'pg_authid'` literal, and ran as the
/// broker, which can create roles). Its connection searches the server's
/// own schemas only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_runs_no_function_an_agent_made() {
    let env = start("15m").await;
    env.pg
        .psql_db(
            DB,
            "CREATE FUNCTION public.shobj_description(o oid, c text) RETURNS text \
             LANGUAGE plpgsql AS $f$ BEGIN \
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hijacked') THEN \
             CREATE ROLE hijacked; END IF; \
             RETURN pg_catalog.shobj_description(o, c::name); END $f$; \
             GRANT EXECUTE ON FUNCTION public.shobj_description(oid, text) TO PUBLIC;",
        )
        .unwrap();
    let b = broker(&env, Duration::from_secs(600), "host-1");
    let lease = b.lease(&principal(&[])).await.unwrap();
    b.janitor_pass().await.expect("janitor pass");
    lease.release().await;
    assert!(
        !role_exists(&env, "hijacked"),
        "the broker ran the agent's function"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_leases_create_and_drop_cleanly() {
    let env = start("15m").await;
    let broker = broker(&env, Duration::from_secs(900), "test-c");
    let t = Instant::now();
    let leases = futures_util::future::join_all((0..50).map(|_| {
        let b = Arc::clone(&broker);
        async move { b.lease(&principal(&[])).await }
    }))
    .await;
    let created = t.elapsed();
    let leases: Vec<Lease> = leases.into_iter().map(|l| l.expect("lease")).collect();
    let names: std::collections::HashSet<&str> = leases.iter().map(|l| l.user.as_str()).collect();
    assert_eq!(names.len(), 50);
    assert_eq!(count_prefixed(&env, TEST_PREFIX), 50);
    assert_eq!(broker.live_count(), 50);
    let t = Instant::now();
    futures_util::future::join_all(leases.into_iter().map(Lease::release)).await;
    let dropped = t.elapsed();
    eprintln!(
        "50 concurrent leases: created in {created:?} ({:?} each), released in {dropped:?}",
        created / 50
    );
    assert_eq!(count_prefixed(&env, TEST_PREFIX), 0);
    assert_eq!(broker.live_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_neither_password_nor_user() {
    let env = start("15m").await;
    let mut t = target(&env, Duration::from_secs(60));
    t.ephemeral.template_role = "no_such_role".into();
    let broker = Broker::new(DB, &t, None, "test-e");
    let e = broker.lease(&principal(&[])).await.unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(UPSTREAM_PW), "{shown}");
    assert!(!shown.contains(TEST_PREFIX), "{shown}");
    let client = e.client_error(DB).to_string();
    assert_eq!(
        client,
        "airlock could not obtain a database credential for \"app\""
    );
    assert_eq!(count_prefixed(&env, TEST_PREFIX), 0);

    // A broker that cannot log in fails the same way, without its password.
    let mut t = target(&env, Duration::from_secs(60));
    t.password = Some(airlock::secret::Secret::new("wrong-password".into()));
    let e = Broker::new(DB, &t, None, "test-e")
        .lease(&principal(&[]))
        .await
        .unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("wrong-password"), "{shown}");
}

// ---------------------------------------------------------------- through airlock

async fn current_user(c: &tokio_postgres::Client) -> String {
    c.query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_runs_as_its_own_ephemeral_user() {
    let env = start("15m").await;
    let a = env.agent().await;
    let b = env.agent().await;
    let ua = current_user(&a).await;
    let ub = current_user(&b).await;
    assert!(ua.starts_with("airlock_eph_"), "session runs as {ua}");
    assert!(ub.starts_with("airlock_eph_"), "session runs as {ub}");
    assert_ne!(ua, ub);
    assert!(role_exists(&env, &ua));
    assert_eq!(memberships(&env, &ua), TEMPLATE);

    let n: i64 = a
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let e = a.query("SELECT * FROM hidden", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "42501");

    drop(a);
    assert!(gone(&env, &ua).await, "role outlived its session");
    assert!(role_exists(&env, &ub), "the other session's role went too");
    drop(b);
    assert!(gone(&env, &ub).await, "role outlived its session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_is_cut_when_its_ttl_expires() {
    let env = start("2s").await;
    let c = env.agent().await;
    let user = current_user(&c).await;
    assert!(user.starts_with("airlock_eph_"), "session runs as {user}");
    let started = Instant::now();
    let mut cut = None;
    while started.elapsed() < Duration::from_secs(6) {
        if c.query_one("SELECT 1", &[]).await.is_err() {
            cut = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cut = cut.expect("the session outlived its TTL");
    eprintln!("session cut {cut:?} after it started (TTL 2 s)");
    assert!(gone(&env, &user).await, "expired role not dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_fifty_concurrent_sessions_create_and_drop_their_users() {
    let env = start("15m").await;
    let sessions = futures_util::future::join_all((0..50).map(|_| async {
        let c = env.agent().await;
        let user = current_user(&c).await;
        let n: i64 = c
            .query_one("SELECT count(*) FROM items", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2);
        (c, user)
    }))
    .await;
    let names: std::collections::HashSet<&str> = sessions.iter().map(|(_, u)| u.as_str()).collect();
    assert_eq!(names.len(), 50, "sessions shared a user");
    assert!(names.iter().all(|u| u.starts_with("airlock_eph_")));
    assert_eq!(count_prefixed(&env, "airlock_eph_"), 50);
    drop(sessions);
    let mut left = count_prefixed(&env, "airlock_eph_");
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = count_prefixed(&env, "airlock_eph_");
    }
    assert_eq!(left, 0, "users outlived their sessions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_bytes_never_contain_the_broker_password() {
    let env = start("15m").await;
    let mut raw = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    let mut out = bytes::BytesMut::new();
    for q in [
        r#"{"Query": "SELECT current_user, session_user"}"#,
        r#"{"Query": "SELECT * FROM hidden"}"#,
        r#"{"Query": "SELECT rolname, rolpassword FROM pg_authid"}"#,
        r#"{"Query": "SHOW ALL"}"#,
    ] {
        crate::common::raw::encode_message(q, &mut out);
    }
    raw.send(&out).await;
    raw.until_ready(4).await;
    let received = String::from_utf8_lossy(&raw.received).into_owned();
    assert!(
        received.contains("airlock_eph_"),
        "not an ephemeral session"
    );
    assert!(!received.contains(UPSTREAM_PW));
    assert!(
        !received.contains(UPSTREAM_USER),
        "the broker's name reached the agent"
    );

    // A broker that cannot create users: the agent gets a generic error,
    // and is not let in with the broker's credential.
    env.pg
        .psql_admin("ALTER ROLE airlock_svc NOCREATEROLE")
        .unwrap();
    let Err(e) = env.agent_config().connect(tokio_postgres::NoTls).await else {
        panic!("a session started without an ephemeral user");
    };
    let db = e.as_db_error().expect("a server error");
    assert_eq!(
        db.message(),
        "airlock could not obtain a database credential for \"app\""
    );
    assert!(!format!("{e} {e:?}").contains(UPSTREAM_PW));
}

/// A session that knows its own password (it set one) and made the drop
/// of its user fail (a view of another role over its table) outlived its
/// lease: a red-team finding. The release now locks the user out first,
/// on its own, and drops what depends on its objects with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_set_its_password_and_lent_a_view_is_still_dropped() {
    let env = start("15m").await;
    env.pg
        .psql_db(DB, "GRANT CREATE ON SCHEMA public TO agent_ro")
        .unwrap();
    let broker = broker(&env, Duration::from_secs(900), "test-a");
    let lease = broker.lease(&principal(&[])).await.expect("lease");
    let client = connect_as(&env, &lease).await.expect("log in as the lease");
    client
        .batch_execute(&format!(
            "CREATE TABLE mine (a int); CREATE VIEW lent AS SELECT * FROM mine;
             ALTER VIEW lent OWNER TO {TEMPLATE};
             ALTER ROLE CURRENT_USER PASSWORD 'known-password'"
        ))
        .await
        .unwrap();
    let user = lease.user.clone();
    lease.release().await;
    assert!(!role_exists(&env, &user), "the user outlived its lease");
    assert!(connect_with(&env, &user, "known-password").await.is_err());
}

/// Red-team finding: an ephemeral user may hand its objects to the
/// template role it is a member of (`ALTER … OWNER TO`, `CREATE SCHEMA …
/// AUTHORIZATION`), where the DROP OWNED at the session's end does not
/// reach them and every later session of the template finds them. Refused
/// (`builtin.role-change`); what the session made itself still goes with
/// its user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_objects_cannot_be_handed_to_the_template() {
    let env = start_with_rules(
        "15m",
        "[[policy]]\nid = \"agent-all\"\napplies_to = { identities = [\"agent\"] }\n\
         allow_statements = [\"read\", \"write\", \"ddl\", \"session\", \"transaction\"]\n",
    )
    .await;
    env.pg
        .psql_db(DB, &format!("GRANT CREATE ON SCHEMA public TO {TEMPLATE}; GRANT CREATE ON DATABASE {DB} TO {TEMPLATE};"))
        .unwrap();
    let a = env.agent().await;
    let user = current_user(&a).await;
    a.batch_execute("CREATE TABLE persist_tbl (x int); INSERT INTO persist_tbl VALUES (42)")
        .await
        .unwrap();
    for sql in [
        format!("ALTER TABLE persist_tbl OWNER TO {TEMPLATE}"),
        format!("alter table public.persist_tbl owner to \"{TEMPLATE}\""),
        format!("CREATE SCHEMA persist_s AUTHORIZATION {TEMPLATE}"),
        format!("CREATE SCHEMA AUTHORIZATION {TEMPLATE}"),
    ] {
        let e = a.batch_execute(&sql).await.expect_err(&sql);
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e:?}");
        assert!(
            e.as_db_error()
                .is_some_and(|d| d.message().contains("builtin.role-change")),
            "{sql}: {e:?}"
        );
    }
    // Keeping it its own is fine.
    a.batch_execute("ALTER TABLE persist_tbl OWNER TO CURRENT_USER")
        .await
        .unwrap();
    drop(a);
    assert!(gone(&env, &user).await, "role outlived its session");
    let left = env
        .pg
        .psql_db(
            DB,
            "SELECT count(*) FROM pg_class WHERE relname = 'persist_tbl'",
        )
        .unwrap();
    assert_eq!(left.trim(), "0", "the session's table outlived it");
}

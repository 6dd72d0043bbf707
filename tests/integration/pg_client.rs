//! tokio-postgres through airlock against a real Postgres: simple, extended,
//! prepared and binary results, COPY, cancel, transactions, LISTEN/NOTIFY,
//! errors mid-pipeline and results bigger than any buffer.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use tokio_postgres::SimpleQueryMessage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_extended_prepared_binary() {
    let env = Env::start().await;
    let c = env.agent().await;

    // Simple protocol, several statements in one Query.
    let msgs = c
        .simple_query("CREATE TABLE t (id int, name text, v float8, b bytea); SELECT 41 + 1 AS x")
        .await
        .unwrap();
    let row = msgs
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_owned()),
            _ => None,
        })
        .unwrap();
    assert_eq!(row, "42");

    // Extended protocol with parameters; tokio-postgres uses binary results.
    let n = c
        .execute(
            "INSERT INTO t VALUES ($1, $2, $3, $4), ($5, $6, $7, $8)",
            &[
                &1i32,
                &"one",
                &1.5f64,
                &vec![0u8, 1, 2, 255],
                &2i32,
                &"two",
                &-2.25f64,
                &Vec::<u8>::new(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(n, 2);

    // A prepared statement reused many times.
    let stmt = c
        .prepare("SELECT name, v, b FROM t WHERE id = $1")
        .await
        .unwrap();
    for _ in 0..50 {
        let r = c.query_one(&stmt, &[&1i32]).await.unwrap();
        assert_eq!(r.get::<_, &str>(0), "one");
        assert_eq!(r.get::<_, f64>(1), 1.5);
        assert_eq!(r.get::<_, Vec<u8>>(2), vec![0u8, 1, 2, 255]);
    }
    let rows = c.query("SELECT id FROM t ORDER BY id", &[]).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>(),
        [1, 2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_and_errors_keep_the_session_usable() {
    let env = Env::start().await;
    let mut c = env.agent().await;
    c.batch_execute("CREATE TABLE tx (id int primary key)")
        .await
        .unwrap();

    let t = c.transaction().await.unwrap();
    t.execute("INSERT INTO tx VALUES (1)", &[]).await.unwrap();
    t.rollback().await.unwrap();
    let t = c.transaction().await.unwrap();
    t.execute("INSERT INTO tx VALUES (2)", &[]).await.unwrap();
    t.commit().await.unwrap();

    // An error inside a transaction aborts it; the session recovers.
    c.batch_execute("BEGIN").await.unwrap();
    let e = c
        .batch_execute("INSERT INTO tx VALUES (2)")
        .await
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "23505");
    let e = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();

    let ids: Vec<i32> = c
        .query("SELECT id FROM tx", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_in_the_middle_of_a_pipeline() {
    let env = Env::start().await;
    let c = env.agent().await;
    c.batch_execute("CREATE TABLE p (id int)").await.unwrap();
    let s1 = c.prepare("INSERT INTO p VALUES ($1)").await.unwrap();
    let bad = c.prepare("SELECT 1 / $1::int").await.unwrap();
    // tokio-postgres pipelines concurrent requests on one connection.
    let (a, b, d, e) = tokio::join!(
        c.execute(&s1, &[&1i32]),
        c.query(&bad, &[&0i32]),
        c.execute(&s1, &[&2i32]),
        c.query("SELECT count(*) FROM p", &[]),
    );
    assert_eq!(a.unwrap(), 1);
    assert_eq!(b.unwrap_err().code().unwrap().code(), "22012");
    assert_eq!(d.unwrap(), 1);
    assert_eq!(e.unwrap()[0].get::<_, i64>(0), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out() {
    let env = Env::start().await;
    let c = env.agent().await;
    c.batch_execute("CREATE TABLE cp (id int, s text)")
        .await
        .unwrap();
    let sink = c.copy_in("COPY cp FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    let mut data = String::new();
    for i in 0..20_000 {
        data.push_str(&format!("{i}\trow {i}\n"));
    }
    sink.send(Bytes::from(data.clone())).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 20_000);

    let out = c
        .copy_out("COPY (SELECT * FROM cp ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = out.try_collect().await.unwrap();
    let got: Vec<u8> = chunks.concat();
    assert_eq!(got, data.as_bytes());

    // A failed COPY leaves the session usable.
    let sink = c.copy_in::<_, Bytes>("COPY cp FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from_static(b"not-an-int\tx\n"))
        .await
        .unwrap();
    assert!(sink.finish().await.is_err());
    let n: i64 = c
        .query_one("SELECT count(*) FROM cp", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_real_backend() {
    let env = Env::start().await;
    let c = env.agent().await;
    let token = c.cancel_token();
    let slow = tokio::spawn(async move { c.batch_execute("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("cancel took effect")
        .unwrap();
    assert_eq!(r.unwrap_err().code().unwrap().code(), "57014");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_pid_is_real_and_notify_works() {
    let env = Env::start().await;
    let listener_cfg = env.agent_config();
    let (listener, mut conn) = listener_cfg.connect(tokio_postgres::NoTls).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(msg)) = stream.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = msg {
                let _ = tx.send(n);
            }
        }
    });
    listener.batch_execute("LISTEN chan").await.unwrap();

    let sender = env.agent().await;
    let sender_pid: i32 = sender
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    // The pid the agent sees is the real backend, running as airlock's user.
    let direct = env.direct().await;
    let user: String = direct
        .query_one(
            "SELECT usename::text FROM pg_stat_activity WHERE pid = $1",
            &[&sender_pid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, UPSTREAM_USER);

    sender.batch_execute("NOTIFY chan, 'hello'").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.channel(), "chan");
    assert_eq!(n.payload(), "hello");
    assert_eq!(n.process_id(), sender_pid);

    // pg_terminate_backend(pid) on the pid the agent saw ends that session.
    direct
        .execute("SELECT pg_terminate_backend($1)", &[&sender_pid])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sender.simple_query("SELECT 1").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_bigger_than_any_buffer_stream_through() {
    let env = Env::start().await;
    let c = env.agent().await;
    // ~64 MB in 1 KB rows.
    let rows = c
        .query_raw::<_, i32, _>(
            "SELECT g, repeat('x', 1000) FROM generate_series(1, 64000) g",
            std::iter::empty(),
        )
        .await
        .unwrap();
    futures_util::pin_mut!(rows);
    let mut count = 0usize;
    let mut bytes = 0usize;
    while let Some(r) = rows.next().await {
        let r = r.unwrap();
        bytes += r.get::<_, &str>(1).len();
        count += 1;
    }
    assert_eq!((count, bytes), (64_000, 64_000_000));

    // A single 20 MB value, larger than the streaming threshold.
    let v: String = c
        .query_one("SELECT repeat('y', 20000000)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v.len(), 20_000_000);
    assert!(v.bytes().all(|b| b == b'y'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_reach_the_server() {
    let env = Env::start().await;
    let mut cfg = env.agent_config();
    cfg.application_name("agent-app")
        .options("-c search_path=myschema,public -c statement_timeout=12345");
    let c = crate::common::connect(cfg).await;
    let r = c
        .query_one(
            "SELECT current_setting('search_path'), current_setting('statement_timeout'), current_setting('application_name')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, &str>(0), "myschema,public");
    assert_eq!(r.get::<_, &str>(1), "12345ms");
    assert_eq!(r.get::<_, &str>(2), "agent-app");
}

"""psycopg 3 through airlock: see README.md in this directory.

argv: host port user password database
"""
import datetime
import decimal
import sys
import uuid

try:
    import psycopg
    from psycopg import errors, sql
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"skip: {e}")
    sys.exit(3)

host, port, user, password, dbname = sys.argv[1:6]
conninfo = dict(host=host, port=int(port), user=user, password=password,
                dbname=dbname, connect_timeout=10)


# Runs for minutes unless cancelled (pg_sleep is a function airlock denies).
SLOW = "SELECT count(*) FROM generate_series(1, 3000000000)"


def check(name, cond, detail=""):
    if not cond:
        print(f"FAILED: {name} {detail}", file=sys.stderr)
        sys.exit(1)
    print(f"pass: {name}")


def refused(conn, query, rule, params=None):
    try:
        conn.execute(query, params)
    except psycopg.Error as e:
        check(f"refused {query!r}", e.sqlstate == "42501" and rule in str(e),
              f"{e.sqlstate} {e}")
        return
    check(f"refused {query!r}", False, "it ran")


with psycopg.connect(**conninfo, autocommit=True) as conn:
    row = conn.execute(
        "SELECT id, name, balance, created, tags, meta, mood, photo, uid"
        " FROM customers WHERE id = %s", (1,)).fetchone()
    check("typed read", row == (
        1, "Alice", decimal.Decimal("1234.50"),
        datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        ["a", "b"], {"k": 1}, "calm", b"\x01\x02",
        uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")), repr(row))
    row = conn.execute("SELECT photo, uid FROM customers WHERE id = 2").fetchone()
    check("NULLs", row == (None, None), repr(row))

    for i in range(10):
        row = conn.execute("SELECT email, ssn, name FROM customers WHERE id = %s",
                           (1,), prepare=True).fetchone()
        check(f"masked, prepared run {i}", row == ("****@example.com", "****", "Alice"),
              repr(row))
    # Binary results (psycopg asks for them per cursor).
    with conn.cursor(binary=True) as cur:
        cur.execute("SELECT email, lower(email), id FROM customers ORDER BY id")
        rows = cur.fetchall()
        check("masked, binary", rows == [("****@example.com", "****", 1),
                                         ("****@example.org", "****", 2)], repr(rows))

    refused(conn, "SELECT * FROM secrets", "agent-rw.deny-tables")
    refused(conn, "SELECT k FROM secrets WHERE k = %s", "agent-rw.deny-tables", ("top",))
    refused(conn, "DELETE FROM notes", "builtin.unbounded-write")
    check("usable after refusals", conn.execute("SELECT 1").fetchone() == (1,))

    # Server-side (named) cursor over a table without masked columns.
    with conn.transaction():
        with conn.cursor(name="named_cur") as cur:
            cur.itersize = 2
            cur.execute("SELECT id, name FROM customers ORDER BY id")
            rows = list(cur)
            check("named cursor", rows == [(1, "Alice"), (2, "Bob")], repr(rows))

    # COPY into an allowed table, and back out.
    with conn.cursor() as cur:
        with cur.copy("COPY notes (customer_id, body) FROM STDIN") as copy:
            copy.write_row((1, "copied in"))
            copy.write_row((2, "tab\there"))
        check("COPY FROM STDIN", cur.rowcount == 2, repr(cur.rowcount))
        with cur.copy("COPY (SELECT body FROM notes ORDER BY id) TO STDOUT") as copy:
            out = [r for r in copy.rows()]
        check("COPY TO STDOUT", out == [("copied in",), ("tab\there",)], repr(out))

    # Batch, then a rolled-back transaction.
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO notes (customer_id, body) VALUES (%s, %s)",
                        [(1, f"batch {i}") for i in range(20)])
    n = conn.execute("SELECT count(*) FROM notes").fetchone()[0]
    check("executemany", n == 22, repr(n))
    try:
        with conn.transaction():
            conn.execute("INSERT INTO notes (body) VALUES ('rolled back')")
            conn.execute("SELECT * FROM secrets")
    except errors.InsufficientPrivilege:
        pass
    n = conn.execute("SELECT count(*) FROM notes").fetchone()[0]
    check("refusal inside a transaction rolls it back", n == 22, repr(n))

    # Cancel through airlock.
    import threading
    t = threading.Timer(0.5, conn.cancel)
    t.start()
    try:
        conn.execute(SLOW)
        check("cancel", False, "the slow query finished")
    except errors.QueryCanceled as e:
        check("cancel", "user request" in str(e), str(e))
    t.join()
    check("usable after cancel", conn.execute("SELECT 2").fetchone() == (2,))

# Non-autocommit: the driver's implicit BEGIN, and an error in it.
with psycopg.connect(**conninfo) as conn:
    conn.execute("INSERT INTO notes (body) VALUES ('committed')")
    conn.commit()
    conn.execute("INSERT INTO notes (body) VALUES ('not committed')")
    try:
        conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier("secrets")))
    except errors.InsufficientPrivilege:
        conn.rollback()
    n = conn.execute("SELECT count(*) FROM notes WHERE body LIKE '%committed'").fetchone()[0]
    check("implicit transactions", n == 1, repr(n))
print("ok")

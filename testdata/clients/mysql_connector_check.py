"""mysql-connector-python through airlock: see README.md in this directory.

Both protocols: the text protocol (a plain cursor) and the binary one
(`cursor(prepared=True)`: COM_STMT_PREPARE and COM_STMT_EXECUTE).

argv: host port user password database
"""
import datetime
import decimal
import sys

try:
    import mysql.connector
    from mysql.connector import errors
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"skip: {e}")
    sys.exit(3)

host, port, user, password, database = sys.argv[1:6]


def check(name, cond, detail=""):
    if not cond:
        print(f"FAILED: {name} {detail}", file=sys.stderr)
        sys.exit(1)
    print(f"pass: {name}")


def connect():
    # The pure-Python implementation: the C one is not always installed.
    return mysql.connector.connect(host=host, port=int(port), user=user, password=password,
                                   database=database, use_pure=True, ssl_disabled=True,
                                   connection_timeout=10, autocommit=True)


def refused(cur, sql, rule, params=None):
    try:
        cur.execute(sql, params)
        cur.fetchall()
    except errors.Error as e:
        check(f"refused {sql!r}", rule in str(e), str(e))
        return
    check(f"refused {sql!r}", False, "it ran")


conn = connect()
for prepared in (False, True):
    how = "binary" if prepared else "text"
    cur = conn.cursor(prepared=prepared)
    cur.execute("SELECT id, name, balance, created FROM customers WHERE id = %s", (1,))
    row = cur.fetchone()
    check(f"typed read ({how})", tuple(row) == (
        1, "Alice", decimal.Decimal("1234.50"), datetime.datetime(2024, 1, 2, 3, 4, 5)), repr(row))
    for i in range(5):
        cur.execute("SELECT email, ssn, name FROM customers WHERE id = %s", (1,))
        row = tuple(cur.fetchone())
        check(f"masked ({how}) run {i}", row == ("****@example.com", "****", "Alice"), repr(row))
    refused(cur, "SELECT * FROM secrets", "agent-rw.deny-tables")
    refused(cur, "DELETE FROM notes", "builtin.unbounded-write")
    cur.execute("SELECT 1")
    check(f"usable after refusals ({how})", cur.fetchone()[0] == 1)
    cur.close()

cur = conn.cursor()
cur.executemany("INSERT INTO notes (customer_id, body) VALUES (%s, %s)",
                [(1, f"batch {i}") for i in range(20)])
conn.start_transaction()
cur.execute("INSERT INTO notes (body) VALUES ('rolled back')")
try:
    cur.execute("SELECT * FROM secrets")
    cur.fetchall()
except errors.Error:
    conn.rollback()
cur.execute("SELECT count(*) FROM notes")
n = cur.fetchone()[0]
check("executemany, refusal in a transaction rolled back", n == 20, repr(n))
conn.close()

# A pool: each connection is reset (COM_RESET_CONNECTION) when returned.
from mysql.connector import pooling  # noqa: E402
pool = pooling.MySQLConnectionPool(pool_name="p", pool_size=2, host=host, port=int(port),
                                   user=user, password=password, database=database,
                                   use_pure=True, ssl_disabled=True)
for i in range(6):
    c = pool.get_connection()
    cur = c.cursor()
    cur.execute("SELECT email FROM customers WHERE id = 2")
    got = cur.fetchone()[0]
    check(f"pooled run {i}", got == "****@example.org", repr(got))
    cur.close()
    c.close()
print("ok")

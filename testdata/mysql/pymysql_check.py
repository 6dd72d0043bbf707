"""Run by tests/mysql_clients.rs: PyMySQL through airlock.

argv: port user password sha2_user sha2_password
Prints "ok" and exits 0 when every check passed; exits 1 with a message
otherwise; exits 3 (after printing why) when PyMySQL is missing.
"""
import sys

try:
    import pymysql
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"skip: {e}")
    sys.exit(3)

port, user, password, sha2_user, sha2_password = sys.argv[1:6]
port = int(port)


def connect(u, p):
    return pymysql.connect(host="127.0.0.1", port=port, user=u, password=p,
                           database="app", autocommit=True)


conn = connect(user, password)
with conn.cursor() as cur:
    cur.execute("SELECT id, v FROM t WHERE id = %s", (1,))
    assert cur.fetchall() == ((1, "one"),), "select"
    cur.execute("INSERT INTO t VALUES (%s, %s, %s)", (20, "it's \\ quoted", 7))
    cur.execute("SELECT v FROM t WHERE id = 20")
    assert cur.fetchone() == ("it's \\ quoted",), "round trip of escapes"
    try:
        cur.execute("DELETE FROM t")
        raise SystemExit("DELETE FROM t was not refused")
    except pymysql.err.MySQLError as e:
        assert "airlock:" in str(e), e
    cur.execute("SELECT COUNT(*) FROM t")
    assert cur.fetchone()[0] == 4, "still usable, nothing deleted"
conn.ping()
conn.close()

# caching_sha2_password fast path (an identity with only a sha2 verifier).
conn = connect(sha2_user, sha2_password)
with conn.cursor() as cur:
    cur.execute("SELECT 1")
    assert cur.fetchone() == (1,)
conn.close()
print("ok")

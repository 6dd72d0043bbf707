"""asyncpg through airlock: see README.md in this directory.

asyncpg prepares every statement (named, on the server), reads results in
binary, introspects types it does not know (enums, arrays of them) with
queries of its own, and resets pooled connections with a script of its
own.

argv: host port user password database
"""
import asyncio
import datetime
import decimal
import sys
import uuid

try:
    import asyncpg
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"skip: {e}")
    sys.exit(3)

host, port, user, password, dbname = sys.argv[1:6]
conninfo = dict(host=host, port=int(port), user=user, password=password,
                database=dbname, ssl=False, timeout=10)

# Runs for minutes unless cancelled (pg_sleep is a function airlock denies).
SLOW = "SELECT count(*) FROM generate_series(1, 3000000000)"


def check(name, cond, detail=""):
    if not cond:
        print(f"FAILED: {name} {detail}", file=sys.stderr)
        sys.exit(1)
    print(f"pass: {name}")


async def refused(conn, query, rule, *args):
    try:
        await conn.execute(query, *args)
    except asyncpg.PostgresError as e:
        check(f"refused {query!r}", e.sqlstate == "42501" and rule in str(e),
              f"{e.sqlstate} {e}")
        return
    check(f"refused {query!r}", False, "it ran")


async def main():
    conn = await asyncpg.connect(**conninfo)
    row = await conn.fetchrow(
        "SELECT id, name, balance, created, tags, meta, mood, photo, uid"
        " FROM customers WHERE id = $1", 1)
    check("typed read", tuple(row) == (
        1, "Alice", decimal.Decimal("1234.50"),
        datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        ["a", "b"], '{"k": 1}', "calm", b"\x01\x02",
        uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")), repr(tuple(row)))
    row = await conn.fetchrow("SELECT photo, uid FROM customers WHERE id = 2")
    check("NULLs", tuple(row) == (None, None), repr(tuple(row)))
    moods = await conn.fetchval("SELECT array_agg(mood ORDER BY id) FROM customers")
    check("array of an enum (type introspection)", moods == ["calm", "busy"], repr(moods))

    stmt = await conn.prepare("SELECT email, ssn, name FROM customers WHERE id = $1")
    for i in range(10):
        row = await stmt.fetchrow(1)
        check(f"masked, prepared run {i}", tuple(row) == ("****@example.com", "****", "Alice"),
              repr(tuple(row)))
    rows = await conn.fetch("SELECT email, lower(email), id FROM customers ORDER BY id")
    check("masked, binary", [tuple(r) for r in rows] == [
        ("****@example.com", "****", 1), ("****@example.org", "****", 2)],
        repr([tuple(r) for r in rows]))

    await refused(conn, "SELECT * FROM secrets", "agent-rw.deny-tables")
    await refused(conn, "SELECT k FROM secrets WHERE k = $1", "agent-rw.deny-tables", "top")
    await refused(conn, "DELETE FROM notes", "builtin.unbounded-write")
    check("usable after refusals", await conn.fetchval("SELECT 1") == 1)

    # A cursor (asyncpg declares a portal and fetches from it) in a transaction.
    async with conn.transaction():
        got = [tuple(r) async for r in conn.cursor(
            "SELECT id, name FROM customers ORDER BY id", prefetch=1)]
        check("cursor", got == [(1, "Alice"), (2, "Bob")], repr(got))

    # COPY in (binary) and executemany.
    n = await conn.copy_records_to_table(
        "notes", records=[(1, "copied in"), (2, "tab\there")],
        columns=["customer_id", "body"])
    check("copy_records_to_table", n == "COPY 2", repr(n))
    await conn.executemany("INSERT INTO notes (customer_id, body) VALUES ($1, $2)",
                           [(1, f"batch {i}") for i in range(20)])
    n = await conn.fetchval("SELECT count(*) FROM notes")
    check("executemany", n == 22, repr(n))
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO notes (body) VALUES ('rolled back')")
            await conn.execute("SELECT * FROM secrets")
    except asyncpg.InsufficientPrivilegeError:
        pass
    n = await conn.fetchval("SELECT count(*) FROM notes")
    check("refusal inside a transaction rolls it back", n == 22, repr(n))

    # Cancel: asyncpg cancels on a timeout.
    try:
        await conn.fetchval(SLOW, timeout=0.5)
        check("cancel", False, "the slow query finished")
    except asyncio.TimeoutError:
        check("cancel", True)
    check("usable after cancel", await conn.fetchval("SELECT 2") == 2)
    await conn.close()

    # A pool: each release resets the connection with asyncpg's own script
    # (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL).
    pool = await asyncpg.create_pool(**conninfo, min_size=2, max_size=2)
    for i in range(6):
        async with pool.acquire() as c:
            await c.execute("SET application_name = 'pooled'")
            row = await c.fetchrow("SELECT email FROM customers WHERE id = $1", 2)
            check(f"pooled run {i}", row["email"] == "****@example.org", repr(row))
    await pool.close()


asyncio.run(main())
print("ok")

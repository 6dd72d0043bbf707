# Sourced by callgrind-pg.sh and ab-pg.sh: a throwaway PostgreSQL with
# scale-10 pgbench tables and SCRAM logins, and airlock configs for it
# with the e2e bench's policy. Expects WORK (an empty temp dir) and
# PGBIN; sets PG_PORT and VERIFIER.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }

# pg_bench_setup BIN: starts the server (pinned to CPU 0) and writes the
# rules and the upstream password into WORK; BIN makes the agent's verifier.
pg_bench_setup() {
  chmod 755 "$WORK"
  PG_PORT=$(free_port)
  mkdir "$WORK/pg"
  [ "$(id -u)" = 0 ] && chown postgres "$WORK/pg" "$WORK"
  echo superpw > "$WORK/pw"
  chmod 644 "$WORK/pw"
  as_pg "$PGBIN/initdb -D $WORK/pg -A scram-sha-256 --pwfile=$WORK/pw -U postgres" >/dev/null
  as_pg "taskset -c 0 $PGBIN/pg_ctl -D $WORK/pg -l $WORK/pg/log -w -o '-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1' start" >/dev/null
  PGPASSWORD=superpw "$PGBIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres \
    -c "CREATE USER bench PASSWORD 'bench-pw-0123456789'" -c "CREATE DATABASE bench OWNER bench"
  "$PGBIN/pgbench" -i -q -s 10 "postgresql://bench:bench-pw-0123456789@127.0.0.1:$PG_PORT/bench" >/dev/null 2>&1
  printf '%s' bench-pw-0123456789 > "$WORK/upstream.pw"
  sed -n '/^const RULES: &str = r#"/,/^"#;/p' benches/e2e/pg.rs | sed '1d;$d' > "$WORK/rules.toml"
  VERIFIER=$(echo agent-pw | "$1" passwd --stdin)
}

# pg_bench_stop: stops the server (for the callers' exit traps).
pg_bench_stop() {
  as_pg "$PGBIN/pg_ctl -D $WORK/pg -m immediate stop" >/dev/null 2>&1 || true
}

# airlock_config PORT: an airlock config listening on PORT, on stdout.
airlock_config() {
  cat <<EOF
[listen]
postgres = "127.0.0.1:$1"
[policy]
rules = "rules.toml"
[targets.bench]
host = "127.0.0.1"
port = $PG_PORT
database = "bench"
user = "bench"
password_file = "upstream.pw"
[identities.agent]
secret = "$VERIFIER"
targets = ["bench"]
EOF
}

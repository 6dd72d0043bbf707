#!/usr/bin/env bash
# Instructions that airlock spends per sysbench query on the MySQL path,
# counted by callgrind (repeatable, unlike wall-clock figures on a shared
# VM). The MySQL twin of benches/callgrind-pg.sh.
#
#   benches/callgrind-mysql.sh [BINARY] [PS_MODE...]
#
# BINARY defaults to target/release/airlock (build it first with
# `cargo build --release`); PS_MODE is sysbench's --db-ps-mode (auto:
# server-side prepared statements, disable: text protocol; default both).
# It starts a throwaway MariaDB (mysql_native_password login, sysbench's
# oltp tables: 4 x 10,000 rows) in a temp dir, airlock under callgrind with
# the e2e bench's MySQL policy, warms up with 300 oltp_point_select queries,
# zeroes the counters, runs 3,000 on one connection and prints the
# instructions per query of the whole airlock process (the run's own
# login included: mysql_native_password is a few SHA-1s). Everything is
# removed afterwards. Needs valgrind, sysbench, MariaDB's server binaries
# and python3 (for free ports).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/release/airlock}")
shift || true
MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(auto disable)
N=3000
for tool in valgrind callgrind_control callgrind_annotate sysbench mariadb-install-db mariadbd mariadb; do
  command -v "$tool" >/dev/null || { echo "callgrind-mysql: $tool not found" >&2; exit 1; }
done

WORK=$(mktemp -d)
chmod 755 "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DB_PORT=$(free_port)
AL_PORT=$(free_port)
USER_OPT=()
[ "$(id -u)" = 0 ] && USER_OPT=(--user=root)
cleanup() {
  [ -n "${VP:-}" ] && kill "$VP" 2>/dev/null || true
  [ -n "${DBP:-}" ] && kill "$DBP" 2>/dev/null && wait "$DBP" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

INNODB=(--innodb-buffer-pool-size=64M --innodb-log-file-size=8M
  --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --innodb-use-native-aio=0
  --skip-name-resolve)
mariadb-install-db --no-defaults "${USER_OPT[@]}" --datadir="$WORK/db" \
  --auth-root-authentication-method=normal --skip-test-db --tmpdir="$WORK" "${INNODB[@]}" >/dev/null 2>&1
taskset -c 0 mariadbd --no-defaults "${USER_OPT[@]}" --datadir="$WORK/db" --port="$DB_PORT" \
  --bind-address=127.0.0.1 --socket="$WORK/db.sock" --pid-file="$WORK/db.pid" \
  --log-error="$WORK/db.log" --tmpdir="$WORK" "${INNODB[@]}" --performance-schema=OFF \
  --innodb-fast-shutdown=2 >/dev/null 2>&1 &
DBP=$!
root_sql() { mariadb --no-defaults --socket="$WORK/db.sock" --user=root -e "$1"; }
for _ in $(seq 60); do root_sql "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
root_sql "CREATE USER 'bench'@'%' IDENTIFIED BY 'bench-pw-0123456789';
  CREATE DATABASE bench; GRANT ALL ON bench.* TO 'bench'@'%';"
SB_TABLES=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-db=bench --mysql-ssl=off
  --tables=4 --table-size=10000)
sysbench oltp_read_only "${SB_TABLES[@]}" --mysql-port="$DB_PORT" --mysql-user=bench \
  --mysql-password=bench-pw-0123456789 prepare >/dev/null

printf '%s' bench-pw-0123456789 > "$WORK/upstream.pw"
sed -n '/^const RULES: &str = r#"/,/^"#;/p' benches/e2e/mysql.rs | sed '1d;$d' > "$WORK/rules.toml"
SCRAM=$(echo agent-pw | "$BIN" passwd --stdin)
MYSQL_SECRET=$(echo agent-pw | "$BIN" passwd --stdin --mysql)
cat > "$WORK/airlock.toml" <<EOF
[listen]
mysql = "127.0.0.1:$AL_PORT"
[policy]
rules = "rules.toml"
[targets.bench]
protocol = "mysql"
host = "127.0.0.1"
port = $DB_PORT
database = "bench"
user = "bench"
password_file = "upstream.pw"
[identities.agent]
secret = "$SCRAM"
mysql_secret = "$MYSQL_SECRET"
targets = ["bench"]
EOF

for mode in "${MODES[@]}"; do
  SB=(sysbench oltp_point_select "${SB_TABLES[@]}" --mysql-port="$AL_PORT" --mysql-user=agent
    --mysql-password=agent-pw --db-ps-mode="$mode" --threads=1 --time=0)
  (cd "$WORK" && AIRLOCK_LOG=warn exec taskset -c 0 valgrind --tool=callgrind \
    --callgrind-out-file="$WORK/cg.%p" "$BIN" serve --config airlock.toml >"$WORK/airlock.log" 2>&1) &
  VP=$!
  up=
  for _ in $(seq 120); do
    mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$AL_PORT" -u agent -pagent-pw \
      --skip-ssl -e "SELECT 1" bench >/dev/null 2>&1 && { up=1; break; }
    sleep 0.5
  done
  if [ -z "$up" ]; then
    echo "callgrind-mysql: airlock did not accept a login within 60 s; its log:" >&2
    cat "$WORK/airlock.log" >&2
    exit 1
  fi
  taskset -c 0 "${SB[@]}" --events=300 run >/dev/null
  callgrind_control -z "$VP" >/dev/null 2>&1
  taskset -c 0 "${SB[@]}" --events="$N" run >/dev/null
  callgrind_control -d "$VP" >/dev/null 2>&1
  kill "$VP" 2>/dev/null || true
  wait "$VP" 2>/dev/null || true
  VP=
  OUT=$(ls "$WORK"/cg.*.1 | head -1)
  TOTAL=$(callgrind_annotate "$OUT" 2>/dev/null | grep -m1 TOTALS | grep -oP '^[\d,]+' | tr -d ,)
  printf 'sysbench oltp_point_select --db-ps-mode=%-8s %6d instructions per query in airlock\n' \
    "$mode" $(( TOTAL / N ))
  rm -f "$WORK"/cg.*
done

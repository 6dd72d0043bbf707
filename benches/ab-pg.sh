#!/usr/bin/env bash
# Two airlock binaries side by side on one pgbench cell: for judging a
# build option or a change to the hot path without the whole e2e bench.
#
#   benches/ab-pg.sh BIN_A BIN_B [PGBENCH_ARGS...]
#
# PGBENCH_ARGS default to `-b tpcb-like -M extended -c 1`. It starts a
# throwaway PostgreSQL (scale-10 pgbench tables, SCRAM login) in a temp
# dir and both binaries with the e2e bench's policy, pins everything to
# CPU 0 (as the e2e bench does), and runs interleaved rounds (A B, B A,
# A B ...; AB_ROUNDS, default 6, of AB_SECONDS, default 10). Per round it prints
# each binary's transactions per second and CPU per transaction (the
# scheduler's run time of all its threads, /proc/PID/task/*/schedstat),
# then the medians and the median of the per-round B/A ratios.
# Everything is removed afterwards. Needs PostgreSQL's server binaries
# and pgbench.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
BIN_A=$(realpath "$1")
BIN_B=$(realpath "$2")
shift 2
ARGS=("$@")
[ ${#ARGS[@]} -gt 0 ] || ARGS=(-b tpcb-like -M extended -c 1)
ROUNDS=${AB_ROUNDS:-6}
SECONDS_PER=${AB_SECONDS:-10}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

WORK=$(mktemp -d)
. benches/pg-bench-setup.sh
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  pg_bench_stop
  rm -rf "$WORK"
}
trap cleanup EXIT
pg_bench_setup "$BIN_A"

# start NAME BIN: an airlock on a free port; prints nothing, sets PORT_NAME and PID_NAME.
start() {
  local name=$1 bin=$2 port
  port=$(free_port)
  airlock_config "$port" > "$WORK/$name.toml"
  (cd "$WORK" && AIRLOCK_LOG=warn exec taskset -c 0 "$bin" serve --config "$name.toml" >"$WORK/$name.log" 2>&1) &
  PIDS+=($!)
  eval "PORT_$name=$port PID_$name=$!"
  for _ in $(seq 100); do
    "$PGBIN/psql" "postgresql://agent:agent-pw@127.0.0.1:$port/bench" -c "SELECT 1" >/dev/null 2>&1 && return
    sleep 0.2
  done
  echo "ab-pg: $name did not accept a login; its log:" >&2
  cat "$WORK/$name.log" >&2
  exit 1
}
start A "$BIN_A"
start B "$BIN_B"

cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {print s + 0}'; }

# run NAME: one round; prints "tps cpu_us_per_txn".
run() {
  local name=$1 port pid before after out tps n
  port=$(eval echo "\$PORT_$name")
  pid=$(eval echo "\$PID_$name")
  before=$(cpu_ns "$pid")
  out=$(taskset -c 0 "$PGBIN/pgbench" -n -T "$SECONDS_PER" "${ARGS[@]}" \
    "postgresql://agent:agent-pw@127.0.0.1:$port/bench" 2>&1)
  after=$(cpu_ns "$pid")
  tps=$(echo "$out" | grep -oP 'tps = \K[\d.]+' | head -1)
  n=$(echo "$out" | grep -oP 'number of transactions actually processed: \K\d+')
  [ -n "$tps" ] && [ -n "$n" ] || { echo "ab-pg: pgbench failed: $out" >&2; exit 1; }
  echo "$tps $(( (after - before) / n / 1000 ))"
}

echo "pgbench ${ARGS[*]}, $ROUNDS rounds of $SECONDS_PER s, all on CPU 0"
echo "A: $BIN_A"
echo "B: $BIN_B"
printf '%5s %10s %10s %12s %12s\n' round "tps A" "tps B" "CPU µs/tx A" "CPU µs/tx B"
RES=()
for r in $(seq "$ROUNDS"); do
  # The order alternates: the second run of a round tended to be the
  # faster one, whichever binary it was.
  if [ $((r % 2)) = 1 ]; then
    read -r ta ca < <(run A)
    read -r tb cb < <(run B)
  else
    read -r tb cb < <(run B)
    read -r ta ca < <(run A)
  fi
  printf '%5d %10.0f %10.0f %12d %12d\n' "$r" "$ta" "$tb" "$ca" "$cb"
  RES+=("$ta $tb $ca $cb")
done
printf '%s\n' "${RES[@]}" | python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
med = lambda i: statistics.median(r[i] for r in rows)
ratio = statistics.median(r[1] / r[0] for r in rows)
print(f"median  tps A {med(0):.0f}  tps B {med(1):.0f}  B/A {ratio:.3f}  CPU us/tx A {med(2):.1f}  B {med(3):.1f}")
'

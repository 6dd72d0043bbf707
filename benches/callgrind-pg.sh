#!/usr/bin/env bash
# Instructions that airlock spends per pgbench transaction, counted by
# callgrind (repeatable, unlike wall-clock figures on a shared VM).
#
#   benches/callgrind-pg.sh [BINARY] [MODE...]
#
# BINARY defaults to target/release/airlock (build it first with
# `cargo build --release`); MODE is pgbench's -M (simple, extended,
# prepared; default: all three). It starts a throwaway PostgreSQL (scale-10
# pgbench tables, SCRAM login) in a temp dir, airlock under callgrind with
# the e2e bench's policy (guardrails judged on every statement, three
# masked columns pgbench does not hit), warms up with 500 transactions,
# zeroes the counters, runs 3,000 `pgbench -S` transactions on one
# connection and prints the instructions per transaction. The upstream
# SCRAM login (PBKDF2, ~113M instructions, once per connection) is
# subtracted: it is not per-transaction cost. Everything is removed
# afterwards. Needs valgrind, PostgreSQL's server binaries and pgbench.
# CALLGRIND_KEEP=DIR keeps each mode's callgrind output there (as
# DIR/cg.MODE) for `callgrind_annotate`, to see where the instructions go.
# CALLGRIND_AUDIT=1 also writes every statement to an audit log (the
# writer thread's instructions count too; valgrind hides the CPU's SHA
# extensions, so SHA-256 counts in software there).
# CALLGRIND_SCRIPT=tpcb-like runs pgbench's default seven-statement
# transaction instead of `-S` (select-only); CALLGRIND_N sets how many
# transactions are counted (default 3,000). CALLGRIND_CACHE=1 simulates
# the caches too (valgrind's model of a first-level data cache and the
# last-level one, not this CPU's) and prints the data-cache misses per
# transaction: reads and writes that missed the first level (D1) and the
# last level (LL). Slower.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/release/airlock}")
shift || true
MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(simple extended prepared)
N=${CALLGRIND_N:-3000}
SCRIPT=${CALLGRIND_SCRIPT:-select-only}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
for tool in valgrind callgrind_control callgrind_annotate "$PGBIN/pgbench"; do
  command -v "$tool" >/dev/null || { echo "callgrind-pg: $tool not found" >&2; exit 1; }
done

WORK=$(mktemp -d)
. benches/pg-bench-setup.sh
cleanup() {
  [ -n "${VP:-}" ] && kill "$VP" 2>/dev/null || true
  pg_bench_stop
  rm -rf "$WORK"
}
trap cleanup EXIT
pg_bench_setup "$BIN"
AL_PORT=$(free_port)
airlock_config "$AL_PORT" > "$WORK/airlock.toml"
if [ -n "${CALLGRIND_AUDIT:-}" ]; then
  printf '[audit]\npath = "audit.db"\n' >> "$WORK/airlock.toml"
fi

URL="postgresql://agent:agent-pw@127.0.0.1:$AL_PORT/bench"
for mode in "${MODES[@]}"; do
  (cd "$WORK" && AIRLOCK_LOG=warn exec taskset -c 0 valgrind --tool=callgrind \
    ${CALLGRIND_CACHE:+--cache-sim=yes} \
    --callgrind-out-file="$WORK/cg.%p" "$BIN" serve --config airlock.toml >"$WORK/airlock.log" 2>&1) &
  VP=$!
  up=
  for _ in $(seq 120); do
    "$PGBIN/psql" "$URL" -c "SELECT 1" >/dev/null 2>&1 && { up=1; break; }
    sleep 0.5
  done
  if [ -z "$up" ]; then
    echo "callgrind-pg: airlock did not accept a login within 60 s; its log:" >&2
    cat "$WORK/airlock.log" >&2
    exit 1
  fi
  taskset -c 0 "$PGBIN/pgbench" -n -b "$SCRIPT" -M "$mode" -c 1 -t 500 "$URL" >/dev/null 2>&1
  callgrind_control -z "$VP" >/dev/null 2>&1
  taskset -c 0 "$PGBIN/pgbench" -n -b "$SCRIPT" -M "$mode" -c 1 -t "$N" "$URL" >/dev/null 2>&1
  # The audit writer gathers events for 20 ms before each batch.
  [ -n "${CALLGRIND_AUDIT:-}" ] && sleep 2
  callgrind_control -d "$VP" >/dev/null 2>&1
  kill "$VP" 2>/dev/null || true
  wait "$VP" 2>/dev/null || true
  VP=
  OUT=$(ls "$WORK"/cg.*.1 | head -1)
  TOTAL=$(callgrind_annotate "$OUT" 2>/dev/null | grep -m1 TOTALS | grep -oP '^[\d,]+' | tr -d ,)
  SCRAM=$(callgrind_annotate --inclusive=yes "$OUT" 2>/dev/null \
    | grep -m1 'ScramSha256::update' | grep -oP '^\s*[\d,]+' | tr -d ', ' || true)
  printf 'pgbench -b %s -M %-8s %6d instructions per transaction in airlock\n' \
    "$SCRIPT" "$mode" $(( (TOTAL - ${SCRAM:-0}) / N ))
  if [ -n "${CALLGRIND_CACHE:-}" ]; then
    # The output file's own totals, in the order of its `events:` line
    # (Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw).
    read -r _ _ _ _ D1R D1W _ DLR DLW < <(grep -m1 '^totals:' "$OUT" | cut -d' ' -f2-)
    printf '    D1 misses %d read + %d write, LL misses %d read + %d write per transaction\n' \
      $(( D1R / N )) $(( D1W / N )) $(( DLR / N )) $(( DLW / N ))
  fi
  [ -n "${CALLGRIND_KEEP:-}" ] && mkdir -p "$CALLGRIND_KEEP" && cp "$OUT" "$CALLGRIND_KEEP/cg.$mode"
  rm -f "$WORK"/cg.*
done

#!/usr/bin/env bash
# A profile-guided (PGO) release build of airlock.
#
#   benches/pgo-build.sh [OUT]          (default: target/pgo/airlock)
#
# Why: airlock's per-statement code does not fit a CPU's 32 KiB
# first-level instruction cache in the extended protocol (see
# benches/README.md, "The extended protocol"), and on a CPU it shares
# with the database every wake-up refetches it. A profile tells the
# compiler which paths are hot, so that it lays them out together and
# moves the rest away.
#
# Steps: (1) a release build instrumented with -Cprofile-generate;
# (2) a training run: the end-to-end bench (`cargo bench --bench e2e --
# --quick`, pgbench in all three protocols and sysbench where installed)
# against the instrumented binary, which writes its profile when the bench
# stops it; (3) llvm-profdata merges the profiles; (4) the release build
# with -Cprofile-use, copied to OUT. Builds go to target/pgo-gen and
# target/pgo-use (each a full release build: about 10 minutes on two
# cores, the instrumented one longer).
#
# Needs llvm-profdata of the LLVM major version rustc uses (`rustc -vV`;
# Debian: `apt-get install llvm-22` for LLVM 22), and what the e2e bench
# needs (PostgreSQL's server binaries and pgbench; PgBouncer, MariaDB and
# sysbench where installed).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/pgo/airlock}
HOST=$(rustc -vV | sed -n 's/^host: //p')
LLVM_MAJOR=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
PROFDATA=
for c in "llvm-profdata-$LLVM_MAJOR" "/usr/lib/llvm-$LLVM_MAJOR/bin/llvm-profdata" llvm-profdata; do
  if command -v "$c" >/dev/null && "$c" --version 2>/dev/null | grep -q "LLVM version $LLVM_MAJOR\."; then
    PROFDATA=$c
    break
  fi
done
if [ -z "$PROFDATA" ]; then
  echo "pgo-build: no llvm-profdata for LLVM $LLVM_MAJOR (rustc's); on Debian: apt-get install llvm-$LLVM_MAJOR" >&2
  exit 1
fi
PROFILES=$(realpath -m target/pgo-profiles)
rm -rf "$PROFILES"
mkdir -p "$PROFILES" "$(dirname "$OUT")"

echo "pgo-build: 1/4 instrumented build (target/pgo-gen)"
RUSTFLAGS="-Cprofile-generate=$PROFILES" cargo build --release --bin airlock \
  --target "$HOST" --target-dir target/pgo-gen
GEN=target/pgo-gen/$HOST/release/airlock

echo "pgo-build: 2/4 training run (cargo bench --bench e2e -- --quick)"
AIRLOCK_BENCH_BIN=$(realpath "$GEN") cargo bench --bench e2e -- --quick
ls "$PROFILES"/*.profraw >/dev/null 2>&1 || {
  echo "pgo-build: the training run wrote no profile to $PROFILES" >&2
  exit 1
}

echo "pgo-build: 3/4 merging $(ls "$PROFILES"/*.profraw | wc -l) profiles"
"$PROFDATA" merge -o "$PROFILES/merged.profdata" "$PROFILES"/*.profraw

echo "pgo-build: 4/4 optimised build (target/pgo-use)"
RUSTFLAGS="-Cprofile-use=$PROFILES/merged.profdata" cargo build --release --bin airlock \
  --target "$HOST" --target-dir target/pgo-use
cp "target/pgo-use/$HOST/release/airlock" "$OUT"
echo "pgo-build: $OUT"

#!/usr/bin/env bash
# Benchmark Potok against the Tansu peer with the harness in bench/harness/.
#
#   bench/run.sh                      # full compare.sh run (REPS=3), ~15-25 min
#   REPS=1 TESTS=throughput bench/run.sh
#
# Builds the release binary, starts Potok on 127.0.0.1:39092 (durable: a fresh data dir on
# disk, default config) and Tansu on 127.0.0.1:29092 (memory storage: the only kind its
# build has), runs compare.sh (interleaved A/B, medians, ratios potok/tansu) and writes
# the result to bench/results/<UTC date-time>.txt. Both brokers are stopped at the end.
# Env: REPS, COUNT, LAT_SECS, TESTS, BENCH_CACHE (passed through to compare.sh/peer.sh),
#      POTOK_PORT (39092), TANSU_PORT (29092), BENCH_DATA_DIR (where the data dir goes).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HARNESS="$REPO/bench/harness"
CACHE="${BENCH_CACHE:-$HOME/.cache/kbench}"
POTOK_PORT="${POTOK_PORT:-39092}"
TANSU_PORT="${TANSU_PORT:-29092}"
STAMP="$(date -u +%Y-%m-%dT%H%M%SZ)"
RESULTS="$REPO/bench/results"
OUTFILE="$RESULTS/$STAMP.txt"
mkdir -p "$RESULTS"
log() { echo "[bench/run.sh $(date +%T)] $*" >&2; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$POTOK_PORT" "$TANSU_PORT"; do
  if port_busy "$p"; then echo "bench/run.sh: 127.0.0.1:$p is already in use" >&2; exit 1; fi
done

# ---- tools ---------------------------------------------------------------------------
BENCH_CACHE="$CACHE" "$HARNESS/ensure-tools.sh"

# ---- build ---------------------------------------------------------------------------
log "cargo build --release -p potok"
(cd "$REPO" && cargo build --release -p potok)
POTOK_BIN="$REPO/target/release/potok"

# ---- brokers -------------------------------------------------------------------------
DATA="$(mktemp -d "${BENCH_DATA_DIR:-$REPO/target}/bench-potok.XXXXXX")"
POTOK_PID=""
TANSU_PID=""
cleanup() {
  [ -n "$POTOK_PID" ] && kill "$POTOK_PID" 2>/dev/null && wait "$POTOK_PID" 2>/dev/null
  [ -n "$TANSU_PID" ] && kill "$TANSU_PID" 2>/dev/null
  rm -rf "$DATA"
}
trap cleanup EXIT

log "starting potok on 127.0.0.1:$POTOK_PORT (data $DATA)"
"$POTOK_BIN" server \
  --override "listeners=PLAINTEXT://127.0.0.1:$POTOK_PORT" \
  --override "advertised.listeners=PLAINTEXT://127.0.0.1:$POTOK_PORT" \
  --override "log.dirs=$DATA/logs" \
  --override "node.id=1" >"$DATA/potok.log" 2>&1 </dev/null &
POTOK_PID=$!
for _ in $(seq 1 200); do
  port_busy "$POTOK_PORT" && break
  kill -0 "$POTOK_PID" 2>/dev/null || { echo "potok exited:" >&2; cat "$DATA/potok.log" >&2; exit 1; }
  sleep 0.1
done
port_busy "$POTOK_PORT" || { echo "potok did not come up:" >&2; cat "$DATA/potok.log" >&2; exit 1; }

log "starting tansu on 127.0.0.1:$TANSU_PORT"
TANSU_PID="$(BENCH_CACHE="$CACHE" "$HARNESS/tansu.sh" "$TANSU_PORT")"

# ---- run -----------------------------------------------------------------------------
{
  echo "# bench/run.sh $STAMP"
  echo "# potok $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo uncommitted)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo '+dirty')"
  echo "# tansu 0.6.0 memory://, potok durable on-disk ($DATA); $(nproc) cores; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# REPS=${REPS:-3} COUNT=${COUNT:-1000000} TESTS='${TESTS:-throughput latency}'"
} >"$OUTFILE"
log "compare.sh -> $OUTFILE"
BENCH_CACHE="$CACHE" "$HARNESS/compare.sh" \
  "tansu=127.0.0.1:$TANSU_PORT@$TANSU_PID" "potok=127.0.0.1:$POTOK_PORT@$POTOK_PID" | tee -a "$OUTFILE"
if kill -0 "$POTOK_PID" 2>/dev/null; then
  echo "# potok peak RSS (VmHWM) $(awk '/VmHWM/ {print $2, $3}' "/proc/$POTOK_PID/status")" | tee -a "$OUTFILE"
else
  echo "# potok exited during the run; log tail:" | tee -a "$OUTFILE"
  tail -20 "$DATA/potok.log" | sed 's/^/#   /' | tee -a "$OUTFILE"
fi
log "done: $OUTFILE"

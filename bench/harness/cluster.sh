#!/usr/bin/env bash
# Benchmark a three-node Potok cluster on this machine (examples/cluster/'s three nodes).
#
#   bench/harness/cluster.sh                        # REPS=3: ~15-25 min
#   REPS=1 COUNT=200000 TESTS=acksall bench/harness/cluster.sh
#
# Builds the tools (ensure-tools.sh) and the release binary, starts the three nodes of
# examples/cluster/server-{1,2,3}.properties (clients on 127.0.0.1:19092-19094) with their
# log.dirs in a fresh data dir on disk, and measures with replication factor 3 and
# min.insync.replicas=2:
#   peer.sh TESTS (default "acksall latency"): acks=all produce MB/s at 100 B and 1 KiB, consume
#     MB/s of those topics, e2e/ack latency p50/p99 at 1k and 10k msg/s; `*_broker_cpu_s` is
#     utime+stime summed over the three node processes; `*_broker_cpu_s_per_GB` divides that by
#     the payload (COUNT x size bytes, 10^9 per GB).
#   failover.py FAILOVER_REPS times (default REPS): kill -9 of a partition leader to the first
#     acks=all write acknowledged by the new leader (`failover_ms`); the killed node is restarted
#     and rejoins before the next run.
# Writes the medians to bench/results/<UTC date-time>-cluster.txt. The nodes are stopped and the
# data dir removed at the end (node logs are kept there on failure: KEEP_DATA=1 keeps all).
# Env: REPS, COUNT, LAT_SECS, TESTS, FAILOVER_REPS, BENCH_CACHE, BENCH_DATA_DIR, KEEP_DATA.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${BENCH_CACHE:-$HOME/.cache/kbench}"
PY="$CACHE/venv/bin/python"
EXAMPLES="$REPO/examples/cluster"
export REPS="${REPS:-3}" COUNT="${COUNT:-1000000}" TESTS="${TESTS:-acksall latency}"
FAILOVER_REPS="${FAILOVER_REPS:-$REPS}"
export REPLICATION_FACTOR=3 MIN_INSYNC_REPLICAS=2
STAMP="$(date -u +%Y-%m-%dT%H%M%SZ)"
RESULTS="$REPO/bench/results"
OUTFILE="$RESULTS/$STAMP-cluster.txt"
NODES=(1 2 3)
mkdir -p "$RESULTS"
log() { echo "[bench/cluster.sh $(date +%T)] $*" >&2; }

client_addr() { sed -n 's/^listeners=//p' "$EXAMPLES/server-$1.properties" | tr ',' '\n' | sed -n 's#^PLAINTEXT://##p'; }
port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
BOOTSTRAP=""
for n in "${NODES[@]}"; do
  a="$(client_addr "$n")"
  BOOTSTRAP="${BOOTSTRAP:+$BOOTSTRAP,}$a"
  if port_busy "$a"; then echo "bench/cluster.sh: $a is already in use (examples/cluster/cluster.sh stop?)" >&2; exit 1; fi
done

BENCH_CACHE="$CACHE" "$HERE/ensure-tools.sh"
log "cargo build --release -p potok"
(cd "$REPO" && cargo build --release -p potok)
POTOK_BIN="$REPO/target/release/potok"

DATA="$(mktemp -d "${BENCH_DATA_DIR:-$REPO/target}/bench-cluster.XXXXXX")"
declare -A PIDS=()
failed=1
cleanup() {
  local n
  for n in "${!PIDS[@]}"; do kill "${PIDS[$n]}" 2>/dev/null || true; done
  for n in "${!PIDS[@]}"; do wait "${PIDS[$n]}" 2>/dev/null || true; done
  if [ "$failed" = 0 ] && [ -z "${KEEP_DATA:-}" ]; then rm -rf "$DATA"; else log "node logs kept in $DATA/*.log"; fi
}
trap cleanup EXIT

start_node() {
  local n=$1 addr
  addr="$(client_addr "$n")"
  "$POTOK_BIN" server "$EXAMPLES/server-$n.properties" --override "log.dirs=$DATA/$n" \
    >>"$DATA/$n.log" 2>&1 </dev/null &
  PIDS[$n]=$!
  for _ in $(seq 1 300); do
    port_busy "$addr" && return 0
    kill -0 "${PIDS[$n]}" 2>/dev/null || { echo "node $n exited:" >&2; tail -5 "$DATA/$n.log" >&2; return 1; }
    sleep 0.1
  done
  echo "node $n does not listen on $addr after 30 s" >&2
  return 1
}

log "starting three nodes (data $DATA)"
for n in "${NODES[@]}"; do start_node "$n"; done
"$PY" "$HERE/kadmin.py" wait "$BOOTSTRAP" 3 60
pid_list() { local n out=""; for n in "${NODES[@]}"; do out="${out:+$out,}${PIDS[$n]}"; done; echo "$out"; }

{
  echo "# bench/harness/cluster.sh $STAMP: three nodes of examples/cluster on one machine, rf=3, min.insync.replicas=2"
  echo "# potok $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo uncommitted)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo '+dirty')"
  echo "# durable on-disk ($DATA); $(nproc) cores; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# REPS=$REPS COUNT=$COUNT TESTS='$TESTS' FAILOVER_REPS=$FAILOVER_REPS"
} >"$OUTFILE"

# ---- throughput and latency ------------------------------------------------------------
if [ -n "$TESTS" ]; then
  log "peer.sh $BOOTSTRAP (TESTS=$TESTS) -> $OUTFILE"
  BROKER_PID="$(pid_list)" BENCH_CACHE="$CACHE" TOPIC_PREFIX="cl$(date +%s)" "$HERE/peer.sh" "$BOOTSTRAP" \
    | tee "$DATA/peer.txt" | tee -a "$OUTFILE"
  # CPU-seconds per GB of payload for the acks=all produce runs and their consumes
  awk -v count="$COUNT" '
    $1 ~ /^(produce|consume)_(100B|1KiB)_acksall_broker_cpu_s$/ && $2 != "FAIL" {
      size = ($1 ~ /1KiB/) ? 1024 : 100
      printf "%s_per_GB %.2f\n", $1, $2 / (count * size / 1e9) }' "$DATA/peer.txt" | tee -a "$OUTFILE"
fi

# ---- failover --------------------------------------------------------------------------
runs=""
for rep in $(seq 1 "$FAILOVER_REPS"); do
  out="$("$PY" "$HERE/failover.py" "$BOOTSTRAP" "failover$(date +%s)r$rep" \
    "1=${PIDS[1]},2=${PIDS[2]},3=${PIDS[3]}" 2>>"$DATA/failover.err")" || out="${out} FAIL"
  killed="$(sed -n 's/^killed_node //p' <<<"$out")"
  ms="$(sed -n 's/^failover_ms //p' <<<"$out")"
  log "failover rep $rep: killed node ${killed:-none}, ${ms:-FAIL} ms"
  runs="$runs ${ms:-FAIL}"
  if [ -n "$killed" ]; then
    wait "${PIDS[$killed]}" 2>/dev/null || true
    start_node "$killed"
    "$PY" "$HERE/kadmin.py" wait "$BOOTSTRAP" 3 60
  fi
done
echo "failover_ms$runs" | awk -f "$HERE/medians.awk" | tee -a "$OUTFILE"

for n in "${NODES[@]}"; do
  if kill -0 "${PIDS[$n]}" 2>/dev/null; then
    echo "# node $n peak RSS (VmHWM) $(awk '/VmHWM/ {print $2, $3}' "/proc/${PIDS[$n]}/status")" | tee -a "$OUTFILE"
  else
    echo "# node $n exited during the run; log tail:" | tee -a "$OUTFILE"
    tail -5 "$DATA/$n.log" | sed 's/^/#   /' | tee -a "$OUTFILE"
  fi
done
failed=0
log "done: $OUTFILE"

#!/usr/bin/env bash
# A three-node Potok cluster on this machine, from server-1/2/3.properties beside this script.
#
#   examples/cluster/cluster.sh start    # start the nodes that are not running, wait for their ports
#   examples/cluster/cluster.sh status   # per node: pid, listening or not, data dir size; potok cluster status
#   examples/cluster/cluster.sh stop     # SIGTERM every node, wait until each has exited
#   examples/cluster/cluster.sh wipe     # stop, then delete the nodes' log.dirs and /tmp/potok-cluster
#
# Node N keeps its data in /tmp/potok-cluster/N/data (log.dirs of server-N.properties), its
# log in /tmp/potok-cluster/N/server.log and its pid in /tmp/potok-cluster/N/server.pid.
# The binary is found as bin/*.sh find it: $POTOK_BIN, else this checkout's release build,
# else its debug build, else `potok` on PATH.
# Env: POTOK_CLUSTER_NODES ("1 2 3"), POTOK_START_WAIT_S (30), POTOK_STOP_WAIT_S (120),
#      POTOK_CLUSTER_CONF (the directory of the server-N.properties; this script's),
#      POTOK_CLUSTER_ROOT (where logs and pid files go; /tmp/potok-cluster).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../../bin/.potok-bin.sh"
CONF="${POTOK_CLUSTER_CONF:-$HERE}"
ROOT="${POTOK_CLUSTER_ROOT:-/tmp/potok-cluster}"
NODES="${POTOK_CLUSTER_NODES:-1 2 3}"
START_WAIT_S="${POTOK_START_WAIT_S:-30}"
STOP_WAIT_S="${POTOK_STOP_WAIT_S:-120}"

props() { echo "$CONF/server-$1.properties"; }
pid_file() { echo "$ROOT/$1/server.pid"; }
log_file() { echo "$ROOT/$1/server.log"; }
# The first host:port of a `key=NAME://host:port,...` line of node $1's properties whose
# listener name is $2.
listener() {
  sed -n 's/^listeners=//p' "$(props "$1")" | tr ',' '\n' | sed -n "s#^$2://##p" | head -1
}
# The pid of node $1 if it runs (a pid file whose process is this binary's `server`).
node_pid() {
  local f pid
  f="$(pid_file "$1")"
  [[ -r "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ "$pid" =~ ^[0-9]+$ ]] && running "$pid" || return 1
  [[ -r "/proc/$pid/cmdline" ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q " server " && return 1
  echo "$pid"
}
# Process $1 runs (gone, or a zombie waiting for its parent, counts as exited).
running() {
  kill -0 "$1" 2>/dev/null || return 1
  [[ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]]
}
listening() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

start() {
  local n pid addr failed=0 deadline
  for n in $NODES; do
    [[ -r "$(props "$n")" ]] || { echo "cluster.sh: $(props "$n") not found" >&2; return 1; }
    if pid="$(node_pid "$n")"; then
      echo "node $n already running (pid $pid)"
      continue
    fi
    mkdir -p "$ROOT/$n" || return 1
    echo "[cluster.sh $(date -u +%FT%TZ)] start: $potok_bin server $(props "$n")" >>"$(log_file "$n")"
    nohup "$potok_bin" server "$(props "$n")" >>"$(log_file "$n")" 2>&1 </dev/null &
    echo $! >"$(pid_file "$n")"
    echo "node $n started (pid $!, log $(log_file "$n"))"
  done
  # Wait for every node's client listener; a node that exits is reported with its log tail.
  deadline=$((SECONDS + START_WAIT_S))
  for n in $NODES; do
    addr="$(listener "$n" PLAINTEXT)"
    until listening "$addr"; do
      if ! node_pid "$n" >/dev/null; then
        echo "cluster.sh: node $n exited during startup; last lines of $(log_file "$n"):" >&2
        tail -5 "$(log_file "$n")" | sed 's/^/  /' >&2
        failed=1
        break
      fi
      if (( SECONDS >= deadline )); then
        echo "cluster.sh: node $n does not listen on $addr after ${START_WAIT_S} s (log $(log_file "$n"))" >&2
        failed=1
        break
      fi
      sleep 0.1
    done
  done
  (( failed == 0 )) && echo "cluster up: bootstrap servers $(bootstrap)"
  return $failed
}

bootstrap() {
  local n out=""
  for n in $NODES; do out="${out:+$out,}$(listener "$n" PLAINTEXT)"; done
  echo "$out"
}

stop() {
  local n pid pids=() deadline failed=0
  for n in $NODES; do
    if pid="$(node_pid "$n")"; then
      kill -TERM "$pid" && pids+=("$n:$pid")
    fi
  done
  if [[ ${#pids[@]} -eq 0 ]]; then
    echo "no node running"
    return 0
  fi
  deadline=$((SECONDS + STOP_WAIT_S))
  for entry in "${pids[@]}"; do
    n="${entry%%:*}"; pid="${entry#*:}"
    while running "$pid"; do
      if (( SECONDS >= deadline )); then
        echo "cluster.sh: node $n (pid $pid) is still running ${STOP_WAIT_S} s after SIGTERM" >&2
        failed=1
        break
      fi
      sleep 0.1
    done
    running "$pid" || { rm -f "$(pid_file "$n")"; echo "node $n stopped"; }
  done
  return $failed
}

status() {
  local n pid addr ctl state rc=1
  for n in $NODES; do
    addr="$(listener "$n" PLAINTEXT)"; ctl="$(listener "$n" CONTROLLER)"
    if pid="$(node_pid "$n")"; then
      rc=0
      state="running (pid $pid)"
      listening "$addr" && state="$state, clients $addr" || state="$state, not listening on $addr yet"
      listening "$ctl" && state="$state, controller $ctl"
    else
      state="stopped"
    fi
    echo "node $n: $state; data $(du -sh "$ROOT/$n/data" 2>/dev/null | cut -f1 || echo none)"
  done
  # the cluster's own view, where this potok has `potok cluster status`
  if (( rc == 0 )) && "$potok_bin" cluster status --help >/dev/null 2>&1; then
    echo
    timeout 20 "$potok_bin" cluster status --bootstrap-server "$(bootstrap)"
  fi
  return $rc
}

# Stop, then delete every node's log.dirs (as its properties give them) and $ROOT.
wipe() {
  local n dir
  stop || return 1
  for n in $NODES; do
    for dir in $(sed -n 's/^log\.dirs\?=//p' "$(props "$n")" | tr ',' ' '); do
      rm -rf "$dir" && echo "removed $dir"
    done
  done
  rm -rf "$ROOT" && echo "removed $ROOT"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
wipe) wipe ;;
*) echo "usage: $0 start|stop|status|wipe" >&2; exit 2 ;;
esac

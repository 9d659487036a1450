#!/usr/bin/env bash
# Kafka's kafka-server-stop.sh: stops the brokers running this checkout's potok
# binary (however they were started) with SIGTERM ($SIGNAL, as Kafka's script) and
# waits until they have flushed and exited. Prints "No kafka server to stop" and
# exits 1 when none runs, as Kafka's does.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.potok-bin.sh"
signal="${SIGNAL:-TERM}"
wait_s="${POTOK_STOP_WAIT_S:-120}"
binary="$(readlink -f "$potok_bin" 2>/dev/null || echo "$potok_bin")"

# `potok server` processes of this binary (a rebuilt binary reads "... (deleted)").
pids=()
if [[ -r /proc/self/cmdline ]]; then
  for proc in /proc/[0-9]*; do
    exe="$(readlink "$proc/exe" 2>/dev/null)" || continue
    [[ "${exe% (deleted)}" == "$binary" ]] || continue
    args=()
    while IFS= read -r -d "" arg; do args+=("$arg"); done 2>/dev/null < "$proc/cmdline"
    [[ "${args[1]:-}" == "server" ]] && pids+=("${proc#/proc/}")
  done
else
  while read -r pid exe sub _; do
    [[ "$exe" == "$binary" && "$sub" == "server" ]] && pids+=("$pid")
  done < <(ps -eo pid=,args=)
fi

if [[ ${#pids[@]} -eq 0 ]]; then
  echo "No kafka server to stop"
  exit 1
fi
kill -s "$signal" "${pids[@]}"

# Gone, or a zombie waiting for its parent: it has finished either way.
running() {
  kill -0 "$1" 2>/dev/null || return 1
  [[ -r "/proc/$1/stat" ]] || return 0
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)"
  [[ "$state" != "Z" ]]
}
deadline=$((SECONDS + wait_s))
for pid in "${pids[@]}"; do
  while running "$pid"; do
    if (( SECONDS >= deadline )); then
      echo "kafka-server-stop.sh: broker $pid is still running after ${wait_s} s" >&2
      exit 1
    fi
    sleep 0.1
  done
done

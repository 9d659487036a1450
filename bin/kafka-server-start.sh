#!/usr/bin/env bash
# Kafka's kafka-server-start.sh: `kafka-server-start.sh [-daemon] server.properties
# [--override key=value ...]` starts a Potok broker with the same arguments.
# With -daemon, as Kafka's, it runs in the background, detached from the terminal,
# with its log in $LOG_DIR (default: logs/ of this checkout): the broker's log in
# server.log, anything else it prints in kafkaServer.out. Stop it with
# bin/kafka-server-stop.sh.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.potok-bin.sh"
if [[ $# -lt 1 ]]; then
  echo "USAGE: $0 [-daemon] server.properties [--override property=value]*"
  exit 1
fi
if [[ "$1" == "-daemon" ]]; then
  shift
  log_dir="${LOG_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/logs}"
  mkdir -p "$log_dir" || exit 1
  nohup "$potok_bin" server "$@" >"$log_dir/kafkaServer.out" 2>>"$log_dir/server.log" </dev/null &
  exit 0
fi
exec "$potok_bin" server "$@"

#!/usr/bin/env bash
# Kafka's kafka-server-start.sh: `kafka-server-start.sh config/server.properties
# [--override key=value ...]` starts a Potok broker with the same arguments.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.potok-bin.sh"
if [[ "${1:-}" == "-daemon" ]]; then
  echo "kafka-server-start.sh: -daemon is not supported; running in the foreground" >&2
  shift
fi
exec "$potok_bin" server "$@"

#!/usr/bin/env bash
# Kafka's kafka-dump-log.sh, served by `potok kafka-dump-log` (same flags).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.potok-bin.sh"
exec "$potok_bin" kafka-dump-log "$@"

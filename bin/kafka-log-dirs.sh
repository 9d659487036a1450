#!/usr/bin/env bash
# Kafka's kafka-log-dirs.sh, served by `potok kafka-log-dirs` (same flags).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.potok-bin.sh"
exec "$potok_bin" kafka-log-dirs "$@"

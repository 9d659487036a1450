#!/usr/bin/env bash
# Kafka's kafka-configs.sh, served by `potok kafka-configs` (same flags).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.potok-bin.sh"
exec "$potok_bin" kafka-configs "$@"

#!/usr/bin/env bash
# Kafka's kafka-consumer-groups.sh, served by `potok kafka-consumer-groups` (same flags).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.potok-bin.sh"
exec "$potok_bin" kafka-consumer-groups "$@"

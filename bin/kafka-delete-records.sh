#!/usr/bin/env bash
# Kafka's kafka-delete-records.sh, served by `potok kafka-delete-records` (same flags).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.potok-bin.sh"
exec "$potok_bin" kafka-delete-records "$@"

#!/usr/bin/env bash
# Kafka's kafka-get-offsets.sh, served by `potok kafka-get-offsets` (same flags).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.potok-bin.sh"
exec "$potok_bin" kafka-get-offsets "$@"

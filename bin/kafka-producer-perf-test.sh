#!/usr/bin/env bash
# Kafka's kafka-producer-perf-test.sh, served by `potok kafka-producer-perf-test` (same flags).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.potok-bin.sh"
exec "$potok_bin" kafka-producer-perf-test "$@"

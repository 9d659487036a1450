#!/usr/bin/env bash
# Kafka's kafka-consumer-perf-test.sh, served by `potok kafka-consumer-perf-test` (same flags).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.potok-bin.sh"
exec "$potok_bin" kafka-consumer-perf-test "$@"

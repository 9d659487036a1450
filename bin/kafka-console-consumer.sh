#!/usr/bin/env bash
# Kafka's kafka-console-consumer.sh, served by `potok kafka-console-consumer` (same flags).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.potok-bin.sh"
exec "$potok_bin" kafka-console-consumer "$@"

#!/usr/bin/env bash
# Kafka's kafka-topics.sh, served by `potok kafka-topics` (same flags).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.potok-bin.sh"
exec "$potok_bin" kafka-topics "$@"

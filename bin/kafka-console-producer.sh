#!/usr/bin/env bash
# Kafka's kafka-console-producer.sh, served by `potok kafka-console-producer` (same flags).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.potok-bin.sh"
exec "$potok_bin" kafka-console-producer "$@"

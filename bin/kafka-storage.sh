#!/usr/bin/env bash
# Kafka's kafka-storage.sh (random-uuid, format, info), served by `potok kafka-storage`.
# Formatting is optional for Potok: a fresh log directory initialises itself.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.potok-bin.sh"
exec "$potok_bin" kafka-storage "$@"

#!/usr/bin/env bash
# Kafka's kafka-metadata-quorum.sh (describe --status | --replication), served by
# `potok kafka-metadata-quorum`.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.potok-bin.sh"
exec "$potok_bin" kafka-metadata-quorum "$@"

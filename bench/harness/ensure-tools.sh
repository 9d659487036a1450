#!/usr/bin/env bash
# Builds the benchmark tools (build-tools.sh) unless $BENCH_CACHE already has them; used by
# bench/run.sh and cluster.sh so that either runs from a fresh clone.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${BENCH_CACHE:-$HOME/.cache/kbench}"
if [ ! -x "$CACHE/bin/rdkafka_performance" ] || [ ! -x "$CACHE/venv/bin/python" ]; then
  echo "[ensure-tools $(date +%T)] building benchmark tools (once per machine)" >&2
  # build-tools.sh builds librdkafka from Debian's source package: enable deb-src.
  SOURCES=/etc/apt/sources.list.d/debian.sources
  if [ -f "$SOURCES" ] && ! grep -q '^Types:.*deb-src' "$SOURCES"; then
    echo "[ensure-tools] enabling deb-src in $SOURCES" >&2
    sed -i 's/^Types: deb$/Types: deb deb-src/' "$SOURCES"
    apt-get update -qq >&2
  fi
  BENCH_CACHE="$CACHE" "$HERE/build-tools.sh" >/dev/null
fi

# Sourced by the Kafka-named scripts in this directory: sets $potok_bin to the potok
# binary: $POTOK_BIN if set, else this checkout's release build, else its debug
# build, else `potok` on PATH.
_potok_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${POTOK_BIN:-}" ]]; then
  potok_bin="$POTOK_BIN"
elif [[ -x "$_potok_repo/target/release/potok" ]]; then
  potok_bin="$_potok_repo/target/release/potok"
elif [[ -x "$_potok_repo/target/debug/potok" ]]; then
  potok_bin="$_potok_repo/target/debug/potok"
elif command -v potok >/dev/null 2>&1; then
  potok_bin="$(command -v potok)"
else
  echo "$(basename "$0"): cannot find the potok binary; build it (cargo build --release) or set POTOK_BIN" >&2
  exit 127
fi
unset _potok_repo

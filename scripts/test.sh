#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs it too).
# Release mode: the simulated-site tests run in real time and need the
# optimised build to keep up on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace "$@"

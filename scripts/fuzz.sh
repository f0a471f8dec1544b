#!/usr/bin/env bash
# scripts/fuzz.sh [SECS_PER_TARGET]: builds every cargo-fuzz target of
# fuzz/Cargo.toml (`cargo fuzz list`, so a new [[bin]] needs no edit here)
# and runs each for SECS_PER_TARGET seconds (default 30) from a copy of its
# seed corpus (fuzz/corpus/<target>/) plus its past crashes
# (fuzz/regressions/<target>/, replayed first), in a temporary directory so
# the tree stays clean. Prints executions and coverage per target. A crash,
# a timeout or an out-of-memory fails the run and its input is copied into
# fuzz/regressions/<target>/ (commit it with the fix).
#
# Environment: FUZZ_RSS_MB (memory limit per target, default 2048),
# FUZZ_SANITIZER (cargo fuzz -s: none (default: the crate is safe Rust
# outside the I/O layer, which no target reaches; it halves build and run
# time) or address), FUZZ_JOBS (cargo build jobs).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-30}"
case "$secs" in '' | *[!0-9]* | 0 | 0*) echo "usage: scripts/fuzz.sh [SECS_PER_TARGET]" >&2; exit 2 ;; esac
rss="${FUZZ_RSS_MB:-2048}"
sanitizer="${FUZZ_SANITIZER:-none}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"

if ! cargo "+$toolchain" fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: needs cargo-fuzz and the $toolchain toolchain" \
    "(rustup toolchain install $toolchain; cargo install cargo-fuzz --locked)" >&2
  exit 2
fi

jobs=()
[ -n "${FUZZ_JOBS:-}" ] && jobs=(--jobs "$FUZZ_JOBS")
build_start=$(date +%s)
cargo "+$toolchain" fuzz build -s "$sanitizer" "${jobs[@]}"
echo "fuzz build: $(($(date +%s) - build_start)) s"

triple="$(rustc "+$toolchain" -vV | sed -n 's/^host: //p')"
bindir="target/$triple/release"
mapfile -t targets < <(cargo "+$toolchain" fuzz list)
work="$(mktemp -d -t fuzz.XXXXXX)"
trap 'rm -rf "$work"' EXIT

failed=()
printf '%-18s %12s %8s %8s %8s  %s\n' target executions exec/s cov ft result
for t in "${targets[@]}"; do
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  if [ -d "corpus/$t" ]; then cp -r "corpus/$t/." "$work/$t/corpus/"; fi
  dirs=("$work/$t/corpus")
  if [ -d "regressions/$t" ] && [ -n "$(ls -A "regressions/$t")" ]; then dirs+=("regressions/$t"); fi
  log="$work/$t/log"
  rc=0
  "$bindir/$t" "${dirs[@]}" -max_total_time="$secs" -rss_limit_mb="$rss" -timeout=10 \
    -artifact_prefix="$work/$t/artifacts/" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
  ft="$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
  result=ok
  if [ "$rc" -ne 0 ]; then
    result="FAILED (exit $rc)"
    failed+=("$t")
    mkdir -p "regressions/$t"
    for a in "$work/$t/artifacts/"*; do
      [ -e "$a" ] || continue
      cp "$a" "regressions/$t/"
      result="$result, input saved: fuzz/regressions/$t/$(basename "$a")"
    done
  fi
  printf '%-18s %12s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$result"
  if [ "$rc" -ne 0 ]; then
    echo "---- $t: last lines of libFuzzer's output"
    grep -v '^#[0-9]' "$log" | tail -40
    echo "----"
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz.sh: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, $secs s each, no crash"

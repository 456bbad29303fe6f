#!/usr/bin/env bash
# Coverage-guided fuzzing of the decoders that face untrusted input (docs/fuzzing.md).
#
#   scripts/fuzz.sh [seconds-per-target]      (default 20; e.g. 3600 for a long run)
#
# Installs cargo-fuzz when it is missing (cargo install --locked, from crates.io), builds every
# target once on the stable toolchain (no sanitizer, optimised, debug assertions and overflow
# checks on), then runs each target for the given time starting from a temporary copy of its
# committed seed corpus in fuzz/corpus/ (runs never grow the committed corpus). Prints one
# line per target and exits non-zero if any target crashed, hung or ran out of memory; the
# crashing input is kept in fuzz/artifacts/<target>/ (not committed).
#
# Environment: FUZZ_TARGETS="a b" runs only those targets; FUZZ_KEEP_CORPUS=dir copies each
# run's grown corpus to dir/<target> for inspection; CARGO_TARGET_DIR and CARGO_BUILD_JOBS are
# honoured (on a shared machine: CARGO_BUILD_JOBS=1 nice -n 15 scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-20}
case "$secs" in
  '' | *[!0-9]* | 0) echo "usage: $0 [seconds-per-target > 0]" >&2; exit 2 ;;
esac

all_targets="tc3_authorization ciphertext_blob frame_decoder policy_document request_json public_key"
targets=${FUZZ_TARGETS:-$all_targets}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

started=$SECONDS
echo "==> building the fuzz targets"
if [ "$targets" = "$all_targets" ]; then
  (cd fuzz && cargo fuzz build --sanitizer none -O -a)
else
  for t in $targets; do (cd fuzz && cargo fuzz build --sanitizer none -O -a "$t"); done
fi
host=$(rustc -vV | sed -n 's/^host: //p')
target_dir=${CARGO_TARGET_DIR:-fuzz/target}
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
bin_dir="$target_dir/$host/release"
for t in $targets; do
  [ -x "$bin_dir/$t" ] || { echo "fuzz target $t was not built ($bin_dir/$t)" >&2; exit 1; }
done
build_secs=$((SECONDS - started))

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
summary=()
for t in $targets; do
  corpus="$work/corpus-$t"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  cp fuzz/corpus/"$t"/* "$corpus"/
  seeds=$(find "$corpus" -type f | wc -l)
  log="$work/$t.log"
  echo "==> $t for ${secs}s"
  rc=0
  "$bin_dir/$t" "$corpus" \
    -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 || rc=$?
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1 || true; }
  execs=$(stat number_of_executed_units)
  rate=$(stat average_exec_per_sec)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2 || true)
  units=$(find "$corpus" -type f | wc -l)
  if [ -n "${FUZZ_KEEP_CORPUS:-}" ]; then
    mkdir -p "$FUZZ_KEEP_CORPUS/$t" && cp "$corpus"/* "$FUZZ_KEEP_CORPUS/$t"/
  fi
  if [ "$rc" -eq 0 ]; then
    verdict="ok     crashes 0"
  else
    artifact=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -1 | sed 's/Test unit written to //' || true)
    verdict="FAILED (exit $rc) ${artifact:-no artifact}"
    failed+=("$t")
    echo "---- $t: last lines of the libFuzzer log"
    grep -vE '^#[0-9]+\s+(NEW|REDUCE|pulse)' "$log" | tail -40
  fi
  summary+=("$(printf '%-18s %5ss  %10s execs  %7s/s  cov %5s  corpus %3s -> %4s  %s' \
    "$t" "$secs" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$seeds" "$units" "$verdict")")
done

echo "==> summary (build ${build_secs}s, total $((SECONDS - started))s)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi

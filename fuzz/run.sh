#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS, one after another; fails if any crashes,
# fails an assertion, leaks or spends more than 10 s on one input. One summary line per target.
#
#   fuzz/run.sh 20                 # CI runs this (see .ci/run)
#
# Cost, measured 2026-12 on a shared 2-core machine: the first build (the whole daemon tree in
# release with ASan and coverage instrumentation, into fuzz/target) took 1,700 CPU-seconds, about
# 14 minutes on 2 idle cores; a rebuild after a change to the targets takes seconds. At 20 s a
# target the runs take under 2 minutes (frame ~240k, ews ~180k, autodiscover ~175k,
# oauth_error ~330k, config ~58k executions).
#   RUSTC_BOOTSTRAP=1 cargo fuzz run ews fuzz/artifacts/ews/crash-...   # replay a finding
#
# Each target starts from the seeds written for it in fuzz/corpus/TARGET and, at run time only,
# from Microsoft's published samples in ../shared/vectors (MSLINK_VECTORS overrides the place);
# both are copied into a temporary corpus, so what libFuzzer finds is never committed by accident.
# cargo-fuzz runs on the stable toolchain with RUSTC_BOOTSTRAP=1 (it needs -Z flags); `.ci/setup`
# installs it.
set -euo pipefail
seconds=${1:?usage: fuzz/run.sh SECONDS (per target)}
cd "$(dirname "$0")"
repo=$(cd .. && pwd)
vectors=${MSLINK_VECTORS:-$(dirname "$repo")/shared/vectors}
if [ ! -d "$vectors" ]; then
  echo "fuzz: Microsoft's samples are not at $vectors; check out shared/ beside the repository" \
       "or set MSLINK_VECTORS" >&2
  exit 1
fi
command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz is missing; run \`bash .ci/setup\`" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1

targets=(frame ews autodiscover oauth_error config keytab)
# Which shared/vectors folders seed which target (the config target also gets config/*.toml).
declare -A samples=([frame]="" [ews]="ews" [autodiscover]="ews_autodiscover" [oauth_error]="identity graph" [config]="" [keytab]="")

# CI builds without a sanitizer, in the dev profile: the daemon is safe Rust, libFuzzer's
# coverage guidance is what finds the inputs, and the sanitised release build of the whole daemon
# tree takes ~14 minutes on 2 cores against a few here. FUZZ_BUILD="" for the sanitised build.
build_flags=(${FUZZ_BUILD- -s none --dev})
started=$(date +%s)
cargo fuzz build "${build_flags[@]}"
echo "fuzz: built ${#targets[@]} targets in $(( $(date +%s) - started ))s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for target in "${targets[@]}"; do
  corpus="$work/corpus/$target"
  mkdir -p "$corpus"
  cp corpus/"$target"/* "$corpus"/
  for dir in ${samples[$target]}; do
    for file in "$vectors/$dir"/*; do cp "$file" "$corpus/vector-$dir-$(basename "$file")"; done
  done
  if [ "$target" = config ]; then cp "$repo"/config/*.toml "$corpus"/; fi
  log="$work/$target.log"
  if cargo fuzz run "${build_flags[@]}" "$target" "$corpus" -- -max_total_time="$seconds" -timeout=10 \
       -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    failed+=("$target")
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
  printf 'fuzz: %-12s %-6s %10s executions in %ss, %s, corpus %s inputs\n' \
    "$target" "$result" "${execs:-?}" "$seconds" "${cov:-cov: ?}" "$(ls "$corpus" | wc -l)"
  if [ "$result" = FAILED ]; then
    tail -n 60 "$log" >&2
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${failed[*]} failed; the input that did it is in fuzz/artifacts/TARGET/ (replay:" \
       "RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/FILE)" >&2
  exit 1
fi
echo "fuzz: done in $(( $(date +%s) - started ))s"

#!/bin/sh
# One bounded libFuzzer run (the fuzz.<harness> ctests, tests/fuzz/CMakeLists.txt).
# usage: run_fuzzer.sh BINARY SEED_DIR WORK_DIR SECONDS MAX_LEN MALLOC_LIMIT_MB [libFuzzer flags...]
# New inputs go to WORK_DIR/corpus (the seed folder in the source tree is
# only read); a finding leaves its input in WORK_DIR/artifacts/ and fails the
# test. The last lines of the log give the executions (stat::number_of_executed_units).
set -u
bin=$1 seeds=$2 work=$3 secs=$4 max_len=$5 malloc_mb=$6
shift 6
mkdir -p "$work/corpus" "$work/artifacts" || exit 1
rc=0
"$bin" -max_total_time="$secs" -max_len="$max_len" -rss_limit_mb=2048 \
  -malloc_limit_mb="$malloc_mb" -timeout=10 -print_final_stats=1 "$@" \
  -artifact_prefix="$work/artifacts/" "$work/corpus" "$seeds" >"$work/log" 2>&1 || rc=$?
if [ "$rc" -ne 0 ]; then
  tail -n 60 "$work/log"
  echo "FINDING: $bin exited $rc; reproducer in $work/artifacts/ (add it to $seeds as a regression input)"
  exit "$rc"
fi
grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs)' "$work/log" | tail -n 2
grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "$work/log"

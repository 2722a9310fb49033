#!/usr/bin/env bash
# Bounded fuzz run of every target in fuzz/: each starts from its checked-in
# seeds (fuzz/seeds/<target>) plus what earlier runs found (fuzz/corpus/,
# git-ignored) and runs for FUZZ_SECONDS (default 10). Any crash fails the
# run and leaves the input in fuzz/artifacts/<target>/.
#   scripts/fuzz.sh                 all targets, 10 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh request
# Needs scripts/setup.sh (cargo-fuzz). Stable toolchain: no sanitizer (-s none).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"
fuzz="$root/.tools/cargo/bin/cargo-fuzz"
seconds="${FUZZ_SECONDS:-10}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <("$fuzz" list)
fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no fuzz targets found in fuzz/ (cargo fuzz list printed none)" >&2
  exit 1
fi

"$fuzz" build -s none
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="$(mktemp)"
  # libFuzzer stops itself after max_total_time; timeout is the backstop
  # (generous: a slow machine, or a rebuild, must not pass for a crash).
  if ! timeout $((seconds * 2 + 300)) "$fuzz" run -s none "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    # The assertion that failed (a backtrace would push it out of the tail).
    grep -A4 'panicked at' "$log" >&2 || true
    tail -n 25 "$log" >&2
    echo "fuzz: target $t failed; a crashing input is kept under fuzz/artifacts/$t/" >&2
    rm -f "$log"
    exit 1
  fi
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
  if [ -z "$runs" ] || [ "$runs" -eq 0 ]; then
    tail -n 40 "$log" >&2
    echo "fuzz: target $t ran no input (executions: ${runs:-none reported}); a fuzz run that tests nothing fails" >&2
    rm -f "$log"
    exit 1
  fi
  echo "fuzz: $t: $runs executions in ${seconds} s, no crash"
  rm -f "$log"
done

#!/usr/bin/env bash
# Runs every fuzz target under fuzz/ for SECONDS each (default 20), from
# the checked-in seeds (fuzz/corpus/<target>, read only) plus a scratch
# corpus under fuzz/target/scratch-corpus. A crash fails the script; libFuzzer
# leaves the input under fuzz/artifacts/<target>/.
#
# Built without a sanitizer: the crates under test deny unsafe code (but
# for one file mapping), so AddressSanitizer would find nothing a panic
# does not, and it halves the runs a second. Needs a nightly toolchain
# (cargo-fuzz passes -Z flags) and cargo-fuzz, which is installed when
# missing. Without nightly it fails: the fuzz targets are part of the
# suite, not an extra.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz.sh: no nightly toolchain; trying: rustup toolchain install nightly --profile minimal" >&2
  if ! rustup toolchain install nightly --profile minimal >&2; then
    cat >&2 <<'MSG'
########################################################################
fuzz.sh: ERROR: the fuzz targets need a nightly toolchain and none could
be installed. Install one (rustup toolchain install nightly) and run
again. The fuzz targets were NOT run.
########################################################################
MSG
    exit 1
  fi
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

cd fuzz
cargo fmt -- --check
cargo +nightly fuzz build --release --sanitizer none
targets=$(cargo +nightly fuzz list)
for t in $targets; do
  scratch="target/scratch-corpus/$t"
  mkdir -p "$scratch"
  echo "fuzz.sh: $t for ${seconds}s" >&2
  log="target/fuzz-logs/$t.log"
  mkdir -p "$(dirname "$log")"
  # The scratch corpus comes first: new inputs go there, never into the seeds.
  set +e
  cargo +nightly fuzz run --release --sanitizer none "$t" "$scratch" "corpus/$t" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" >&2 || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz.sh: $t FAILED (status $status); log fuzz/$log, input under fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
echo "fuzz.sh: every target ran ${seconds}s without a failure" >&2

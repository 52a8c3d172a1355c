#!/usr/bin/env bash
# Runs the whole test suite. As root on a fresh Debian machine it first
# installs what the privileged tests use (fuse3, fuse-overlayfs, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in fuse3 fuse-overlayfs xfsprogs btrfs-progs e2fsprogs attr acl golang-go golang-github-docker-docker-dev golang-github-vbatts-tar-split-dev golang-github-gotestyourself-gotest.tools-dev umoci skopeo docker.io busybox-static; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing: ${need[*]}" >&2
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "not installing ${need[*]} (not root): tests that need them say so and skip" >&2
  fi
fi
command -v pjdfstest >/dev/null || cargo install pjdfstest --locked || echo "pjdfstest not installed: its test skips" >&2

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo test --workspace --all-features

# Coverage-guided fuzzing, a short fixed run of every target; fails loudly
# when there is no nightly toolchain to build them with.
./scripts/fuzz.sh 15

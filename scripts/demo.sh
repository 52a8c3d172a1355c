#!/usr/bin/env bash
# Builds aufsctl and walks through a layer store on a temporary root:
# layers with parents, Docker's on-disk layout, status and listing.
# Run as root to also see unions mounted (FUSE where the kernel has no aufs).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && ! dpkg -s fuse3 >/dev/null 2>&1 && command -v apt-get >/dev/null; then
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
fi

cargo build --release -q -p aufs-cli
ctl="$PWD/target/release/aufsctl"
[ -n "${CARGO_TARGET_DIR:-}" ] && ctl="$CARGO_TARGET_DIR/release/aufsctl"
root="$(mktemp -d /tmp/aufsctl-demo.XXXXXX)"
trap '"$ctl" --root "$root" cleanup >/dev/null 2>&1 || true; rm -rf "$root"' EXIT
run() { echo "\$ aufsctl $*"; "$ctl" --root "$root" "$@"; }

run status
run create base
run create app --parent base
run create-rw container --parent app
run ls
run --json ls
echo "\$ cat $root/layers/container"; cat "$root/layers/container"
if "$ctl" --root "$root" help 2>/dev/null | grep -q '^  mount'; then
  if [ "$(id -u)" = 0 ]; then
    echo hello > "$root/diff/base/greeting"
    mnt=$(run mount container | tail -n1)
    echo "$mnt"
    echo "\$ cat $mnt/greeting"; cat "$mnt/greeting"
    run unmount container
  else
    echo "(not root: skipping the union mount part of the demo)"
  fi
fi
run rm container
run exists container || echo "(exit $?: container is gone)"
run status

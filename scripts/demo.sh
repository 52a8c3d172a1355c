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
# A base layer from a tarball, as `docker load` would give it.
src="$root.src"; mkdir -p "$src/etc" "$src/usr/bin"
echo hello > "$src/etc/greeting"; echo 'echo hi' > "$src/usr/bin/hi"; chmod 755 "$src/usr/bin/hi"
tar --format=pax -C "$src" -cf "$root.tar" . && rm -rf "$src"
run create base
run apply base "$root.tar"
echo "\$ aufsctl diff base | cmp - base.tar   # the original bytes, so digests verify"
"$ctl" --root "$root" diff base | cmp - "$root.tar" && echo "identical"
run create app --parent base
echo 'echo app' > "$root/diff/app/app.sh"; touch "$root/diff/app/.wh.usr"
run create-rw container --parent app
run ls
run --json ls
echo "\$ cat $root/layers/container"; cat "$root/layers/container"
if [ "$(id -u)" = 0 ]; then
  echo "\$ aufsctl mount container"
  mnt=$("$ctl" --root "$root" mount container)
  echo "$mnt"
  echo "\$ ls $mnt"; ls "$mnt"
  echo "\$ cat $mnt/etc/greeting"; cat "$mnt/etc/greeting"
  echo changed > "$mnt/etc/greeting"
  run changes container
  run diff-size container
  run unmount container
else
  echo "(not root: skipping the union mount part of the demo)"
fi
run changes app
run rm container
run exists container || echo "(exit $?: container is gone)"
run status
rm -f "$root.tar"

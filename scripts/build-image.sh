#!/usr/bin/env bash
# Builds the rustcd container image from local files only (FROM scratch; no registry).
#   scripts/build-image.sh [--debug] [--tag NAME]   (default: release build, tag rustcd:latest)
# With RUSTCD_BIN set, that binary is packaged instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
tag=rustcd:latest
while (($#)); do
  case "$1" in
    --debug) profile=debug ;;
    --tag) tag="$2"; shift ;;
    *) echo "usage: $0 [--debug] [--tag NAME]" >&2; exit 2 ;;
  esac
  shift
done
bin="${RUSTCD_BIN:-}"
if [[ -z "$bin" ]]; then
  if [[ "$profile" == release ]]; then cargo build --release --locked --bin rustcd; else cargo build --locked --bin rustcd; fi
  bin="target/$profile/rustcd"
fi
root=.image-rootfs
rm -rf "$root"
mkdir -p "$root/usr/local/bin" "$root/var/lib/rustcd" "$root/tmp" "$root/etc"
install -m 0755 "$bin" "$root/usr/local/bin/rustcd"
strip "$root/usr/local/bin/rustcd" 2>/dev/null || true
# The shared libraries the binary needs (glibc, libgcc_s, libm and the loader), at the
# paths the binary looks for them.
ldd "$bin" | awk '/=>/ {print $3} /^[ \t]*\// {print $1}' | while read -r lib; do
  [[ -f "$lib" ]] || continue
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
printf 'root:x:0:0:root:/:/usr/local/bin/rustcd\n' > "$root/etc/passwd"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
DOCKER_BUILDKIT=0 docker build -q -t "$tag" . >/dev/null 2>&1 || docker build -t "$tag" .
echo "built $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"

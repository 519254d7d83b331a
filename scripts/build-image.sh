#!/usr/bin/env bash
# Builds the rustcd container image from local files only (FROM scratch; no registry). The image holds both
# binaries: /usr/local/bin/rustcd (the entrypoint: an etcd member) and /usr/local/bin/rustcd-operator (run by
# the Helm chart's Deployment with `command:`).
#   scripts/build-image.sh [--debug] [--tag NAME]   (default: release build, tag rustcd:latest)
# With RUSTCD_BIN set, that rustcd binary is packaged instead of building one; the operator is then
# RUSTCD_OPERATOR_BIN, else the rustcd-operator beside RUSTCD_BIN or in target/<profile>/, else built.
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
cargo_build() {
  if [[ "$profile" == release ]]; then cargo build --release --locked "$@"; else cargo build --locked "$@"; fi
}

bin="${RUSTCD_BIN:-}"
operator_bin="${RUSTCD_OPERATOR_BIN:-}"
if [[ -z "$bin" ]]; then
  cargo_build --bin rustcd --bin rustcd-operator
  bin="target/$profile/rustcd"
  operator_bin="target/$profile/rustcd-operator"
elif [[ -z "$operator_bin" ]]; then
  for candidate in "$(dirname "$bin")/rustcd-operator" "target/$profile/rustcd-operator"; do
    if [[ -x "$candidate" ]]; then operator_bin="$candidate"; break; fi
  done
  if [[ -z "$operator_bin" ]]; then
    cargo_build --bin rustcd-operator
    operator_bin="target/$profile/rustcd-operator"
  fi
fi

root=.image-rootfs
rm -rf "$root"
mkdir -p "$root/usr/local/bin" "$root/var/lib/rustcd" "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"
binaries=("$bin" "$operator_bin")
install -m 0755 "$bin" "$root/usr/local/bin/rustcd"
install -m 0755 "$operator_bin" "$root/usr/local/bin/rustcd-operator"
strip "$root"/usr/local/bin/* 2>/dev/null || true
# The shared libraries the binaries need (glibc, libgcc_s, libm and the loader), at the
# paths the binaries look for them.
for b in "${binaries[@]}"; do ldd "$b"; done | awk '/=>/ {print $3} /^[ \t]*\// {print $1}' | sort -u | while read -r lib; do
  [[ -f "$lib" ]] || continue
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# root for the members (they write /var/lib/rustcd); nonroot (65532) for the operator, which the chart runs
# with runAsNonRoot, runAsUser 65532 and a read-only root filesystem.
printf 'root:x:0:0:root:/:/usr/local/bin/rustcd\nnonroot:x:65532:65532:nonroot:/:/usr/local/bin/rustcd-operator\n' \
  > "$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
DOCKER_BUILDKIT=0 docker build -q -t "$tag" . >/dev/null 2>&1 || docker build -t "$tag" .
echo "built $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes; $(ls "$root/usr/local/bin" | tr '\n' ' '))"

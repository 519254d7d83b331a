#!/usr/bin/env bash
# Installs what building and testing rustcd needs on a fresh Debian machine.
#   scripts/setup.sh             protoc (to build rustcd)
#   scripts/setup.sh --with-etcd also Debian's etcd 3.4 server and etcdctl (the test oracle), and moto's
#                                S3 server (PyPI moto[server], in .cache/moto-venv) for the backup tests
#   scripts/setup.sh --with-kubernetes  also builds (once per machine, cached outside the clone by
#                                version) the Kubernetes 1.20.2 control plane: scripts/k8s.sh build
# Both also install Helm's Go library (the helm-sdkpy wheel, from PyPI) into .cache/helm-venv for the chart
# tests (tests/helm_chart.rs, scripts/helm_chart.py); there is no helm binary.
# Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail

want=(protobuf-compiler)
with_kubernetes=false
with_s3=false
for arg in "$@"; do
  case "$arg" in
    --with-etcd) want+=(etcd-server etcd-client curl); with_s3=true ;;
    --with-kubernetes) with_kubernetes=true ;;
    *) echo "usage: $0 [--with-etcd] [--with-kubernetes]" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  # policy-rc.d keeps the etcd-server package from starting a system etcd on 127.0.0.1:2379.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  $SUDO rm -f /usr/sbin/policy-rc.d
fi

# If a packaged etcd service is running anyway, stop it: rustcd's default port is 2379 too.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  echo "setup: stopping the Debian etcd service that holds 127.0.0.1:2379" >&2
  systemctl stop etcd || true
  systemctl disable etcd >/dev/null 2>&1 || true
fi
if pgrep -x etcd >/dev/null 2>&1 && pgrep -a -x etcd | grep -q -- '/var/lib/etcd\|^[0-9]* /usr/bin/etcd$'; then
  echo "setup: stopping the packaged etcd process on 127.0.0.1:2379" >&2
  pkill -f '^/usr/bin/etcd$' || true
fi

command -v protoc >/dev/null || { echo "setup: protoc is still missing" >&2; exit 1; }

# Helm's Go library for the chart tests. helm-sdkpy declares Python >= 3.12 but works on 3.11, hence
# --ignore-requires-python. Pinned: scripts/helm_chart.py relies on its Install and Lint results.
helm_venv="$(cd "$(dirname "$0")/.." && pwd)/.cache/helm-venv"
helm_python="$helm_venv/bin/python"
if ! "$helm_python" -c 'import helm_sdkpy, yaml' >/dev/null 2>&1; then
  echo "setup: installing helm-sdkpy into .cache/helm-venv" >&2
  python3 -m venv "$helm_venv"
  "$helm_python" -m pip install --quiet --disable-pip-version-check --ignore-requires-python \
    'helm-sdkpy==0.1.32' 'PyYAML>=6,<7'
  "$helm_python" -c 'import helm_sdkpy, yaml' || { echo "setup: helm-sdkpy does not import" >&2; exit 1; }
fi

# A real S3 protocol server for the backup tests: moto in server mode (tests/testkit/s3.rs), pinned.
if $with_s3; then
  moto_venv="$(cd "$(dirname "$0")/.." && pwd)/.cache/moto-venv"
  if ! [[ -x "$moto_venv/bin/moto_server" ]]; then
    echo "setup: installing moto[server] into .cache/moto-venv" >&2
    python3 -m venv "$moto_venv"
    "$moto_venv/bin/python" -m pip install --quiet --disable-pip-version-check 'moto[server]==5.2.1'
    [[ -x "$moto_venv/bin/moto_server" ]] || { echo "setup: moto_server is missing after install" >&2; exit 1; }
  fi
fi

if $with_kubernetes; then
  "$(dirname "$0")/k8s.sh" build
fi

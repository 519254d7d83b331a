#!/usr/bin/env bash
# A real Kubernetes 1.20.2 control plane on loopback, built from Debian bookworm's `kubernetes`
# source package (the newest Kubernetes this machine can build; see shared/NOTES.md).
#
#   scripts/k8s.sh build
#       Idempotent. Installs the toolchain through apt, fetches the source package into
#       ${RUSTCD_CACHE:-$HOME/.cache/rustcd}/k8s-<version>/ (never into a clone), builds
#       kube-apiserver, kube-controller-manager, kube-scheduler and kubelet into <cache>/bin/ and
#       the pause image rustcd-k8s-pause:3.2. A stamp file marks a finished build.
#   scripts/k8s.sh up <state-dir> [--store etcd|rustcd] [--store-bin PATH] [--with-kubelet]
#       Starts a 3-member store cluster (client and peer TLS), kube-apiserver, controller-manager
#       and scheduler (and optionally a kubelet on Docker) on free loopback ports. Writes
#       <state-dir>/kubeconfig (admin), <state-dir>/env (facts for tests) and <state-dir>/pids.
#       --with-kubelet makes it a one-node cluster whose pods run in Docker (dockershim, the
#       default bridge): the node `localhost`; cluster DNS (dnsmasq on the bridge address, fed
#       from Endpoints); a default StorageClass `standard` (the controller-manager's hostPath
#       provisioner, volumes under /tmp/hostpath_pv); and the API server on <bridge address>:443,
#       the `kubernetes` Service's IP, so in-cluster clients (KUBERNETES_SERVICE_HOST) reach it
#       without a kube-proxy. One such cluster per Docker daemon.
#   scripts/k8s.sh check <state-dir>
#       A kubectl smoke test of a running cluster: namespaces, a ConfigMap, a ServiceAccount's token
#       Secret, a Deployment's ReplicaSet and Pods (and, with a kubelet, a Pod reading a secret
#       volume and an emptyDir, through kubectl logs and exec).
#   scripts/k8s.sh restart-store-member <state-dir> <N>
#       Starts store member sN (0, 1 or 2) again with the command line `up` started it with (saved
#       in <state-dir>/store/sN.cmd) on its existing data dir, after it was stopped or killed
#       (refuses while it still runs), and waits until it is healthy.
#   scripts/k8s.sh down <state-dir>
#       Stops what `up` started, by PID (TERM, then KILL after a timeout); with a kubelet, also
#       removes its pods' Docker containers and its mounts under <state-dir>.
#
# <state-dir>/env (KEY=VALUE lines, for tests): KUBECONFIG, K8S_VERSION, K8S_APISERVER_URL,
# K8S_CA_FILE, K8S_ADMIN_TOKEN_FILE (bearer token of a system:masters user), K8S_WITH_KUBELET,
# K8S_NODE_NAME, K8S_CLUSTER_DNS, STORE_KIND, STORE_BIN, STORE_ENDPOINTS (comma-separated https URLs),
# STORE_CA_FILE, STORE_CERT_FILE, STORE_KEY_FILE (a client certificate the store accepts),
# STORE_DATA_DIRS, PIDS_FILE, LOG_DIR. Test pods can use the image rustcd-k8s-busybox:1
# (imagePullPolicy: Never; Burstable or BestEffort: Guaranteed pods get oom_score_adj -997, which
# nothing here may set).
#
# K8S_APISERVER_EXTRA_ARGS (up): extra kube-apiserver flags, split on whitespace and appended last
# (so they override the defaults), e.g. K8S_APISERVER_EXTRA_ARGS=--etcd-compaction-interval=10s.
#
# Nothing fetched here is committed: the source lives in the cache only.
set -euo pipefail

K8S_SRC_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
K8S_VERSION="v1.20.2"
K8S_COMMIT="faecb196815e248d3ecfb03c680a4507229c2a56" # upstream v1.20.2
PAUSE_IMAGE="rustcd-k8s-pause:3.2"
# For test pods: Debian's static busybox in a FROM scratch image (nothing can be pulled here).
BUSYBOX_IMAGE="rustcd-k8s-busybox:1"
CACHE_ROOT="${RUSTCD_CACHE:-$HOME/.cache/rustcd}"
CACHE="$CACHE_ROOT/k8s-$K8S_SRC_VERSION"
SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
BIN="$CACHE/bin"

log() { printf 'k8s.sh: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# ---------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------

apt_updated=0
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  if ((!apt_updated)); then
    apt-get update -qq
    apt_updated=1
  fi
  log "installing ${missing[*]}"
  # policy-rc.d keeps packages (etcd-server) from starting system services.
  local had_policy=0
  [[ -e /usr/sbin/policy-rc.d ]] && had_policy=1
  ((had_policy)) || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  ((had_policy)) || rm -f /usr/sbin/policy-rc.d
}

# deb-src for bookworm, in the deb822 format this machine's /etc/apt/sources.list.d uses.
ensure_deb_src() {
  local f=/etc/apt/sources.list.d/rustcd-deb-src.sources
  if [[ ! -e $f ]] && ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ &&
    ! grep -qs '^deb-src ' /etc/apt/sources.list; then
    log "adding $f"
    cat >"$f" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt_updated=0
  fi
}

src_dir() {
  # apt-get source unpacks into kubernetes-<upstream version>/
  local d
  for d in "$CACHE"/src/kubernetes-*/; do
    [[ -d $d ]] && {
      printf '%s\n' "${d%/}"
      return 0
    }
  done
  return 1
}

fetch_source() {
  [[ -e $CACHE/stamp.source ]] && return 0
  ensure_deb_src
  if ((!apt_updated)); then
    apt-get update -qq
    apt_updated=1
  fi
  rm -rf "$CACHE/src"
  mkdir -p "$CACHE/src"
  log "apt-get source kubernetes=$K8S_SRC_VERSION into $CACHE/src"
  (cd "$CACHE/src" && apt-get source -qq "kubernetes=$K8S_SRC_VERSION" >/dev/null)
  local src
  src="$(src_dir)" || die "apt-get source left no kubernetes-* directory"
  # reflect2 1.0.1 (vendored) segfaults on Go >= 1.18; Debian ships 1.0.2.
  local r2=/usr/share/gocode/src/github.com/modern-go/reflect2
  [[ -f $r2/reflect2.go ]] || die "$r2 not found (golang-github-modern-go-reflect2-dev)"
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  mkdir -p "$src/vendor/github.com/modern-go/reflect2"
  find "$r2" -maxdepth 1 -type f -name '*.go' ! -name '*_test.go' -exec cp {} "$src/vendor/github.com/modern-go/reflect2/" \;
  # GOPATH mode: the tree must sit at $GOPATH/src/k8s.io/kubernetes.
  mkdir -p "$CACHE/gopath/src/k8s.io"
  ln -sfn "$src" "$CACHE/gopath/src/k8s.io/kubernetes"
  touch "$CACHE/stamp.source"
}

go_env() {
  export GOPATH="$CACHE/gopath" GOCACHE="$CACHE/gocache" GO111MODULE=off GOFLAGS="" GOTOOLCHAIN=local
  export PATH="/usr/lib/go-1.19/bin:$PATH"
  unset GOROOT
}

KROOT() { printf '%s\n' "$CACHE/gopath/src/k8s.io/kubernetes"; }

# pkg/generated/openapi/zz_generated.openapi.go is not in the tarball; generate it the way
# build/root/Makefile.generated_files does, with the tree's own openapi-gen.
gen_openapi() {
  [[ -e $CACHE/stamp.openapi ]] && return 0
  local k
  k="$(KROOT)"
  log "building openapi-gen"
  (cd "$k" && go build -o "$CACHE/tools/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen)
  log "listing packages tagged +k8s:openapi-gen="
  local inputs
  inputs="$(cd "$k" && openapi_inputs)"
  [[ -n $inputs ]] || die "no +k8s:openapi-gen packages found"
  printf '%s\n' "$inputs" >"$CACHE/tools/openapi-inputs.txt"
  log "generating pkg/generated/openapi/zz_generated.openapi.go ($(wc -l <"$CACHE/tools/openapi-inputs.txt") packages)"
  (cd "$k" && "$CACHE/tools/openapi-gen" \
    --logtostderr \
    -i "$(paste -sd, "$CACHE/tools/openapi-inputs.txt")" \
    -p k8s.io/kubernetes/pkg/generated/openapi \
    -O zz_generated.openapi \
    -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
    -r "$CACHE/tools/openapi-violations.report" \
    -o "$CACHE/gopath/src") >"$CACHE/tools/openapi-gen.log" 2>&1 ||
    die "openapi-gen failed, see $CACHE/tools/openapi-gen.log"
  [[ -s $k/pkg/generated/openapi/zz_generated.openapi.go ]] || die "openapi-gen wrote nothing"
  touch "$CACHE/stamp.openapi"
}

# Go import paths of the directories holding a `+k8s:openapi-gen=` tag, as the Makefile computes
# KUBE_OPENAPI_DIRS: every *.go file outside ./vendor, ./_* and ./.* (staging/src named as its
# vendor/ twin) that has a `// +k8s:` comment tag, less code-generator and sample-apiserver. Run
# from the tree's root.
openapi_inputs() {
  find -H . \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune -o -type f -name '*.go' -print |
    sed -e 's|^\./staging/src|vendor|' -e 's|^\./||' |
    grep -v -e '^vendor/k8s\.io/code-generator/' -e '^vendor/k8s\.io/sample-apiserver/' |
    xargs grep --color=never -l '^// *+k8s:' |
    xargs grep --color=never -l '+k8s:openapi-gen=' |
    xargs -n1 dirname | LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|'
}

# Version stamps as hack/lib/version.sh sets them: component-base (kube-* --version, /version of
# kube-apiserver's own handlers) and client-go's pkg/version (the aggregator, which serves /version).
ldflags() {
  local date p
  date="$(date -u -d "@${SOURCE_DATE_EPOCH:-1610600000}" +%Y-%m-%dT%H:%M:%SZ)"
  for p in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
    printf '%s ' "-X $p.gitVersion=$K8S_VERSION" "-X $p.gitMajor=1" "-X $p.gitMinor=20" \
      "-X $p.gitCommit=$K8S_COMMIT" "-X $p.gitTreeState=archive" "-X $p.buildDate=$date"
  done
}

# A binary is up to date when its stamp holds the flags it was built with.
up_to_date() { [[ -x $BIN/$1 && -e $CACHE/stamp.$1 && $(cat "$CACHE/stamp.$1") == "$2" ]]; }

build_bins() {
  local k
  k="$(KROOT)"
  mkdir -p "$BIN" "$CACHE/overlay"
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    up_to_date "$b" "$(ldflags)" && continue
    log "building $b"
    (cd "$k" && CGO_ENABLED=0 go build -tags providerless -ldflags "$(ldflags)" -o "$BIN/$b" "./cmd/$b")
    printf '%s' "$(ldflags)" >"$CACHE/stamp.$b"
  done
  # The kubelet is built with an overlay (the tree stays as is):
  # - dockershim starts pod sandboxes with oom_score_adj -998, which nothing here may set
  #   (no CAP_SYS_RESOURCE): defaultSandboxOOMAdj = 0;
  # - cmd/kubelet/app/plugins.go links the AWS, Azure and GCP image credential providers even with
  #   -tags providerless; AWS's probes the EC2 metadata address 169.254.169.254 when the kubelet
  #   starts. Dropped: no traffic may leave loopback.
  local sig
  sig="$(ldflags) overlay=2"
  if ! up_to_date kubelet "$sig"; then
    local f="pkg/kubelet/dockershim/docker_sandbox.go" g="cmd/kubelet/app/plugins.go"
    grep -Eq 'defaultSandboxOOMAdj( int)? *= *-998' "$k/$f" || die "$f: defaultSandboxOOMAdj = -998 not found"
    sed -E 's/defaultSandboxOOMAdj( int)? *= *-998/defaultSandboxOOMAdj\1 = 0/' "$k/$f" >"$CACHE/overlay/docker_sandbox.go"
    grep -q '"k8s.io/kubernetes/pkg/credentialprovider/aws"' "$k/$g" || die "$g: credential provider imports not found"
    grep -v '_ "k8s.io/kubernetes/pkg/credentialprovider/\(aws\|azure\|gcp\)"' "$k/$g" >"$CACHE/overlay/plugins.go"
    python3 - "$k" "$(readlink -f "$k")" "$CACHE/overlay" "$f" "$g" >"$CACHE/overlay/overlay.json" <<'PY'
import json, os, sys
root, real, ov, f, g = sys.argv[1:]
rep = {}
for rel, name in ((f, "docker_sandbox.go"), (g, "plugins.go")):
    for base in (root, real):
        rep[os.path.join(base, rel)] = os.path.join(ov, name)
print(json.dumps({"Replace": rep}))
PY
    log "building kubelet (overlay: defaultSandboxOOMAdj = 0, no cloud credential providers)"
    (cd "$k" && go build -tags providerless -overlay "$CACHE/overlay/overlay.json" -ldflags "$(ldflags)" -o "$BIN/kubelet" ./cmd/kubelet)
    if [[ $(go tool nm "$BIN/kubelet" | grep -c 'pkg/credentialprovider/aws\.') -gt 0 ]]; then
      die "kubelet still links the AWS credential provider"
    fi
    printf '%s' "$sig" >"$CACHE/stamp.kubelet"
  fi
}

build_pause() {
  if docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1; then return 0; fi
  local k d
  k="$(KROOT)"
  d="$CACHE/pause-image"
  rm -rf "$d"
  mkdir -p "$d"
  log "building image $PAUSE_IMAGE from build/pause/linux/pause.c"
  gcc -Os -Wall -Werror -static -DVERSION=v3.2-rustcd -o "$d/pause" "$k/build/pause/linux/pause.c"
  strip "$d/pause"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$d/Dockerfile"
  docker build -q -t "$PAUSE_IMAGE" "$d" >"$d/build.log" 2>&1 || die "docker build failed: $d/build.log"
}

build_busybox() {
  if docker image inspect "$BUSYBOX_IMAGE" >/dev/null 2>&1; then return 0; fi
  local d="$CACHE/busybox-image"
  rm -rf "$d"
  mkdir -p "$d/bin"
  log "building image $BUSYBOX_IMAGE from /bin/busybox (busybox-static)"
  cp /bin/busybox "$d/bin/busybox"
  printf 'FROM scratch\nCOPY bin /bin\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nENTRYPOINT ["/bin/sh"]\n' >"$d/Dockerfile"
  docker build -q -t "$BUSYBOX_IMAGE" "$d" >"$d/build.log" 2>&1 || die "docker build failed: $d/build.log"
}

cmd_build() {
  [[ $(id -u) -eq 0 ]] || die "build needs root (apt-get)"
  if [[ -e $CACHE/stamp.build && $(cat "$CACHE/stamp.build") == "$(ldflags) overlay=2" ]] &&
    docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1 &&
    docker image inspect "$BUSYBOX_IMAGE" >/dev/null 2>&1; then
    log "already built: $BIN"
    return 0
  fi
  local t0=$SECONDS
  apt_install golang-1.19-go golang-github-modern-go-reflect2-dev dpkg-dev openssl gcc libc6-dev \
    etcd-server etcd-client busybox-static python3 dnsmasq-base socat
  stop_system_etcd
  mkdir -p "$CACHE/tools"
  fetch_source
  go_env
  gen_openapi
  build_bins
  if docker info >/dev/null 2>&1; then
    build_pause
    build_busybox
  else
    log "warning: Docker is not running: no $PAUSE_IMAGE and $BUSYBOX_IMAGE (needed by up --with-kubelet only)"
  fi
  printf '%s' "$(ldflags) overlay=2" >"$CACHE/stamp.build"
  log "built in $((SECONDS - t0)) s into $BIN"
}

# The etcd-server package enables a system etcd on 127.0.0.1:2379; keep it off.
stop_system_etcd() {
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl stop etcd || true
    systemctl disable etcd >/dev/null 2>&1 || true
  fi
}

# ---------------------------------------------------------------------------------------------
# up / down
# ---------------------------------------------------------------------------------------------

# Prints N distinct free loopback TCP ports (all bound at once, then released).
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# cert <name> <subject> <extendedKeyUsage> [subjectAltName]: a key and a certificate signed by
# the state dir's CA.
cert() {
  local name=$1 subj=$2 eku=$3 san=${4:-}
  local ext="$PKI/$name.ext"
  {
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n'
    printf 'extendedKeyUsage=%s\n' "$eku"
    [[ -z $san ]] || printf 'subjectAltName=%s\n' "$san"
  } >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" \
    -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

make_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -subj "/CN=rustcd-k8s-ca" \
    -days 30 -sha256 -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$PKI/ca.crt" 2>/dev/null
  local lo="IP:127.0.0.1,DNS:localhost"
  # The store's members use one certificate for client and peer traffic.
  cert store "/CN=rustcd-store" serverAuth,clientAuth "$lo"
  cert store-client "/CN=kube-apiserver-etcd-client" clientAuth
  cert apiserver "/CN=kube-apiserver" serverAuth \
    "$lo,IP:$APISERVER_HOST,IP:$SERVICE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  cert admin "/O=system:masters/CN=admin" clientAuth
  cert front-proxy-client "/CN=front-proxy-client" clientAuth
  cert controller-manager "/CN=system:kube-controller-manager" clientAuth
  cert scheduler "/CN=system:kube-scheduler" clientAuth
  cert kubelet "/O=system:nodes/CN=system:node:localhost" clientAuth
  cert kubelet-serving "/O=system:nodes/CN=system:node:localhost" serverAuth "$lo"
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  ADMIN_TOKEN="$(openssl rand -hex 16)"
  printf '%s,admin,admin-uid,system:masters\n' "$ADMIN_TOKEN" >"$PKI/tokens.csv"
  printf '%s\n' "$ADMIN_TOKEN" >"$PKI/admin.token"
  chmod 600 "$PKI"/*.key "$PKI/tokens.csv" "$PKI/admin.token"
}

# kubeconfig <file> <cert name>: a kubeconfig using the state dir's CA and a client certificate.
kubeconfig() {
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: rustcd-k8s
  cluster:
    server: $APISERVER_URL
    certificate-authority: $PKI/ca.crt
users:
- name: $2
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: rustcd-k8s
  context:
    cluster: rustcd-k8s
    user: $2
current-context: rustcd-k8s
EOF
  chmod 600 "$1"
}

proc_start_time() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null || true; }

# spawn <name> <command...>: starts a daemon in its own session, logs to logs/<name>.log, and
# records "<name> <pid> <start time>" in pids (the start time guards `down` against a reused PID).
spawn() {
  local name=$1
  shift
  setsid "$@" </dev/null >>"$STATE/logs/$name.log" 2>&1 &
  local pid=$!
  local st="" i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    st="$(proc_start_time "$pid")"
    [[ -n $st ]] && break
    sleep 0.05
  done
  printf '%s %s %s\n' "$name" "$pid" "${st:-0}" >>"$STATE/pids"
}

alive() { # alive <name>: the recorded process still runs
  local n p st
  while read -r n p st; do
    [[ $n == "$1" ]] || continue
    [[ $(proc_start_time "$p") == "$st" ]] && return 0
  done <"$STATE/pids"
  return 1
}

# wait_for <what> <timeout s> <name of the process that must stay alive> <command...>
wait_for() {
  local what=$1 timeout=$2 proc=$3
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ -n $proc ]] && ! alive "$proc"; then
      tail -n 30 "$STATE/logs/$proc.log" >&2 || true
      die "$proc exited while waiting for $what (log: $STATE/logs/$proc.log)"
    fi
    ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what"
    sleep 0.5
  done
}

# shellcheck disable=SC2317 # run through wait_for
store_healthy() {
  ETCDCTL_API=3 etcdctl --endpoints="$1" --cacert="$PKI/ca.crt" --cert="$PKI/store-client.crt" \
    --key="$PKI/store-client.key" --command-timeout=2s endpoint health
}

# shellcheck disable=SC2317 # run through wait_for
http_ok() { # http_ok <url>: GET with the admin token answers "ok"
  [[ $(curl -sS --max-time 3 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$1") == ok ]]
}

start_store() {
  local kind=$1 bin=$2
  local i cluster="" endpoints=""
  for i in 0 1 2; do
    cluster+="${cluster:+,}s$i=https://127.0.0.1:${PEER_PORTS[$i]}"
    endpoints+="${endpoints:+,}https://127.0.0.1:${CLIENT_PORTS[$i]}"
  done
  STORE_ENDPOINTS=$endpoints
  for i in 0 1 2; do
    mkdir -p "$STATE/store/s$i"
    chmod 700 "$STATE/store/s$i"
    local args=("$bin"
      --name "s$i" --data-dir "$STATE/store/s$i"
      --listen-client-urls "https://127.0.0.1:${CLIENT_PORTS[$i]}"
      --advertise-client-urls "https://127.0.0.1:${CLIENT_PORTS[$i]}"
      --listen-peer-urls "https://127.0.0.1:${PEER_PORTS[$i]}"
      --initial-advertise-peer-urls "https://127.0.0.1:${PEER_PORTS[$i]}"
      --initial-cluster "$cluster" --initial-cluster-state new
      --initial-cluster-token "rustcd-k8s-$$"
      --cert-file "$PKI/store.crt" --key-file "$PKI/store.key"
      --trusted-ca-file "$PKI/ca.crt" --client-cert-auth
      --peer-cert-file "$PKI/store.crt" --peer-key-file "$PKI/store.key"
      --peer-trusted-ca-file "$PKI/ca.crt" --peer-client-cert-auth)
    # For restart-store-member: the exact command line, one argument per line.
    printf '%s\n' "${args[@]}" >"$STATE/store/s$i.cmd"
    spawn "store-s$i" "${args[@]}"
  done
  for i in 0 1 2; do
    wait_for "store member s$i ($kind)" 60 "store-s$i" store_healthy "https://127.0.0.1:${CLIENT_PORTS[$i]}"
  done
  log "store ($kind, $bin) healthy at $endpoints"
}

start_control_plane() {
  mkdir -p "$STATE/apiserver" "$STATE/controller-manager" "$STATE/scheduler"
  local extra=()
  # shellcheck disable=SC2206 # split on whitespace on purpose (documented in the header)
  [[ -z ${K8S_APISERVER_EXTRA_ARGS:-} ]] || extra=($K8S_APISERVER_EXTRA_ARGS)
  spawn kube-apiserver "$BIN/kube-apiserver" \
    --bind-address="$APISERVER_HOST" --advertise-address="$APISERVER_HOST" \
    --secure-port="$APISERVER_PORT" --insecure-port=0 \
    --cert-dir="$STATE/apiserver" \
    --etcd-servers="$STORE_ENDPOINTS" \
    --etcd-cafile="$PKI/ca.crt" --etcd-certfile="$PKI/store-client.crt" --etcd-keyfile="$PKI/store-client.key" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" \
    --requestheader-client-ca-file="$PKI/ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range="$SERVICE_RANGE" \
    --endpoint-reconciler-type=none \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" \
    --kubelet-preferred-address-types=Hostname,InternalIP \
    --profiling=false \
    --v=1 \
    "${extra[@]}"
  wait_for "kube-apiserver /readyz" 180 kube-apiserver http_ok "$APISERVER_URL/readyz"
  log "kube-apiserver ready at $APISERVER_URL"

  kubeconfig "$STATE/controller-manager/kubeconfig" controller-manager
  local cm_extra=()
  # With a node: PersistentVolumes for claims (hostPath under /tmp/hostpath_pv, removed with
  # their claims and by `down`), as the StorageClass `standard` asks for.
  ((WITH_KUBELET)) && cm_extra=(--enable-hostpath-provisioner)
  spawn kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$STATE/controller-manager/kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager/kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$CM_PORT" --port=0 \
    --cert-dir="$STATE/controller-manager" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --controllers='*,bootstrapsigner,tokencleaner' \
    --profiling=false \
    --v=1 \
    "${cm_extra[@]}"

  kubeconfig "$STATE/scheduler/kubeconfig" scheduler
  spawn kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$STATE/scheduler/kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler/kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --port=0 \
    --cert-dir="$STATE/scheduler" \
    --leader-elect=false \
    --profiling=false \
    --v=1

  # Their /healthz is open to anyone (always-allow-paths); their serving certs are self-signed.
  wait_for "kube-controller-manager /healthz" 60 kube-controller-manager \
    curl -fsSk --max-time 3 "https://127.0.0.1:$CM_PORT/healthz"
  wait_for "kube-scheduler /healthz" 60 kube-scheduler \
    curl -fsSk --max-time 3 "https://127.0.0.1:$SCHED_PORT/healthz"
  # The token controller has made the default ServiceAccount's token Secret.
  wait_for "the default ServiceAccount's token Secret" 90 kube-controller-manager sa_token_exists
}

# shellcheck disable=SC2317 # run through wait_for
sa_token_exists() {
  kubectl --kubeconfig "$STATE/kubeconfig" -n default get serviceaccount default \
    -o jsonpath='{.secrets[0].name}' | grep -q .
}

cmd_up() {
  local state="" store=etcd store_bin="" with_kubelet=0
  while (($#)); do
    case $1 in
      --store) store=$2; shift 2 ;;
      --store=*) store=${1#*=}; shift ;;
      --store-bin) store_bin=$2; shift 2 ;;
      --store-bin=*) store_bin=${1#*=}; shift ;;
      --with-kubelet) with_kubelet=1; shift ;;
      -*) die "unknown flag $1" ;;
      *) [[ -z $state ]] || die "one state dir only"; state=$1; shift ;;
    esac
  done
  [[ -n $state ]] || die "usage: k8s.sh up <state-dir> [--store etcd|rustcd] [--store-bin PATH] [--with-kubelet]"
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    [[ -e $CACHE/stamp.$b ]] || die "$b not built: run scripts/k8s.sh build"
  done
  case $store in
    etcd) store_bin=${store_bin:-/usr/bin/etcd} ;;
    rustcd) [[ -n $store_bin ]] || die "--store rustcd needs --store-bin PATH" ;;
    *) die "--store must be etcd or rustcd" ;;
  esac
  # Debian's etcd (the default store) and etcdctl (health checks).
  if [[ $store_bin == /usr/bin/etcd ]] || ! command -v etcdctl >/dev/null; then
    apt_install etcd-server etcd-client
  fi
  [[ -x $store_bin ]] || die "store binary $store_bin not found"
  store_bin="$(readlink -f "$store_bin")"
  stop_system_etcd

  if ((with_kubelet)); then
    kubelet_claim_free
    [[ -x $BIN/kubelet ]] || die "kubelet not built: run scripts/k8s.sh build"
    # Cluster DNS, and what dockershim's port-forward runs.
    apt_install dnsmasq-base socat
  fi
  mkdir -p "$state"
  STATE="$(cd "$state" && pwd)"
  if [[ -s $STATE/pids ]]; then
    local n p st
    while read -r n p st; do
      [[ $(proc_start_time "$p") == "$st" ]] && die "$STATE already runs a cluster ($n, pid $p): run down first"
    done <"$STATE/pids"
  fi
  # Leftovers of an earlier run (its kubelet's containers and mounts first).
  kubelet_cleanup "$STATE"
  if awk -v p="$STATE/" 'index($5, p) == 1 {found = 1} END {exit !found}' /proc/self/mountinfo; then
    die "$STATE still has mounts under it; unmount them first"
  fi
  rm -rf "$STATE/pki" "$STATE/store" "$STATE/logs" "$STATE/apiserver" "$STATE/controller-manager" \
    "$STATE/scheduler" "$STATE/kubelet" "$STATE/pids" "$STATE/env" "$STATE/kubeconfig"
  mkdir -p "$STATE/logs"
  : >"$STATE/pids"
  PKI="$STATE/pki"

  local ports
  read -r -a ports <<<"$(free_ports 11)"
  CLIENT_PORTS=("${ports[@]:0:3}")
  PEER_PORTS=("${ports[@]:3:3}")
  APISERVER_PORT=${ports[6]} CM_PORT=${ports[7]} SCHED_PORT=${ports[8]}
  KUBELET_PORT=${ports[9]} KUBELET_HEALTHZ_PORT=${ports[10]}
  APISERVER_HOST=127.0.0.1 SERVICE_RANGE=10.0.0.0/24 SERVICE_IP=10.0.0.1
  WITH_KUBELET=$with_kubelet
  if ((with_kubelet)); then
    node_network
    # Pods reach the API server as in-cluster clients do: KUBERNETES_SERVICE_HOST is the
    # `kubernetes` Service's IP, the first of the service range, and its port is 443. There is no
    # kube-proxy here, so that IP is the Docker bridge's own address, where the API server listens.
    APISERVER_HOST=$NODE_GW APISERVER_PORT=443 SERVICE_RANGE=$NODE_SERVICE_RANGE SERVICE_IP=$NODE_GW
    port_free "$NODE_GW" 443 || die "$NODE_GW:443 is in use (the API server of a node cluster listens there)"
    port_free "$NODE_GW" 53 || die "$NODE_GW:53 is in use (the cluster DNS of a node cluster listens there)"
  fi
  APISERVER_URL="https://$APISERVER_HOST:$APISERVER_PORT"

  # If anything below fails, stop what was started.
  trap 'log "up failed; stopping what was started"; cmd_down "$STATE" || true' EXIT
  make_pki
  kubeconfig "$STATE/kubeconfig" admin
  start_store "$store" "$store_bin"
  start_control_plane
  kubectl --kubeconfig "$STATE/kubeconfig" get --raw /readyz >/dev/null
  if ((with_kubelet)); then
    start_dns
    start_kubelet
    default_storage_class
  fi

  cat >"$STATE/env" <<EOF
KUBECONFIG=$STATE/kubeconfig
K8S_VERSION=$K8S_VERSION
K8S_APISERVER_URL=$APISERVER_URL
K8S_CA_FILE=$PKI/ca.crt
K8S_ADMIN_TOKEN_FILE=$PKI/admin.token
K8S_WITH_KUBELET=$with_kubelet
K8S_NODE_NAME=$( ((with_kubelet)) && echo localhost)
K8S_CLUSTER_DNS=$( ((with_kubelet)) && echo "$NODE_GW")
STORE_KIND=$store
STORE_BIN=$store_bin
STORE_ENDPOINTS=$STORE_ENDPOINTS
STORE_CA_FILE=$PKI/ca.crt
STORE_CERT_FILE=$PKI/store-client.crt
STORE_KEY_FILE=$PKI/store-client.key
STORE_DATA_DIRS=$STATE/store/s0,$STATE/store/s1,$STATE/store/s2
PIDS_FILE=$STATE/pids
LOG_DIR=$STATE/logs
EOF
  trap - EXIT
  log "up: KUBECONFIG=$STATE/kubeconfig ($APISERVER_URL, store $store at $STORE_ENDPOINTS)"
}

# stop_procs <pids file> <phase: cp|store>: TERM to every live recorded process of the phase (the
# store members, or everything else), then KILL what still runs after 20 s.
stop_procs() {
  local file=$1 phase=$2 n p st live=() e kind
  while read -r n p st; do
    [[ -n $p ]] || continue
    kind="cp"
    [[ $n == store-* ]] && kind=store
    [[ $kind == "$phase" ]] || continue
    if [[ $(proc_start_time "$p") == "$st" ]]; then
      kill -TERM "$p" 2>/dev/null || true
      live+=("$p:$st:$n")
    fi
  done < <(tac "$file")
  local deadline=$((SECONDS + 20))
  for e in "${live[@]}"; do
    p=${e%%:*}
    st=${e#*:}
    st=${st%%:*}
    while [[ $(proc_start_time "$p") == "$st" ]] && ((SECONDS < deadline)); do sleep 0.2; done
    if [[ $(proc_start_time "$p") == "$st" ]]; then
      log "down: ${e##*:} (pid $p) ignored TERM, sending KILL"
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
  STOPPED=$((STOPPED + ${#live[@]}))
}

cmd_down() {
  local state=${1:-}
  [[ -n $state ]] || die "usage: k8s.sh down <state-dir>"
  [[ -d $state ]] || { log "down: $state does not exist"; return 0; }
  local dir
  dir="$(cd "$state" && pwd)"
  [[ -f $dir/pids ]] || { log "down: no pids file in $dir"; return 0; }
  STOPPED=0
  # The hostPath volumes the provisioner made for this cluster (asked while the API still runs).
  local volumes=()
  if [[ -f $dir/kubeconfig ]] && grep -q '^K8S_WITH_KUBELET=1$' "$dir/env" 2>/dev/null; then
    mapfile -t volumes < <(kubectl --kubeconfig "$dir/kubeconfig" --request-timeout=10s get pv \
      -o jsonpath='{range .items[*]}{.spec.hostPath.path}{"\n"}{end}' 2>/dev/null || true)
  fi
  # The kubelet and the control plane first (so the API server does not spin on a vanished
  # store), then the store.
  stop_procs "$dir/pids" cp
  kubelet_cleanup "$dir"
  stop_procs "$dir/pids" store
  local v
  for v in "${volumes[@]}"; do
    [[ $v == /tmp/hostpath_pv/* && $v != */../* ]] && rm -rf "$v"
  done
  : >"$dir/pids"
  log "down: stopped $STOPPED process(es) of $dir"
}

cmd_restart_store_member() {
  local state=${1:-} n=${2:-}
  [[ -n $state && $n =~ ^[0-2]$ ]] || die "usage: k8s.sh restart-store-member <state-dir> <0|1|2>"
  [[ -f $state/pids && -f $state/store/s$n.cmd ]] || die "$state: no cluster started by up"
  STATE="$(cd "$state" && pwd)"
  PKI="$STATE/pki"
  # A member just killed may take a moment to be gone (and reaped).
  local deadline=$((SECONDS + 10))
  while alive "store-s$n" && ((SECONDS < deadline)); do sleep 0.2; done
  alive "store-s$n" && die "store-s$n still runs: stop or kill it first"
  local args=() url
  mapfile -t args <"$STATE/store/s$n.cmd"
  url=$(awk 'prev == "--listen-client-urls" {print; exit} {prev = $0}' "$STATE/store/s$n.cmd")
  grep -v "^store-s$n " "$STATE/pids" >"$STATE/pids.new" || true
  mv "$STATE/pids.new" "$STATE/pids"
  spawn "store-s$n" "${args[@]}"
  wait_for "store member s$n (restarted)" 60 "store-s$n" store_healthy "$url"
  log "restart-store-member: s$n healthy at $url"
}

# ---------------------------------------------------------------------------------------------
# kubelet (up --with-kubelet)
# ---------------------------------------------------------------------------------------------

# The sysctls the kubelet (setupKernelTunables) and dockershim's no-op network plugin write. The
# kubelet runs in its own mount namespace where each of these files is covered by a copy, so the
# host's values never change.
KUBELET_SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes
  net/bridge/bridge-nf-call-iptables net/bridge/bridge-nf-call-ip6tables)

# Runs as the kubelet's PID 1 of its mount namespace (through `unshare -m`): covers the sysctls
# and /var/log, then execs the kubelet. Arguments: <kubelet dir> <kubelet binary> <flags...>.
kubelet_ns_exec() {
  local kd=$1
  shift
  # Nothing mounted here may reach the host, except under the kubelet's root dir (a shared
  # mount, so dockerd sees the kubelet's secret and configmap tmpfs mounts).
  mount --make-private /
  mount --make-private /proc
  local s
  for s in "${KUBELET_SYSCTLS[@]}"; do
    [[ -e /proc/sys/$s ]] || continue
    mount --bind "$kd/sysctl/${s//\//.}" "/proc/sys/$s"
  done
  # dockershim writes pod log symlinks under the fixed /var/log/pods and /var/log/containers.
  mount --bind "$kd/varlog" /var/log
  exec "$@"
}

# The Docker bridge the kubelet's pods join (dockershim with no network plugin): NODE_GW is its
# address on this host (the pods' gateway), NODE_SERVICE_RANGE the /24 starting there.
node_network() {
  docker info >/dev/null 2>&1 || die "docker is not running"
  local br cidr
  br=$(docker network inspect bridge -f '{{index .Options "com.docker.network.bridge.name"}}' 2>/dev/null || true)
  [[ -n $br ]] || br=docker0
  cidr=$(ip -4 -o addr show dev "$br" 2>/dev/null | awk '{print $4; exit}')
  [[ -n $cidr ]] || die "the Docker bridge $br has no IPv4 address"
  NODE_GW=${cidr%/*}
  [[ $NODE_GW == *.1 ]] || die "the Docker bridge $br has address $NODE_GW; a node cluster needs one ending in .1"
  NODE_SERVICE_RANGE="${NODE_GW%.*}.0/24"
}

# port_free <ip> <port>: nothing listens on ip:port (TCP and UDP).
port_free() {
  python3 -c '
import socket, sys
for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind((sys.argv[1], int(sys.argv[2])))
    s.close()
' "$1" "$2" 2>/dev/null
}

# Cluster DNS for the pods (there is no CoreDNS in Debian): dnsmasq on NODE_GW:53 answering for
# cluster.local from a hosts file, which `dns-feed` rewrites from the API's Endpoints as CoreDNS
# does: `<hostname>.<service>.<ns>.svc.cluster.local` for each ready address with a hostname (a
# StatefulSet pod behind its headless Service), plus kubernetes.default.svc. Other names get no
# answer: nothing here resolves beyond the cluster.
start_dns() {
  local d="$STATE/dns"
  mkdir -p "$d"
  printf '%s kubernetes.default.svc.cluster.local\n' "$NODE_GW" >"$d/hosts"
  spawn dnsmasq dnsmasq --keep-in-foreground --log-facility=- --conf-file=/dev/null --user=root \
    --pid-file="$d/dnsmasq.pid" --no-resolv --no-hosts --no-poll --bind-interfaces \
    --listen-address="$NODE_GW" --port=53 --addn-hosts="$d/hosts" --local=/cluster.local/ \
    --domain-needed --no-negcache --local-ttl=0
  wait_for "cluster DNS on $NODE_GW:53" 20 dnsmasq dns_listening
  spawn dns-feed bash "$SCRIPT" __dns_feed "$STATE" "$NODE_GW"
  log "cluster DNS: dnsmasq on $NODE_GW:53, fed from Endpoints"
}

# shellcheck disable=SC2317 # run through wait_for
dns_listening() { ! port_free "$NODE_GW" 53 && [[ -s $STATE/dns/dnsmasq.pid ]]; }

# The feed loop (as the process dns-feed): once a second, the Endpoints' named addresses into
# <state>/dns/hosts; on a change, SIGHUP makes dnsmasq reread it.
dns_feed() {
  local state=$1 gw=$2 d="$1/dns" pid
  # shellcheck disable=SC2016 # a Go template, not shell
  local tpl='{{range .items}}{{$ns := .metadata.namespace}}{{$svc := .metadata.name}}{{range .subsets}}{{range .addresses}}{{if .hostname}}{{.ip}} {{.hostname}}.{{$svc}}.{{$ns}}.svc.cluster.local{{"\n"}}{{end}}{{end}}{{end}}{{end}}'
  while :; do
    if kubectl --kubeconfig "$state/kubeconfig" --request-timeout=5s get endpoints -A \
      -o go-template="$tpl" >"$d/endpoints" 2>"$d/feed.err"; then
      { printf '%s kubernetes.default.svc.cluster.local\n' "$gw"; sort "$d/endpoints"; } >"$d/hosts.new"
      if ! cmp -s "$d/hosts.new" "$d/hosts"; then
        mv "$d/hosts.new" "$d/hosts"
        pid=$(cat "$d/dnsmasq.pid" 2>/dev/null || true)
        if [[ -n $pid ]]; then kill -HUP "$pid" 2>/dev/null || true; fi
      fi
    fi
    sleep 1
  done
}

# The default StorageClass: hostPath volumes from the controller-manager's provisioner.
default_storage_class() {
  kubectl --kubeconfig "$STATE/kubeconfig" apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF
}

# One kubelet per Docker daemon: a second one would kill the first one's containers as pods it does
# not know. The running one is named here as "<pid> <start time> <state dir>".
KUBELET_CLAIM=/run/rustcd-k8s-kubelet

kubelet_claim_free() {
  [[ -s $KUBELET_CLAIM ]] || return 0
  local cp cst cdir
  read -r cp cst cdir <"$KUBELET_CLAIM" || true
  if [[ -n $cp && $(proc_start_time "$cp") == "$cst" ]]; then
    die "a kubelet of $cdir already runs on this Docker (pid $cp): run down on it first"
  fi
}

start_kubelet() {
  local kd="$STATE/kubelet"
  kubelet_claim_free
  [[ -x $BIN/kubelet ]] || die "kubelet not built: run scripts/k8s.sh build"
  docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1 || die "$PAUSE_IMAGE missing: run scripts/k8s.sh build"
  docker info >/dev/null 2>&1 || die "docker is not running"
  mkdir -p "$kd/root" "$kd/sysctl" "$kd/varlog/pods" "$kd/varlog/containers" "$kd/dockershim" \
    "$kd/volume-plugins" "$kd/seccomp" "$kd/certs"
  local s
  for s in "${KUBELET_SYSCTLS[@]}"; do
    [[ -e /proc/sys/$s ]] && cat "/proc/sys/$s" >"$kd/sysctl/${s//\//.}"
  done
  # The root dir as a shared mount of its own (undone by `down`).
  if ! mountpoint -q "$kd/root"; then
    mount --bind "$kd/root" "$kd/root"
  fi
  mount --make-shared "$kd/root"
  kubeconfig "$kd/kubeconfig" kubelet
  spawn kubelet env AWS_EC2_METADATA_DISABLED=true unshare -m --propagation unchanged \
    bash "$SCRIPT" __kubelet_ns "$kd" "$BIN/kubelet" \
    --kubeconfig="$kd/kubeconfig" \
    --hostname-override=localhost \
    --root-dir="$kd/root" --cert-dir="$kd/certs" \
    --experimental-dockershim-root-directory="$kd/dockershim" \
    --volume-plugin-dir="$kd/volume-plugins" --seccomp-profile-root="$kd/seccomp" \
    --tls-cert-file="$PKI/kubelet-serving.crt" --tls-private-key-file="$PKI/kubelet-serving.key" \
    --client-ca-file="$PKI/ca.crt" --anonymous-auth=false --authorization-mode=Webhook \
    --address=127.0.0.1 --port="$KUBELET_PORT" --read-only-port=0 \
    --healthz-bind-address=127.0.0.1 --healthz-port="$KUBELET_HEALTHZ_PORT" \
    --container-runtime=docker --docker-endpoint=unix:///var/run/docker.sock \
    --network-plugin= \
    --pod-infra-container-image="$PAUSE_IMAGE" \
    --cgroup-driver=cgroupfs --cgroups-per-qos=false --enforce-node-allocatable= \
    --fail-swap-on=false --make-iptables-util-chains=false --oom-score-adj=0 \
    --image-gc-high-threshold=100 --image-gc-low-threshold=99 \
    --eviction-hard= --eviction-soft= \
    --register-node=true \
    --cluster-dns="$NODE_GW" --cluster-domain=cluster.local \
    --v=2
  local n p st
  while read -r n p st; do
    if [[ $n == kubelet ]]; then printf '%s %s %s\n' "$p" "$st" "$STATE" >"$KUBELET_CLAIM"; fi
  done <"$STATE/pids"
  wait_for "kubelet /healthz" 90 kubelet curl -fsS --max-time 3 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
  wait_for "node localhost Ready" 120 kubelet node_ready
  log "kubelet: node localhost Ready (kubelet on 127.0.0.1:$KUBELET_PORT)"
}

# shellcheck disable=SC2317 # run through wait_for
node_ready() {
  [[ $(kubectl --kubeconfig "$STATE/kubeconfig" get node localhost \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

# After the kubelet has stopped: remove the pods' containers it left in Docker (found through
# dockershim's sandbox checkpoints, so only this cluster's), and unmount its shared root dir.
kubelet_cleanup() {
  local kd="$1/kubelet" f id c
  [[ -d $kd ]] || return 0
  if [[ -s $KUBELET_CLAIM && $(cut -d' ' -f3- "$KUBELET_CLAIM") == "$1" ]]; then rm -f "$KUBELET_CLAIM"; fi
  if [[ -d $kd/dockershim/sandbox ]] && docker info >/dev/null 2>&1; then
    for f in "$kd"/dockershim/sandbox/*; do
      [[ -e $f ]] || continue
      id=$(basename "$f")
      for c in $(docker ps -aq --filter "label=io.kubernetes.sandbox.id=$id"); do
        docker rm -f "$c" >/dev/null 2>&1 || true
      done
      docker rm -f "$id" >/dev/null 2>&1 || true
    done
  fi
  # Mounts under the root dir (secret tmpfs, the bind mount itself), deepest first.
  local m
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done < <(awk -v p="$kd/root" '$5 == p || index($5, p "/") == 1 {print $5}' /proc/self/mountinfo | sort -r)
}

# ---------------------------------------------------------------------------------------------
# check: a smoke test of a running cluster with kubectl
# ---------------------------------------------------------------------------------------------

cmd_check() {
  local state=${1:-}
  [[ -n $state && -f $state/env ]] || die "usage: k8s.sh check <state-dir> (of a running cluster)"
  local dir kc ns
  dir="$(cd "$state" && pwd)"
  kc=(kubectl --kubeconfig "$dir/kubeconfig")
  ns="smoke-$$"
  step() { log "check: $*"; }
  step "readyz: $("${kc[@]}" get --raw /readyz)"
  step "namespace $ns"
  "${kc[@]}" create namespace "$ns" >/dev/null
  "${kc[@]}" get namespaces default kube-system kube-public kube-node-lease >/dev/null
  step "ConfigMap"
  "${kc[@]}" -n "$ns" create configmap cm1 --from-literal=k=v >/dev/null
  [[ $("${kc[@]}" -n "$ns" get configmap cm1 -o jsonpath='{.data.k}') == v ]] || die "ConfigMap data"
  step "ServiceAccount token Secret"
  "${kc[@]}" -n "$ns" create serviceaccount robot >/dev/null
  local deadline=$((SECONDS + 60)) secret=""
  until [[ -n $secret ]]; do
    ((SECONDS < deadline)) || die "no token Secret for ServiceAccount robot"
    secret="$("${kc[@]}" -n "$ns" get serviceaccount robot -o jsonpath='{.secrets[0].name}')"
    [[ -n $secret ]] || sleep 0.5
  done
  [[ $("${kc[@]}" -n "$ns" get secret "$secret" -o jsonpath='{.type}') == kubernetes.io/service-account-token ]] ||
    die "Secret $secret is not a service-account token"
  step "Deployment -> ReplicaSet -> 2 Pods"
  "${kc[@]}" -n "$ns" create deployment web --image="$BUSYBOX_IMAGE" --replicas=2 -- /bin/sleep 3600 >/dev/null
  deadline=$((SECONDS + 60))
  until [[ $("${kc[@]}" -n "$ns" get pods -l app=web -o name | wc -l) -eq 2 ]]; do
    ((SECONDS < deadline)) || die "the Deployment's Pods did not appear"
    sleep 0.5
  done
  "${kc[@]}" -n "$ns" get replicasets -l app=web -o name | grep -q . || die "no ReplicaSet"
  if grep -q '^K8S_WITH_KUBELET=1$' "$dir/env"; then
    step "Pod with a secret volume, an emptyDir and a claim of the default StorageClass"
    "${kc[@]}" -n "$ns" create secret generic s1 --from-literal=password=hunter2 >/dev/null
    "${kc[@]}" -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: claim}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: sub}
spec:
  clusterIP: None
  selector: {app: files}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: files, labels: {app: files}}
spec:
  restartPolicy: Never
  hostname: files
  subdomain: sub
  containers:
  - name: c
    image: $BUSYBOX_IMAGE
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "cat /secret/password; echo; echo scratch-ok >/scratch/f; cat /scratch/f; echo claim-ok >/data/f; sleep 3600"]
    resources: {requests: {cpu: 10m, memory: 16Mi}}
    volumeMounts:
    - {name: sec, mountPath: /secret}
    - {name: scratch, mountPath: /scratch}
    - {name: data, mountPath: /data}
  volumes:
  - {name: sec, secret: {secretName: s1}}
  - {name: scratch, emptyDir: {}}
  - {name: data, persistentVolumeClaim: {claimName: claim}}
EOF
    "${kc[@]}" -n "$ns" wait pod/files --for=condition=Ready --timeout=120s >/dev/null
    "${kc[@]}" -n "$ns" wait pods -l app=web --for=condition=Ready --timeout=120s >/dev/null
    deadline=$((SECONDS + 30))
    until [[ $("${kc[@]}" -n "$ns" logs files) == $'hunter2\nscratch-ok' ]]; do
      ((SECONDS < deadline)) || die "pod files: logs are $("${kc[@]}" -n "$ns" logs files)"
      sleep 0.5
    done
    [[ $("${kc[@]}" -n "$ns" exec files -- cat /secret/password) == hunter2 ]] || die "exec"
    [[ $("${kc[@]}" -n "$ns" exec files -- cat /data/f) == claim-ok ]] || die "the claim's volume"
    step "cluster DNS: files.sub.$ns.svc.cluster.local from inside the pod"
    local ip name="files.sub.$ns.svc.cluster.local"
    ip=$("${kc[@]}" -n "$ns" get pod files -o jsonpath='{.status.podIP}')
    deadline=$((SECONDS + 30))
    until "${kc[@]}" -n "$ns" exec files -- nslookup "$name" 2>/dev/null | grep -q "Address: $ip\$"; do
      ((SECONDS < deadline)) || die "$name does not resolve to $ip: $("${kc[@]}" -n "$ns" exec files -- nslookup "$name" 2>&1)"
      sleep 1
    done
  fi
  step "deleting namespace $ns"
  "${kc[@]}" delete namespace "$ns" --wait=false >/dev/null
  log "check: ok"
}

# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

main() {
  local cmd="${1:-}"
  shift || true
  case $cmd in
    build) cmd_build "$@" ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    restart-store-member) cmd_restart_store_member "$@" ;;
    check) cmd_check "$@" ;;
    __kubelet_ns) kubelet_ns_exec "$@" ;;
    __dns_feed) dns_feed "$@" ;;
    *)
      sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
      exit 2
      ;;
  esac
}

# One line: bash reads no further than it, so editing this file under a running build is safe.
main "$@"; exit $?

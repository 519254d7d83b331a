#!/usr/bin/env bash
# Times rustcd's backup path on this machine: a 3-member rustcd cluster (release build) on free
# loopback ports, N keys loaded with etcdctl txns (128 puts each), then
#   rustcd backup save  (Status of each member, snapshot from a follower, verification: checksums,
#                        restore into a scratch dir, HashKV against the member's; write + fsync)
#   rustcd backup fetch (read back, checksums)
#   rustcd backup restore + start of the restored member until it answers, HashKV compared
# and prints the times and the backup's size. Loopback only; everything under one temp dir, removed
# at the end; processes stopped by PID.
#
# Usage: scripts/backup_timing.sh [KEYS] [VALUE_BYTES]     (defaults 100000 and 100)
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-100000}
value_bytes=${2:-100}
command -v etcdctl >/dev/null || { echo "etcdctl missing (scripts/setup.sh --with-etcd)" >&2; exit 1; }
cargo build --release --quiet --bin rustcd
bin=$PWD/target/release/rustcd
work=$(mktemp -d /tmp/rustcd-backup-timing.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f} s')" "$1" "$(now)"; }

declare -a client peer
initial=""
for i in 0 1 2; do
    client[$i]="http://127.0.0.1:$(free_port)"
    peer[$i]="http://127.0.0.1:$(free_port)"
    initial+="${initial:+,}m$i=${peer[$i]}"
done
for i in 0 1 2; do
    "$bin" --name "m$i" --data-dir "$work/m$i" \
        --listen-client-urls "${client[$i]}" --advertise-client-urls "${client[$i]}" \
        --listen-peer-urls "${peer[$i]}" --initial-advertise-peer-urls "${peer[$i]}" \
        --initial-cluster "$initial" --initial-cluster-token timing 2>"$work/m$i.log" &
    pids+=($!)
done
endpoints="${client[0]},${client[1]},${client[2]}"
export ETCDCTL_API=3
until etcdctl --endpoints "$endpoints" endpoint health >/dev/null 2>&1; do sleep 0.2; done

echo "loading $keys keys of $value_bytes bytes..." >&2
value=$(head -c "$value_bytes" /dev/zero | tr '\0' v)
start=$(now)
python3 - "$keys" "$value" <<'EOF' | while IFS= read -r -d $'\f' batch; do
import sys
keys, value = int(sys.argv[1]), sys.argv[2]
for base in range(0, keys, 128):
    ops = "".join(f"put /timing/{k:08d} {value}\n" for k in range(base, min(base + 128, keys)))
    sys.stdout.write("\n" + ops + "\n\n\f")
EOF
    printf '%s' "$batch" | etcdctl --endpoints "${client[0]}" txn >/dev/null
done
load=$(since "$start")

mkdir "$work/backups"
start=$(now)
result=$("$bin" backup save --endpoints "$endpoints" --to "$work/backups/" 2>/dev/null)
save=$(since "$start")
size=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["size"], r["revision"], r["hash"])' "$result")
read -r bytes revision hash <<<"$size"

start=$(now)
"$bin" backup fetch --from "$work/backups/" --to "$work/fetched.db" >/dev/null
fetch=$(since "$start")

rclient="http://127.0.0.1:$(free_port)"
rpeer="http://127.0.0.1:$(free_port)"
start=$(now)
"$bin" backup restore --from "$work/backups/" --name r0 --data-dir "$work/r0" \
    --initial-cluster "r0=$rpeer" --initial-cluster-token restored --initial-advertise-peer-urls "$rpeer" >/dev/null
restore=$(since "$start")
start=$(now)
"$bin" --name r0 --data-dir "$work/r0" --listen-client-urls "$rclient" --advertise-client-urls "$rclient" \
    --listen-peer-urls "$rpeer" --initial-advertise-peer-urls "$rpeer" \
    --initial-cluster "r0=$rpeer" --initial-cluster-token restored 2>"$work/r0.log" &
pids+=($!)
until etcdctl --endpoints "$rclient" endpoint health >/dev/null 2>&1; do sleep 0.1; done
ready=$(since "$start")
restored_hash=$(etcdctl --endpoints "$rclient" endpoint hashkv --rev="$revision" -w json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["HashKV"]["hash"])')
[[ "$restored_hash" == "$hash" ]] || { echo "HashKV differs: backup $hash, restored $restored_hash" >&2; exit 1; }

cat <<EOF
| $keys keys x $value_bytes B, 3 members | |
|---|---|
| load (etcdctl txns of 128 puts) | $load |
| backup size | $bytes bytes (revision $revision) |
| rustcd backup save (snapshot + verification + write) | $save |
| rustcd backup fetch (read + checksums) | $fetch |
| rustcd backup restore (fetch + new data dir) | $restore |
| restored member start until healthy | $ready |
| HashKV at revision $revision, restored vs backup | equal ($hash) |
EOF

#!/usr/bin/env bash
# What keeping every revision costs, etcd against Flotilla, in one run: a
# fresh 3-member cluster of each on loopback (fsync on, no compaction:
# etcd's default, and Flotilla with --auto-compaction-retention 0), 64
# clients writing 256-byte values over KEYS random keys for SECONDS
# (`flotilla bench kv`), then:
#   - the write throughput and p50;
#   - revisions written, each member's RSS, and the data directories' size;
#   - a read of every key at the revision halfway through the writes
#     (limit 1: every key's state then is found and counted, one is
#     sent), timed;
#   - restart time: every member SIGTERMed and started again on its data,
#     until a linearizable read is answered.
# Installs Debian's etcd-server if etcd is missing. Stops only the
# processes it started, by PID.
# Usage: bench/mvcc-history.sh [SECONDS] [KEYS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECS="${1:-30}"
KEYS="${2:-100000}"
if ! [[ "$SECS" =~ ^[1-9][0-9]*$ && "$KEYS" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: bench/mvcc-history.sh [SECONDS] [KEYS] (whole numbers from 1; got '$SECS' '$KEYS')" >&2
    exit 2
fi
if ! command -v etcd >/dev/null; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq etcd-server
fi
cargo build --release -q -p flotilla-cli
F="${CARGO_TARGET_DIR:-$PWD/target}/release/flotilla"
WORK="$(mktemp -d /tmp/flotilla-mvcc.XXXXXX)"
PIDS=()
stop() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    PIDS=()
}
trap 'stop; rm -rf "$WORK"' EXIT
EPS=(127.0.0.1:32379 127.0.0.1:32479 127.0.0.1:32579)
ALL="$(IFS=,; echo "${EPS[*]}")"
ectl() { ETCDCTL_API=3 etcdctl --endpoints "$ALL" --command-timeout 60s "$@"; }

start() {
    local sys="$1" i
    local cl="e1=http://127.0.0.1:32380,e2=http://127.0.0.1:32480,e3=http://127.0.0.1:32580"
    local peers="1=127.0.0.1:32379,2=127.0.0.1:32479,3=127.0.0.1:32579"
    for i in 1 2 3; do
        local cp=$((32279 + i * 100)) pp=$((32280 + i * 100))
        if [ "$sys" = etcd ]; then
            etcd --name "e$i" --data-dir "$WORK/etcd$i" \
                --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
                --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
                --initial-cluster "$cl" --initial-cluster-state new >>"$WORK/etcd$i.log" 2>&1 &
        else
            "$F" server --id "$i" --listen "127.0.0.1:$cp" --peers "$peers" \
                --auto-compaction-retention 0 --data-dir "$WORK/flotilla$i" >>"$WORK/flotilla$i.log" 2>&1 &
        fi
        PIDS+=($!)
    done
}

# ready: waits (up to 5 min) until a linearizable read is answered.
ready() {
    for _ in $(seq 1 3000); do
        ectl get ready-probe >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "no answer within 5 minutes" >&2; return 1
}

# revision: the store's revision (JSON leaves out a zero one).
revision() {
    local json
    json=$(ectl get ready-probe -w json)
    if [[ "$json" == *'"revision":'* ]]; then
        echo "$json" | sed -E 's/.*"revision":([0-9]+).*/\1/'
    else
        echo 0
    fi
}
rss() {
    local p kb out=""
    for p in "${PIDS[@]}"; do
        kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
        out+="$((kb / 1024))MiB "
    done
    echo "$out"
}
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

run() {
    local sys="$1" start_rev end_rev half t0 line count
    start "$sys"
    ready
    start_rev=$(revision)
    line=$("$F" bench kv --endpoints "$ALL" --clients 64 --conns 8 --keys "$KEYS" \
        --duration "${SECS}s" --warmup 1s | grep 'throughput=')
    end_rev=$(revision)
    half=$(( (start_rev + end_rev) / 2 ))
    echo "$sys writes: $line"
    echo "$sys revisions written: $((end_rev - start_rev)); RSS per member: $(rss); data dirs: $(du -sh "$WORK/$sys"1 | cut -f1) each"
    t0=$(date +%s%N)
    # --limit 1: the answer's count is every key in the range all the same.
    count=$(ectl get "" --from-key --rev "$half" --limit 1 -w json | sed -E 's/.*"count":([0-9]+).*/\1/')
    echo "$sys read of every key at revision $half: $count keys in $(ms_since "$t0") ms"
    stop
    t0=$(date +%s%N)
    start "$sys"
    ready
    echo "$sys restart to a linearizable read: $(ms_since "$t0") ms; RSS per member after: $(rss)"
    stop
}

sync
run etcd
sync
run flotilla

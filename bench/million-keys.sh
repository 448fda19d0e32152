#!/usr/bin/env bash
# Millions of keys, etcd against Flotilla, in one run: a fresh 3-member
# cluster of each on loopback (fsync on; the log compacted on the default
# schedule, a snapshot every 100,000 entries for both; an 8 GiB backend
# quota for both, etcd's largest advised, so neither refuses the load at
# the 2 GiB default), then:
#   - the load: KEYS distinct keys of 256-byte values, each written once
#     by 64 clients over all members (`flotilla bench kv --sequential`);
#   - each member's RSS (now and peak since start) and data directory;
#   - 20 s of 64 clients overwriting random keys: write p50/p99/max, and
#     how many snapshots Flotilla's members took meanwhile;
#   - `etcdctl snapshot save` from one member: time and size;
#   - restart: every member SIGTERMed and started again on its data,
#     until a linearizable read is answered;
#   - catch-up: a fourth member added and started empty, timed until a
#     serializable read on it finds the key written after the load (it
#     has every key then), and its RSS.
# 1M keys (default): `bench/million-keys.sh`; 5M: `bench/million-keys.sh
# 5000000`. SYSTEMS picks what runs (default "etcd flotilla");
# SNAPSHOT_ENTRIES the snapshot schedule (below). Installs
# Debian's etcd-server if etcd is missing. Stops only the processes it
# started, by PID.
# Usage: [SYSTEMS=...] [SNAPSHOT_ENTRIES=N] bench/million-keys.sh [KEYS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KEYS="${1:-1000000}"
if ! [[ "$KEYS" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: [SYSTEMS=...] bench/million-keys.sh [KEYS] (a whole number from 1; got '$KEYS')" >&2
    exit 2
fi
QUOTA=$((8 * 1024 * 1024 * 1024))
# shellcheck source=bench/lib.sh
. "$PWD/bench/lib.sh"
STOP_WAIT_S=30
bench_setup million
set_endpoints
NEW_CLIENT=127.0.0.1:32679
NEW_PEER=127.0.0.1:32680
# SNAPSHOT_ENTRIES: entries between snapshots, for both (etcd's
# --snapshot-count; default 100,000, etcd's default): a huge one shows
# Flotilla's write latency without snapshots.
SNAP="${SNAPSHOT_ENTRIES:-100000}"
ETCD_FLAGS=(--quota-backend-bytes "$QUOTA" --snapshot-count "$SNAP")
ectl() { ETCDCTL_API=3 etcdctl --endpoints "$ALL" --command-timeout 120s "$@"; }

start() {
    if [ "$1" = etcd ]; then start_etcd; else start_flotilla "$F" flotilla --snapshot-entries "$SNAP" --quota-backend-bytes "$QUOTA"; fi
}

# ready ENDPOINT: waits (up to 5 min) until a linearizable read is answered.
ready() {
    for _ in $(seq 1 3000); do
        ETCDCTL_API=3 etcdctl --endpoints "$1" --command-timeout 5s get ready-probe >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "no answer from $1 within 5 minutes" >&2; return 1
}
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# snapshots: Flotilla's snapshots taken so far, summed over the members.
snapshots() {
    local n=0 ep v
    for ep in "${EPS[@]}"; do
        v=$(curl -fsS "http://$ep/metrics" 2>/dev/null | awk '/^flotilla_snapshots_total / { print $2 }' || true)
        n=$((n + ${v:-0}))
    done
    echo "$n"
}

# retry CMD...: runs CMD until it succeeds, up to 60 s (a member add is
# refused until every member has been heard from lately, which takes a
# few seconds after a restart, in etcd and Flotilla alike).
retry() {
    local out
    for _ in $(seq 1 120); do
        out=$("$@" 2>&1) && return 0
        sleep 0.5
    done
    echo "gave up after 60 s: $*: $out" >&2; return 1
}

# add_member SYS: adds and starts a fourth member with an empty data dir.
add_member() {
    local dir="$WORK/${1}4"
    if [ "$1" = etcd ]; then
        local cl="" i
        for i in $(members) 4; do cl="$cl${cl:+,}e$i=http://127.0.0.1:$((32280 + i * 100))"; done
        retry ectl member add e4 --peer-urls "http://$NEW_PEER"
        etcd --name e4 --data-dir "$dir" \
            --listen-client-urls "http://$NEW_CLIENT" --advertise-client-urls "http://$NEW_CLIENT" \
            --listen-peer-urls "http://$NEW_PEER" --initial-advertise-peer-urls "http://$NEW_PEER" \
            --initial-cluster "$cl" --initial-cluster-state existing "${ETCD_FLAGS[@]}" >>"$dir.log" 2>&1 &
    else
        retry "$F" member add --id 4 --peer-url "$NEW_CLIENT" --endpoints "$ALL"
        "$F" server --id 4 --listen "$NEW_CLIENT" --join --peers "$ALL" --data-dir "$dir" \
            --snapshot-entries "$SNAP" --quota-backend-bytes "$QUOTA" >>"$dir.log" 2>&1 &
    fi
    PIDS+=($!)
}

# bench_kv FLAGS...: 64 clients over all members on KEYS keys; prints the
# figures line, or says what failed and stops the script.
bench_kv() {
    local out
    if ! out=$("$F" bench kv --endpoints "$ALL" --clients 64 --conns 8 --keys "$KEYS" "$@" 2>&1) \
        || ! grep -q 'throughput=' <<<"$out"; then
        echo "flotilla bench kv $* failed: $out" >&2
        exit 1
    fi
    grep 'throughput=' <<<"$out"
}

run() {
    local sys="$1" t0 line before size
    start "$sys"
    ready "$ALL"
    t0=$(date +%s%N)
    line=$(bench_kv --total "$KEYS" --sequential --duration 1440m --warmup 0s)
    ectl put million-loaded yes >/dev/null
    echo "$sys load of $KEYS keys: $line (in $(ms_since "$t0") ms)"
    echo "$sys RSS per member after the load: $(rss); data dirs: $(du -sh "$WORK/$sys"1 | cut -f1) each"
    before=$(snapshots)
    line=$(bench_kv --duration 20s --warmup 2s)
    echo "$sys overwrites for 20 s: $line"
    if [ "$sys" = flotilla ]; then
        echo "$sys snapshots taken by the members meanwhile: $(( $(snapshots) - before ))"
    fi
    t0=$(date +%s%N)
    ETCDCTL_API=3 etcdctl --endpoints "${EPS[0]}" --command-timeout 600s snapshot save "$WORK/$sys.db" >/dev/null 2>&1
    size=$(stat -c %s "$WORK/$sys.db")
    echo "$sys snapshot save from member 1: $(ms_since "$t0") ms, $((size / 1024 / 1024)) MiB"
    rm -f "$WORK/$sys.db"
    stop
    t0=$(date +%s%N)
    start "$sys"
    ready "$ALL"
    echo "$sys restart to a linearizable read: $(ms_since "$t0") ms; RSS per member after: $(rss)"
    t0=$(date +%s%N)
    add_member "$sys"
    local caught=""
    for _ in $(seq 1 6000); do
        if [ "$(ETCDCTL_API=3 etcdctl --endpoints "$NEW_CLIENT" --command-timeout 5s get million-loaded \
            --consistency=s --print-value-only 2>/dev/null)" = yes ]; then
            caught=yes
            break
        fi
        sleep 0.1
    done
    if [ -n "$caught" ]; then
        echo "$sys new member caught up (serializable read of the last key) in $(ms_since "$t0") ms; RSS per member: $(rss)"
    else
        echo "$sys new member did not catch up within 10 minutes; its log: $WORK/${sys}4.log" >&2
    fi
    stop
}

run_systems

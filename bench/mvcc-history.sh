#!/usr/bin/env bash
# What keeping every revision costs, etcd against Flotilla, in one run: a
# fresh MEMBERS-member cluster of each on loopback (default 3; fsync on,
# no compaction: etcd's default, and Flotilla with
# --auto-compaction-retention 0; both with an 8 GiB backend quota, etcd's
# largest advised, so neither refuses writes at the 2 GiB default), 64
# clients writing WRITES 256-byte values over KEYS random keys
# (`flotilla bench kv --total`: both end in the same state), then:
#   - the write throughput and p50;
#   - revisions written, each member's RSS, and the data directories' size;
#   - a read of every key at the revision halfway through the writes
#     (limit 1: every key's state then is found and counted, one is
#     sent), timed;
#   - restart time: every member SIGTERMed and started again on its data,
#     until a linearizable read is answered.
# 1M keys x 10 revisions: `MEMBERS=1 bench/mvcc-history.sh 10000000 1000000`
# (three in-memory members of that size would not fit one 24 GiB machine).
# RSS is printed as now and (peak) since the member started. SYSTEMS
# picks what runs (default "etcd flotilla"; "flotilla" alone compares two
# builds of it). Installs Debian's etcd-server if etcd is missing. Stops
# only the processes it started, by PID.
# Usage: [MEMBERS=1|2|3] [SYSTEMS=...] bench/mvcc-history.sh [WRITES] [KEYS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WRITES="${1:-400000}"
KEYS="${2:-100000}"
MEMBERS="${MEMBERS:-3}"
if ! [[ "$WRITES" =~ ^[1-9][0-9]*$ && "$KEYS" =~ ^[1-9][0-9]*$ && "$MEMBERS" =~ ^[123]$ ]]; then
    echo "usage: [MEMBERS=1|2|3] bench/mvcc-history.sh [WRITES] [KEYS] (whole numbers from 1; got '$WRITES' '$KEYS', MEMBERS '$MEMBERS')" >&2
    exit 2
fi
QUOTA=$((8 * 1024 * 1024 * 1024))
# shellcheck source=bench/lib.sh
. "$PWD/bench/lib.sh"
# A member with a big store may take longer than usual to stop; one
# killed would make the restart a crash recovery.
STOP_WAIT_S=30
bench_setup mvcc
set_endpoints
ETCD_FLAGS=(--quota-backend-bytes "$QUOTA")
ectl() { ETCDCTL_API=3 etcdctl --endpoints "$ALL" --command-timeout 60s "$@"; }

start() {
    if [ "$1" = etcd ]; then start_etcd; else start_flotilla "$F" flotilla --auto-compaction-retention 0 --quota-backend-bytes "$QUOTA"; fi
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
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

run() {
    local sys="$1" start_rev end_rev half t0 line count
    start "$sys"
    ready
    start_rev=$(revision)
    t0=$(date +%s%N)
    line=$("$F" bench kv --endpoints "$ALL" --clients 64 --conns 8 --keys "$KEYS" \
        --total "$WRITES" --duration 1440m --warmup 0s | grep 'throughput=')
    end_rev=$(revision)
    half=$(( (start_rev + end_rev) / 2 ))
    echo "$sys writes: $line (in $(ms_since "$t0") ms)"
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

run_systems

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
# shellcheck source=bench/lib.sh
. "$PWD/bench/lib.sh"
# A member with a big store may take longer than usual to stop; one
# killed would make the restart a crash recovery.
STOP_WAIT_S=30
bench_setup mvcc
EPS=(127.0.0.1:32379 127.0.0.1:32479 127.0.0.1:32579)
ALL="$(IFS=,; echo "${EPS[*]}")"
ectl() { ETCDCTL_API=3 etcdctl --endpoints "$ALL" --command-timeout 60s "$@"; }

start() {
    if [ "$1" = etcd ]; then start_etcd; else start_flotilla "$F" flotilla --auto-compaction-retention 0; fi
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

#!/usr/bin/env bash
# What watchers cost, etcd against Flotilla in one run: a fresh 3-member
# cluster of each on loopback (fsync on for both), driven by the same
# `flotilla bench watch` over etcd's v3 API through all members: closed-loop
# writers without watchers, then with WATCHERS watches over KEYS keys.
# Prints each system's line (write throughput without and with the
# watchers and their ratio, events received against expected, delivery
# latency percentiles) and each member's RSS once the watchers are open.
# The last line is machine-readable:
#   watch_ratio_etcd=R1 watch_ratio_flotilla=R2 p99_etcd_ms=P1 p99_flotilla_ms=P2
# Installs Debian's etcd-server if etcd is missing. Stops only the
# processes it started, by PID.
# Usage: bench/compare-watch.sh [SECONDS] [WATCHERS] [KEYS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECS="${1:-10}"
WATCHERS="${2:-10000}"
KEYS="${3:-1000}"
for n in "$SECS" "$WATCHERS" "$KEYS"; do
    if ! [[ "$n" =~ ^[1-9][0-9]*$ ]]; then
        echo "usage: bench/compare-watch.sh [SECONDS] [WATCHERS] [KEYS] (whole numbers from 1; got '$n')" >&2
        exit 2
    fi
done
# shellcheck source=bench/lib.sh
. "$PWD/bench/lib.sh"
bench_setup watch
EPS=(127.0.0.1:32379 127.0.0.1:32479 127.0.0.1:32579)
ALL="$(IFS=,; echo "${EPS[*]}")"

# measure SYS: one bench run against the running cluster; the RSS is
# sampled near the end of the phase with watchers.
measure() {
    local sys="$1" line
    LEADER_EP="$(leader "${EPS[@]}")"
    ( sleep $((SECS * 2 - 1)); echo "$sys RSS per member with the watchers open: $(rss)" ) &
    local sampler=$!
    line=$("$F" bench watch --endpoints "$ALL" --watchers "$WATCHERS" --keys "$KEYS" --duration "${SECS}s")
    wait "$sampler" || true
    echo "$sys: $line"
    echo "$line" > "$WORK/$sys.line"
}

sync
start_etcd
measure etcd
stop
sync
start_flotilla
measure flotilla
stop

field() { sed -E "s/.*$2=([0-9.]+).*/\1/" "$WORK/$1.line"; }
echo "watch_ratio_etcd=$(field etcd ratio) watch_ratio_flotilla=$(field flotilla ratio) p99_etcd_ms=$(field etcd p99) p99_flotilla_ms=$(field flotilla p99)"

# Shared by the side-by-side benchmarks (compare-etcd.sh, compare-watch.sh):
# starting 3-member etcd and Flotilla clusters on loopback ports
# 32379/32479/32579 (fsync on for both), finding the leader, each member's
# RSS, and stopping only the processes started here, by PID.
# The caller sets F (this build's flotilla), WORK (a scratch directory),
# PIDS=() and EPS (the three client endpoints); REFERENCE=BIN makes
# start_etcd start that build of Flotilla instead of etcd.

stop() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    PIDS=()
}
# leader ENDPOINTS...: prints the endpoint of the leader (waits up to 30 s).
leader() {
    for _ in $(seq 1 300); do
        for e in "$@"; do
            if ETCDCTL_API=3 etcdctl --endpoints "$e" --command-timeout 1s endpoint status 2>/dev/null | grep -q ', true, '; then
                echo "$e"; return 0
            fi
        done
        sleep 0.1
    done
    echo "no leader among $*" >&2; return 1
}

# rss: each member's resident set (VmRSS), the leader's marked with '*'.
rss() {
    local i=0 p kb
    for p in "${PIDS[@]}"; do
        i=$((i + 1))
        kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
        printf '%s:%dMiB%s ' "$i" $((kb / 1024)) "$([ "${EPS[$((i - 1))]}" = "$LEADER_EP" ] && echo '*')"
    done
}

start_etcd() {
    if [ -n "${REFERENCE:-}" ]; then
        start_flotilla "$REFERENCE" ref
        return
    fi
    local cl="e1=http://127.0.0.1:32380,e2=http://127.0.0.1:32480,e3=http://127.0.0.1:32580"
    for i in 1 2 3; do
        local cp=$((32279 + i * 100)) pp=$((32280 + i * 100))
        etcd --name "e$i" --data-dir "$WORK/etcd$i" \
            --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
            --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
            --initial-cluster "$cl" --initial-cluster-state new >"$WORK/etcd$i.log" 2>&1 &
        PIDS+=($!)
    done
}

# start_flotilla [BIN] [DIR_PREFIX]: a 3-member cluster of BIN (this build).
start_flotilla() {
    local bin="${1:-$F}" prefix="${2:-flotilla}"
    local peers="1=127.0.0.1:32379,2=127.0.0.1:32479,3=127.0.0.1:32579"
    for i in 1 2 3; do
        "$bin" server --id "$i" --listen "127.0.0.1:$((32279 + i * 100))" --peers "$peers" \
            --data-dir "$WORK/$prefix$i" >"$WORK/$prefix$i.log" 2>&1 &
        PIDS+=($!)
    done
}


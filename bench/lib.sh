# Shared by the side-by-side benchmarks (compare-etcd.sh, compare-watch.sh,
# mvcc-history.sh): their setup, starting MEMBERS-member (default 3, at
# most 3) etcd and Flotilla clusters on loopback ports 32379/32479/32579
# (fsync on for both),
# finding the leader, each member's RSS, and stopping only the processes
# started here, by PID.
# The caller sources this from the repository's root, calls bench_setup,
# and sets EPS (the three client endpoints); REFERENCE=BIN makes
# start_etcd start that build of Flotilla instead of etcd. STOP_WAIT_S
# (default 10) is how long stop lets a member exit before killing it.

# bench_setup NAME: installs Debian's etcd-server if etcd is missing (and
# no REFERENCE build stands in for it), builds this release, and sets F
# (its flotilla), WORK (a scratch directory /tmp/flotilla-NAME.*, removed
# at exit), PIDS=() and the exit trap that stops what was started.
bench_setup() {
    if [ -z "${REFERENCE:-}" ] && ! command -v etcd >/dev/null; then
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq etcd-server
    fi
    cargo build --release -q -p flotilla-cli
    F="${CARGO_TARGET_DIR:-$PWD/target}/release/flotilla"
    WORK="$(mktemp -d "/tmp/flotilla-$1.XXXXXX")"
    PIDS=()
    trap 'stop; rm -rf "$WORK"' EXIT
}

stop() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 $((${STOP_WAIT_S:-10} * 10))); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    PIDS=()
}
# leader ENDPOINTS...: prints the endpoint of the leader (waits up to 30 s),
# asked with SCHEME (https:// for TLS) and ETCDCTL_TLS (etcdctl's TLS flags).
ETCDCTL_TLS=()
leader() {
    for _ in $(seq 1 300); do
        for e in "$@"; do
            if ETCDCTL_API=3 etcdctl --endpoints "${SCHEME:-}$e" "${ETCDCTL_TLS[@]}" --command-timeout 1s endpoint status 2>/dev/null | grep -q ', true, '; then
                echo "$e"; return 0
            fi
        done
        sleep 0.1
    done
    echo "no leader among $*" >&2; return 1
}

# rss: each member's resident set (VmRSS), the leader's marked with '*'.
rss() {
    local i=0 p kb peak
    for p in "${PIDS[@]}"; do
        i=$((i + 1))
        kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
        peak=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
        printf '%s:%dMiB(peak %d)%s ' "$i" $((kb / 1024)) $((peak / 1024)) "$([ -n "${LEADER_EP:-}" ] && [ "${EPS[$((i - 1))]:-}" = "$LEADER_EP" ] && echo '*')"
    done
}

# SERVER_TLS: etcd's server TLS flags, which etcd and Flotilla share (with
# ETCD_SCHEME=https for etcd's URLs); empty for plaintext.
SERVER_TLS=()

# members: the member numbers, 1 to MEMBERS.
members() { seq 1 "${MEMBERS:-3}"; }

# set_endpoints: EPS, the members' client endpoints, and ALL, the same
# joined by commas.
set_endpoints() {
    local i
    EPS=()
    for i in $(members); do EPS+=("127.0.0.1:$((32279 + i * 100))"); done
    ALL="$(IFS=,; echo "${EPS[*]}")"
}

# run_systems: the script's `run SYS` for each of SYSTEMS (default
# "etcd flotilla"), the disks synced before each.
run_systems() {
    local sys
    for sys in ${SYSTEMS:-etcd flotilla}; do
        case "$sys" in
        etcd | flotilla) sync; run "$sys" ;;
        *) echo "SYSTEMS: '$sys' is neither etcd nor flotilla" >&2; exit 2 ;;
        esac
    done
}

start_etcd() {
    if [ -n "${REFERENCE:-}" ]; then
        start_flotilla "$REFERENCE" ref
        return
    fi
    local s="${ETCD_SCHEME:-http}" cl="" i
    for i in $(members); do cl="$cl${cl:+,}e$i=$s://127.0.0.1:$((32280 + i * 100))"; done
    for i in $(members); do
        local cp=$((32279 + i * 100)) pp=$((32280 + i * 100))
        etcd --name "e$i" --data-dir "$WORK/etcd$i" \
            --listen-client-urls "$s://127.0.0.1:$cp" --advertise-client-urls "$s://127.0.0.1:$cp" \
            --listen-peer-urls "$s://127.0.0.1:$pp" --initial-advertise-peer-urls "$s://127.0.0.1:$pp" \
            --initial-cluster "$cl" --initial-cluster-state new "${SERVER_TLS[@]}" "${ETCD_FLAGS[@]}" >>"$WORK/etcd$i.log" 2>&1 &
        PIDS+=($!)
    done
}

# ETCD_FLAGS: more flags for every etcd member (e.g. a quota).
ETCD_FLAGS=()

# start_flotilla [BIN] [DIR_PREFIX] [FLAGS...]: a MEMBERS-member cluster of
# BIN (default: this build), each member started with FLAGS too; logs
# append, so a restart on the same data keeps the first run's.
start_flotilla() {
    local bin="${1:-$F}" prefix="${2:-flotilla}" peers="" i
    shift $(($# < 2 ? $# : 2))
    for i in $(members); do peers="$peers${peers:+,}$i=127.0.0.1:$((32279 + i * 100))"; done
    for i in $(members); do
        "$bin" server --id "$i" --listen "127.0.0.1:$((32279 + i * 100))" --peers "$peers" \
            --data-dir "$WORK/$prefix$i" "${SERVER_TLS[@]}" "$@" >>"$WORK/$prefix$i.log" 2>&1 &
        PIDS+=($!)
    done
}

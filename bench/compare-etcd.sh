#!/usr/bin/env bash
# Side-by-side benchmark: a fresh 3-member etcd and a fresh 3-member
# Flotilla on loopback (fsync on for both), each driven by the same
# `flotilla bench kv` over etcd's v3 API against its leader:
#   1 client writes; 64 clients writes; 64 clients writes through a
#   follower; 64 clients linearizable reads; 64 clients serializable reads.
# Before them, `flotilla bench floor --dir` on the filesystem of the data
# dirs measures the floor of a 1-client write: p50 of one fsync (append +
# fdatasync) plus p50 of one loopback TCP round trip.
# Last, the same workloads against `flotilla bench noop-server` (etcd's KV
# service answering at once: no Raft, no disk) give the ceiling that the
# gRPC layer and this load generator allow on the machine.
# Prints each run's line with the CPU all members used per request, the
# ratios, each member's RSS after the writes (the leader's marked '*'),
# and the floor. A fifth workload, writes64f, writes with 64 clients
# through a follower: etcd and Flotilla both forward those to the
# leader, whose RSS must not grow with them (issue 19). The
# last line is machine-readable:
#   writes64_ratio=R1 reads64_ratio=R2 p50_1client_over_floor=R3
# R1, R2: Flotilla's throughput over etcd's; R3: Flotilla's 1-client write
# p50 over the floor p50, both measured in this run.
# With ROUNDS > 1, etcd and Flotilla take turns that many times (a fresh
# cluster each time) and every figure is the median over the rounds (a
# ratio: the median of each round's ratio), which damps this VM's swings
# of tens of percent between runs.
# Installs Debian's etcd-server if etcd is missing. Stops only the
# processes it started, by PID.
# With REFERENCE=/path/to/flotilla, the reference cluster is that build of
# Flotilla instead of etcd (the same ports, flags and workloads): an old
# build against this one, side by side ("etcd" in the table then reads
# "reference").
# With AUTH=1, both clusters run with auth on (user root with role root,
# made and enabled with etcdctl after each start) and every bench request
# carries root's token (`flotilla bench kv --user root:rootpw`); the no-op
# server, which has no Auth service, runs without.
# With TLS=1, both clusters serve mutual TLS to clients and peers (etcd's
# flags, the same on both; certificates from `flotilla certs`), the bench
# dials https with a client certificate, and each cluster's handshake cost
# is measured: the median, over 200 new connections from curl to
# /health, of the time from TCP connected to TLS established
# (time_appconnect - time_connect), and of the whole request. The no-op
# server runs without TLS.
# Usage: [REFERENCE=BIN] [AUTH=1] [TLS=1] bench/compare-etcd.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECS="${1:-10}"
ROUNDS="${2:-1}"
ROUND=1
if ! [[ "$SECS" =~ ^[1-9][0-9]*$ && "$ROUNDS" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: bench/compare-etcd.sh [SECONDS] [ROUNDS] (whole numbers from 1; got '$SECS' '$ROUNDS')" >&2
    exit 2
fi
REF_NAME=etcd
AUTH_ARGS=()
[ "${AUTH:-0}" = 1 ] && AUTH_ARGS=(--user root:rootpw)
if [ -n "${REFERENCE:-}" ]; then
    [ -x "$REFERENCE" ] || { echo "REFERENCE=$REFERENCE is not an executable" >&2; exit 2; }
    REF_NAME=reference
fi
# shellcheck source=bench/lib.sh
. "$PWD/bench/lib.sh"
bench_setup compare
SCHEME=""
CLIENT_TLS=()
if [ "${TLS:-0}" = 1 ]; then
    "$F" certs --dir "$WORK/tls" --members node1 >/dev/null
    T="$WORK/tls"
    SERVER_TLS=(--cert-file "$T/node1.pem" --key-file "$T/node1-key.pem" --trusted-ca-file "$T/ca.pem"
        --client-cert-auth --peer-cert-file "$T/node1.pem" --peer-key-file "$T/node1-key.pem"
        --peer-trusted-ca-file "$T/ca.pem" --peer-client-cert-auth)
    ETCD_SCHEME=https
    SCHEME=https://
    CLIENT_TLS=(--cacert "$T/ca.pem" --cert "$T/client.pem" --key "$T/client-key.pem")
    ETCDCTL_TLS=("${CLIENT_TLS[@]}")
fi

# median: the middle of the numbers on stdin (the mean of the middle two).
median() { sort -g | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2); print (NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2) }'; }

# handshake_cost SYS EP: with TLS=1, 200 new connections to /health,
# one after another; the medians of TLS set-up and of the whole request.
handshake_cost() {
    [ "${TLS:-0}" = 1 ] || return 0
    local i
    for i in $(seq 1 200); do
        curl -s -o /dev/null --cacert "$T/ca.pem" --cert "$T/client.pem" --key "$T/client-key.pem" \
            -w '%{time_connect} %{time_appconnect} %{time_total}\n' "https://$2/health"
    done | awk '{ print ($2 - $1) * 1000, $3 * 1000 }' > "$WORK/hs-$1.$ROUND"
    echo "$1 handshake: median TLS set-up $(cut -d' ' -f1 "$WORK/hs-$1.$ROUND" | median) ms, median /health request on a new connection $(cut -d' ' -f2 "$WORK/hs-$1.$ROUND" | median) ms (200 connections)"
}

# workload NAME EP ARGS...: one bench run; appends "NAME throughput p50" to $WORK/NAME.
# cpu_ticks: user + system CPU of every process started here, in clock ticks.
cpu_ticks() {
    local t=0 p
    for p in "${PIDS[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
    echo "$t"
}
HZ=$(getconf CLK_TCK)

# workload SYS NAME EP ARGS...: one bench run; writes "throughput p50
# server_cpu_us" to $WORK/SYS-NAME, where server_cpu_us is the CPU the
# servers (all members) spent per request, warm-up included.
workload() {
    local sys="$1" name="$2" ep="$3"; shift 3
    local line before after tp cpu
    before=$(cpu_ticks)
    line=$("$F" bench kv --endpoints "$SCHEME$ep" --duration "${SECS}s" --warmup 2s "${CLIENT_TLS[@]}" "${AUTH_ARGS[@]}" "$@" | grep 'throughput=')
    after=$(cpu_ticks)
    tp=$(echo "$line" | sed -E 's/.*throughput=([0-9]+).*/\1/')
    cpu=$(awk -v d=$((after - before)) -v hz="$HZ" -v tp="$tp" -v s="$SECS" 'BEGIN { printf "%.0f", d / hz * 1e6 / (tp * (s + 2)) }')
    echo "$([ "$sys" = etcd ] && echo "$REF_NAME" || echo "$sys") $name: $line server_cpu_per_request=${cpu}us"
    echo "$(echo "$line" | sed -E 's/.*throughput=([0-9]+).*p50=([0-9.]+)ms.*/\1 \2/') $cpu" > "$WORK/$sys-$name.$ROUND"
}

# run_suite SYS LEADER_EP: the workloads against the leader, then 64
# clients writing through a follower (forwarded to the leader, the path
# of issue 19's leak); each member's RSS after every workload.
run_suite() {
    local sys="$1" ep="$2" follower e
    LEADER_EP="$ep"
    for e in "${EPS[@]}"; do [ "$e" != "$ep" ] && follower="$e" && break; done
    # The no-op server is alone: it is its own "follower".
    follower="${follower:-$ep}"
    if [ "$sys" != noop ]; then enable_auth; handshake_cost "$sys" "$ep"; fi
    echo "$sys RSS per member at start: $(rss)"
    workload "$sys" writes1 "$ep" --clients 1 --conns 1
    workload "$sys" writes64 "$ep" --clients 64 --conns 8
    echo "$sys RSS per member after writes64: $(rss)"
    workload "$sys" writes64f "$follower" --clients 64 --conns 8
    echo "$sys RSS per member after writes64f (through a follower): $(rss)"
    workload "$sys" reads64 "$ep" --clients 64 --conns 8 --read-ratio 1
    workload "$sys" sreads64 "$ep" --clients 64 --conns 8 --read-ratio 1 --serializable
    echo "$sys RSS per member: $(rss)"
}

# enable_auth: with AUTH=1, root (role root) and auth on, through etcdctl.
enable_auth() {
    [ "${AUTH:-0}" = 1 ] || return 0
    local ec=(env ETCDCTL_API=3 etcdctl --endpoints "$SCHEME$(IFS=,; echo "${EPS[*]}" | sed "s|,|,$SCHEME|g")" "${ETCDCTL_TLS[@]}" --command-timeout 10s)
    "${ec[@]}" user add root:rootpw >/dev/null
    "${ec[@]}" user grant-role root root >/dev/null
    "${ec[@]}" auth enable >/dev/null
    echo "auth on: requests as root"
}

# Each measurement starts with the page cache flushed (`sync`): on ext4 an
# fdatasync that grows a file commits the journal, which first writes out
# other files' dirty data, so a backlog left by the previous run (or a
# concurrent build) can add milliseconds to every fsync.
EPS=(127.0.0.1:32379 127.0.0.1:32479 127.0.0.1:32579)
sync
# The floor, first, on the filesystem of the data dirs ($WORK/flotilla*).
# Measured right after the clusters had stopped (even after `sync`), its
# fsync p50 came out at 4 ms on a 2-core ext4 VM, against 0.1-0.2 ms on the
# idle disk and 0.7 ms for a whole Flotilla 1-client write; cause not found.
FLOOR=$("$F" bench floor --dir "$WORK" --samples 1000 --value-size 256)
echo "$FLOOR"
FLOOR_P50=$(echo "$FLOOR" | tail -1 | sed -E 's/.*floor_p50_ms=([0-9.]+).*/\1/')
if ! awk -v f="$FLOOR_P50" 'BEGIN { exit !(f + 0 > 0) }'; then
    echo "cannot read floor_p50_ms from: $(echo "$FLOOR" | tail -1)" >&2; exit 1
fi
for ROUND in $(seq 1 "$ROUNDS"); do
    [ "$ROUNDS" -gt 1 ] && echo "round $ROUND of $ROUNDS"
    # Fresh clusters: no round restarts on the data of the one before.
    rm -rf "$WORK"/etcd[0-9] "$WORK"/flotilla[0-9] "$WORK"/ref[0-9]
    start_etcd
    run_suite etcd "$(leader "${EPS[@]}")"
    stop
    sync
    start_flotilla
    run_suite flotilla "$(leader "${EPS[@]}")"
    stop
    sync
done
ROUND=1
AUTH_ARGS=()
SCHEME=""
CLIENT_TLS=()
ETCDCTL_TLS=()
"$F" bench noop-server --listen 127.0.0.1:32379 2>"$WORK/noop.log" &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q "no-op etcd KV server" "$WORK/noop.log" && break; sleep 0.1; done
EPS_SAVED=("${EPS[@]}")
EPS=(127.0.0.1:32379)
run_suite noop 127.0.0.1:32379
EPS=("${EPS_SAVED[@]}")
stop

# col SYS NAME FIELD: the median of one field over the rounds.
col() { for f in "$WORK/$1-$2".*; do cut -d' ' -f"$3" "$f"; done | median; }
# ratio NAME: the median over the rounds of Flotilla's throughput over etcd's.
ratio() {
    for r in $(seq 1 "$ROUNDS"); do
        awk -v a="$(cut -d' ' -f1 "$WORK/flotilla-$1.$r")" -v b="$(cut -d' ' -f1 "$WORK/etcd-$1.$r")" 'BEGIN { print a / b }'
    done | median | awk '{ printf "%.2f", $1 }'
}
[ "$ROUNDS" -gt 1 ] && echo "medians over $ROUNDS rounds:"
printf '%-10s %12s %12s %8s %12s %16s\n' workload "$REF_NAME/s" flotilla/s ratio noop/s 'cpu_us/req e|f|n'
for w in writes1 writes64 writes64f reads64 sreads64; do
    printf '%-10s %12s %12s %8s %12s %16s\n' "$w" "$(col etcd "$w" 1)" "$(col flotilla "$w" 1)" "$(ratio "$w")" "$(col noop "$w" 1)" \
        "$(col etcd "$w" 3)|$(col flotilla "$w" 3)|$(col noop "$w" 3)"
done
echo "(cpu_us/req: CPU of all server processes per request, warm-up included; the load generator's own is its client_cpu)"
echo "p50 1 client: $REF_NAME $(col etcd writes1 2) ms, flotilla $(col flotilla writes1 2) ms, no-op gRPC server $(col noop writes1 2) ms"
FW1=$(col flotilla writes1 2)
R3=$(awk -v a="$FW1" -v b="$FLOOR_P50" 'BEGIN { printf "%.2f", a / b }')
echo "p50 1 client over the floor (one fsync + one loopback round trip): flotilla $FW1 ms / floor $FLOOR_P50 ms = $R3"
echo "writes64_ratio=$(ratio writes64) reads64_ratio=$(ratio reads64) p50_1client_over_floor=$R3"

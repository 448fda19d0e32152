//! A wire fuzzer (issue 19, "no request and no load can hurt the
//! cluster"): for `FLOTILLA_FUZZ_SECS` seconds (20 by default) and at most
//! [`REQUESTS_PER_SEC`] requests per second of that, sends a live 3-member cluster, member after
//! member, the requests of [`wire`]: generated requests to every client
//! method, valid and invalid, membership changes that must be refused,
//! commands proposed on the peer service, and random bytes on every client
//! and peer method, unary and streaming. Beside it, the linearizability
//! workload of the cluster tests writes and reads its own keys through
//! every member ([`wire::fence`] keeps the fuzzer's writes off them).
//!
//! Then: every member still answers; every answer was OK or a gRPC status
//! the server chose (never `UNKNOWN` or `UNAVAILABLE`, which a reset
//! connection gives, and `INTERNAL` only for a body that does not
//! decode: anything else would be a server bug); no generated membership change was accepted and the
//! cluster still has its three members; the cluster restarts on its data;
//! and, after the restart, every write the workload saw acknowledged is
//! there and its history is linearizable. The seed is `FLOTILLA_FUZZ_SEED`
//! (printed), so the requests can be replayed (the interleaving with the
//! cluster's timing cannot).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;
mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cluster_common::Cluster;
use cluster_common::workload::Workload;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::raft::v1 as raftpb;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use tonic::Code;
use tonic::codegen::tokio_stream;
use tonic::transport::Channel;
use wire::fence::Fence;
use wire::{Fuzz, STREAMS, UNARY};

/// The most requests one run sends per second of its length (it sends
/// them one at a time, about 500 to 1,000 a second on 2 cores).
const REQUESTS_PER_SEC: u64 = 2_500;
/// The most workload phases (25 operations per client) one run makes.
const MAX_PHASES: u64 = 5_000;
/// The longest a single request may take before it counts as an answer
/// missing (a member that hangs).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A watch stream with one request: its first answer, then dropped.
async fn watch(ch: Channel, req: pb::WatchRequest) -> Result<(), tonic::Status> {
    let mut client = pb::watch_client::WatchClient::new(ch);
    let mut answers = client
        .watch(tokio_stream::iter(vec![req]))
        .await?
        .into_inner();
    answers.message().await.map(|_| ())
}

/// The membership requests (all invalid by construction).
async fn membership(ch: Channel, f: Fuzz) -> Result<(), tonic::Status> {
    let mut client = pb::cluster_client::ClusterClient::new(ch);
    match f {
        Fuzz::MemberAdd(r) => client.member_add(r).await.map(|_| ()),
        Fuzz::MemberRemove(id) => {
            let r = pb::MemberRemoveRequest { id };
            client.member_remove(r).await.map(|_| ())
        }
        Fuzz::MemberPromote(id) => {
            let r = pb::MemberPromoteRequest { id };
            client.member_promote(r).await.map(|_| ())
        }
        Fuzz::MemberUpdate(id, peer_ur_ls) => {
            let r = pb::MemberUpdateRequest { id, peer_ur_ls };
            client.member_update(r).await.map(|_| ())
        }
        other => unreachable!("not a membership request: {other:?}"),
    }
}

/// Sends `f` to the member behind `ch`; the answer's code (`Ok` for an
/// answer) and message, and whether the request was well-formed protobuf.
async fn send(ch: Channel, f: Fuzz, cluster_id: u64) -> (Code, String, bool) {
    use flotilla_proto::kv::v1::kv_client::KvClient as SessionClient;
    use pb::kv_client::KvClient;
    use pb::maintenance_client::MaintenanceClient;
    use raftpb::proposals_client::ProposalsClient;
    let result = match f {
        Fuzz::Range(r) => KvClient::new(ch).range(r).await.map(|_| ()),
        Fuzz::Put(r) => KvClient::new(ch).put(r).await.map(|_| ()),
        Fuzz::Delete(r) => KvClient::new(ch).delete_range(r).await.map(|_| ()),
        Fuzz::Txn(r) => KvClient::new(ch).txn(r).await.map(|_| ()),
        Fuzz::Compact(revision) => {
            let r = pb::CompactionRequest {
                revision,
                physical: false,
            };
            KvClient::new(ch).compact(r).await.map(|_| ())
        }
        Fuzz::Watch(r) => watch(ch, r).await,
        Fuzz::Session(w) => SessionClient::new(ch).write(w).await.map(|_| ()),
        Fuzz::Status => MaintenanceClient::new(ch)
            .status(pb::StatusRequest {})
            .await
            .map(|_| ()),
        Fuzz::MemberList => pb::cluster_client::ClusterClient::new(ch)
            .member_list(pb::MemberListRequest::default())
            .await
            .map(|_| ()),
        f @ (Fuzz::MemberAdd(_)
        | Fuzz::MemberRemove(_)
        | Fuzz::MemberPromote(_)
        | Fuzz::MemberUpdate(..)) => membership(ch, f).await,
        Fuzz::Propose(command) => {
            let r = raftpb::ProposeRequest {
                cluster_id,
                command,
            };
            ProposalsClient::new(ch).propose(r).await.map(|_| ())
        }
        Fuzz::Raw(m, body) => {
            let (code, message) = answer(wire::raw::unary(ch, UNARY[m], body).await);
            return (code, message, false);
        }
        Fuzz::RawStream(m, messages) => {
            let (code, message) = answer(wire::raw::stream(ch, STREAMS[m], messages).await);
            return (code, message, false);
        }
    };
    let (code, message) = answer(result);
    (code, message, true)
}

fn answer(result: Result<(), tonic::Status>) -> (Code, String) {
    match result {
        Ok(()) => (Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

fn seconds() -> u64 {
    std::env::var("FLOTILLA_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

fn runner() -> TestRunner {
    let seed: u64 = std::env::var("FLOTILLA_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()));
    println!("wire fuzz seed {seed} (FLOTILLA_FUZZ_SEED={seed} replays the requests)");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

/// What one run saw.
#[derive(Default)]
struct Tally {
    /// Answers by code.
    codes: BTreeMap<String, usize>,
    /// Distinct refusals: code and message, by [`shape`].
    refusals: BTreeSet<String>,
    /// Draws the fence turned away.
    turned_away: usize,
}

impl Tally {
    fn count(&mut self, code: Code, message: &str) {
        *self.codes.entry(format!("{code:?}")).or_default() += 1;
        if code != Code::Ok {
            self.refusals
                .insert(format!("{code:?}: {}", shape(message)));
        }
    }
}

/// `message` without what varies between two refusals of one kind: its
/// first ten words, each word with a digit or a quote in it as `_`.
fn shape(message: &str) -> String {
    let words = message.split_whitespace().take(10).map(|w| {
        if w.contains(|c: char| c.is_ascii_digit() || c == '"') {
            "_"
        } else {
            w
        }
    });
    words.collect::<Vec<_>>().join(" ")
}

/// What the fuzzer may not disturb, read off the running cluster, and the
/// members' peer URLs (which a member may not be added at again).
fn fence(rt: &tokio::runtime::Runtime, client: &flotilla_client::Client) -> (Fence, Vec<String>) {
    let list = rt.block_on(client.member_list()).unwrap();
    let status = rt.block_on(client.status_of(0)).unwrap();
    let fence = Fence {
        members: list.members.iter().map(|m| m.id).collect(),
        cluster_id: status.header.unwrap().cluster_id,
    };
    let urls = list
        .members
        .into_iter()
        .flat_map(|m| m.peer_ur_ls)
        .collect();
    (fence, urls)
}

/// Sends generated requests until the time or the count runs out.
fn run(rt: &tokio::runtime::Runtime, cluster: &Cluster, client: &flotilla_client::Client) -> Tally {
    let (fence, urls) = fence(rt, client);
    let mut runner = runner();
    let strategy = wire::fuzz(urls);
    let end = Instant::now() + Duration::from_secs(seconds());
    let mut tally = Tally::default();
    for n in 0..seconds() * REQUESTS_PER_SEC {
        if Instant::now() >= end {
            break;
        }
        let mut f = strategy.new_tree(&mut runner).unwrap().current();
        if !fence.admit(&mut f) {
            tally.turned_away += 1;
            continue;
        }
        let shown = format!("{f:?}");
        let changes_members = matches!(
            f,
            Fuzz::MemberAdd(_)
                | Fuzz::MemberRemove(_)
                | Fuzz::MemberPromote(_)
                | Fuzz::MemberUpdate(..)
        );
        let ch = client
            .channel(n as usize % cluster.endpoints.len())
            .unwrap();
        let sent = send(ch, f, fence.cluster_id);
        let answer = rt.block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, sent).await });
        let (code, message, well_formed) = answer
            .unwrap_or_else(|_| panic!("no answer within {REQUEST_TIMEOUT:?} to {shown:.300}"));
        check_code(code, &message, well_formed, &shown);
        assert!(
            !(changes_members && code == Code::Ok),
            "an invalid membership change was accepted: {shown:.300}"
        );
        tally.count(code, &message);
    }
    tally
}

/// An answer is a status the server chose: never `UNKNOWN`, never
/// `UNAVAILABLE` (a reset connection or a member gone: nothing fails
/// during the run), and `INTERNAL` only for a body that is no protobuf
/// (tonic's decode error, as grpc-go's).
fn check_code(code: Code, message: &str, well_formed: bool, shown: &str) {
    let undecodable = !well_formed && message.starts_with("failed to decode Protobuf message");
    let server_bug = match code {
        Code::Unknown | Code::Unavailable => true,
        Code::Internal => !undecodable,
        _ => false,
    };
    assert!(!server_bug, "{code:?} ({message}) for {shown:.300}");
}

/// The workload's phases, one after another until `stop`.
async fn workload(w: Arc<Workload>, stop: Arc<AtomicBool>) -> (u64, u64) {
    let (mut phases, mut acks) = (0, 0);
    while !stop.load(Ordering::Relaxed) && phases < MAX_PHASES {
        acks += w.phase().await;
        phases += 1;
    }
    (phases, acks)
}

#[test]
fn generated_and_random_requests_hurt_no_member() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start("wire-fuzz", 3);
    cluster.wait_leader(&rt);
    let (client, w) = {
        let _g = rt.enter();
        let w = Workload::new(cluster.clients(3, REQUEST_TIMEOUT));
        (cluster.client(), Arc::new(w))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let beside = rt.spawn(workload(Arc::clone(&w), Arc::clone(&stop)));
    let started = Instant::now();
    let tally = run(&rt, &cluster, &client);
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (phases, acks) = rt.block_on(beside).unwrap();
    let sent: usize = tally.codes.values().sum();
    println!(
        "{sent} requests in {secs:.1} s ({:.0}/s), {} draws turned away by the fence; answers by code: {:?}",
        sent as f64 / secs,
        tally.turned_away,
        tally.codes
    );
    let decoding = tally
        .refusals
        .iter()
        .filter(|r| r.contains("decode Protobuf"))
        .count();
    println!(
        "{} distinct refusals ({decoding} of them protobuf decode errors):",
        tally.refusals.len()
    );
    for r in &tally.refusals {
        println!("  {r}");
    }
    println!("workload beside it: {phases} phases, {acks} operations acknowledged");
    assert!(sent > 0 && acks > 0, "nothing was sent");
    assert!(tally.codes.contains_key("Ok") && tally.codes.contains_key("InvalidArgument"));
    for i in 0..3 {
        rt.block_on(client.status_of(i))
            .unwrap_or_else(|e| panic!("member {} stopped under the fuzzer: {e}", i + 1));
    }
    let members = rt.block_on(client.member_list()).unwrap().members;
    assert_eq!(
        members.len(),
        3,
        "the fuzzer changed the membership: {members:?}"
    );

    // The cluster restarts on what the fuzzer left in its logs, with every
    // acknowledged write of the workload, in a linearizable history.
    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.wait_leader(&rt);
    rt.block_on(w.check(&client));
    for i in 0..3 {
        rt.block_on(client.status_of(i))
            .unwrap_or_else(|e| panic!("member {} did not restart: {e}", i + 1));
    }
}

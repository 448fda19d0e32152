//! The wire fuzzer's generated client requests (`wire`), sent with auth on
//! as a user that holds no role, to a 3-member cluster whose root wrote
//! the keys the generator aims at. For `FLOTILLA_FUZZ_SECS` seconds (8 by
//! default, at most [`MAX_REQUESTS`] requests):
//!
//! - nothing leaks: a Range answered OK read nothing, a Watch answered
//!   created and not canceled watches an empty range, and the keys are as
//!   root wrote them afterwards (every write was refused);
//! - no membership change goes through, and nothing crashes: every answer
//!   is OK or a status the server chose (never `UNKNOWN`, `UNAVAILABLE`
//!   or `INTERNAL`), and every member answers at the end.
//!
//! The seed is `FLOTILLA_FUZZ_SEED` (printed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;
// Only the generator: the raw-bytes senders are the plain fuzzer's.
#[allow(dead_code)]
mod wire;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_common::{Cluster, channel};
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::kv::v1::kv_client::KvClient as SessionClient;
use pb::auth_client::AuthClient;
use pb::cluster_client::ClusterClient;
use pb::kv_client::KvClient;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use wire::Fuzz;

/// The most requests one run sends.
const MAX_REQUESTS: usize = 4_000;
/// The keys root writes: those the generator draws most.
const SEEDED: [&str; 6] = ["a", "b", "ab", "\0", "\u{ff}", "z"];

fn with<T>(message: T, token: &str) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert("token", token.parse().unwrap());
    r
}

/// Whether `[key, end)` holds no key (etcd's forms: an empty end is one
/// key, `"\0"` every key from `key` on).
fn empty_range(key: &[u8], end: &[u8]) -> bool {
    !end.is_empty() && end != [0] && end <= key
}

/// What a request answered: OK and what it showed, or a refusal.
enum Seen {
    /// OK, and whether it showed data (a leak, from a user with no role).
    Ok {
        leaked: bool,
    },
    Refused(Status),
}

fn seen<T>(r: Result<T, Status>, leaked: impl FnOnce(&T) -> bool) -> Seen {
    match r {
        Ok(v) => Seen::Ok { leaked: leaked(&v) },
        Err(s) => Seen::Refused(s),
    }
}

async fn watch(ch: Channel, r: pb::WatchRequest, token: &str) -> Seen {
    use pb::watch_request::RequestUnion;
    let empty = match &r.request_union {
        Some(RequestUnion::CreateRequest(c)) => empty_range(&c.key, &c.range_end),
        _ => true,
    };
    let mut client = pb::watch_client::WatchClient::new(ch);
    let stream = tonic::codegen::tokio_stream::iter(vec![r]);
    let mut answers = match client.watch(with(stream, token)).await {
        Ok(a) => a.into_inner(),
        Err(s) => return Seen::Refused(s),
    };
    let first = tokio::time::timeout(Duration::from_secs(2), answers.message()).await;
    match first {
        // Nothing to answer (a cancel of nothing, a progress request).
        Err(_) | Ok(Ok(None)) => Seen::Ok { leaked: false },
        Ok(Ok(Some(a))) => Seen::Ok {
            leaked: !a.events.is_empty() || (a.created && !a.canceled && !empty),
        },
        Ok(Err(s)) => Seen::Refused(s),
    }
}

/// Whether a transaction's answer shows data or a write: a range that
/// read something, a put, a delete that removed something, at any depth.
fn txn_leaked(t: &pb::TxnResponse) -> bool {
    use pb::response_op::Response as R;
    t.responses.iter().any(|r| match &r.response {
        Some(R::ResponseRange(g)) => g.count > 0 || !g.kvs.is_empty(),
        Some(R::ResponsePut(_)) => true,
        Some(R::ResponseDeleteRange(d)) => d.deleted > 0 || !d.prev_kvs.is_empty(),
        Some(R::ResponseTxn(inner)) => txn_leaked(inner),
        None => false,
    })
}

async fn send(ch: Channel, f: Fuzz, token: &str) -> Option<Seen> {
    let mut kv = KvClient::new(ch.clone());
    Some(match f {
        Fuzz::Range(r) => seen(kv.range(with(r, token)).await, |a| {
            a.get_ref().count > 0 || !a.get_ref().kvs.is_empty()
        }),
        Fuzz::Put(r) => seen(kv.put(with(r, token)).await, |_| true),
        Fuzz::Delete(r) => seen(kv.delete_range(with(r, token)).await, |a| {
            a.get_ref().deleted > 0 || !a.get_ref().prev_kvs.is_empty()
        }),
        Fuzz::Txn(r) => seen(kv.txn(with(r, token)).await, |a| txn_leaked(a.get_ref())),
        Fuzz::Watch(r) => watch(ch, r, token).await,
        Fuzz::Session(w) => {
            use flotilla_proto::kv::v1::session_write_response::Response as W;
            let r = SessionClient::new(ch).write(with(w, token)).await;
            seen(r, |a| match &a.get_ref().response {
                Some(W::DeleteRange(d)) => d.deleted > 0 || !d.prev_kvs.is_empty(),
                Some(W::Txn(t)) => txn_leaked(t),
                // A put or append answered OK may be the answer recorded
                // for an earlier write under the same session and seq
                // (exactly-once): the keys, checked at the end, tell.
                Some(W::Put(_) | W::Append(_)) => false,
                None => false,
            })
        }
        Fuzz::MemberAdd(r) => seen(
            ClusterClient::new(ch).member_add(with(r, token)).await,
            |_| true,
        ),
        // Any user may compact, as in etcd: it shows no data.
        Fuzz::Compact(revision) => {
            let r = pb::CompactionRequest {
                revision,
                physical: false,
            };
            seen(kv.compact(with(r, token)).await, |_| false)
        }
        Fuzz::MemberUpdate(id, peer_ur_ls) => {
            let r = pb::MemberUpdateRequest { id, peer_ur_ls };
            seen(
                ClusterClient::new(ch).member_update(with(r, token)).await,
                |_| true,
            )
        }
        Fuzz::MemberRemove(id) => {
            let r = pb::MemberRemoveRequest { id };
            seen(
                ClusterClient::new(ch).member_remove(with(r, token)).await,
                |_| true,
            )
        }
        // The rest is the plain wire fuzzer's (crates/cli/tests/wire_fuzz.rs):
        // requests anyone may make, the peer service, raw bytes.
        _ => return None,
    })
}

fn runner() -> TestRunner {
    let seed: u64 = std::env::var("FLOTILLA_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()));
    println!("auth fuzz seed {seed} (FLOTILLA_FUZZ_SEED={seed} replays the requests)");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

/// root, and `nobody` (no role); auth on; root's keys written. The
/// tokens of root and nobody.
async fn set_up(ch: &Channel) -> (String, String) {
    let mut auth = AuthClient::new(ch.clone());
    for name in ["root", "nobody"] {
        let add = pb::AuthUserAddRequest {
            name: name.into(),
            password: format!("{name}pw"),
            ..Default::default()
        };
        auth.user_add(add).await.unwrap();
    }
    let grant = pb::AuthUserGrantRoleRequest {
        user: "root".into(),
        role: "root".into(),
    };
    auth.user_grant_role(grant).await.unwrap();
    auth.auth_enable(pb::AuthEnableRequest {}).await.unwrap();
    let mut tokens = Vec::new();
    for name in ["root", "nobody"] {
        let r = pb::AuthenticateRequest {
            name: name.into(),
            password: format!("{name}pw"),
        };
        tokens.push(auth.authenticate(r).await.unwrap().into_inner().token);
    }
    let root = tokens[0].clone();
    let mut kv = KvClient::new(ch.clone());
    for k in SEEDED {
        let put = pb::PutRequest {
            key: Bytes::from(k),
            value: Bytes::from(format!("root's {k}")),
            ..Default::default()
        };
        kv.put(with(put, &root)).await.unwrap();
    }
    (root, tokens[1].clone())
}

/// Every key, as root reads it.
async fn all_keys(ch: &Channel, root: &str) -> Vec<(Bytes, Bytes)> {
    let every = pb::RangeRequest {
        key: Bytes::from_static(b"\0"),
        range_end: Bytes::from_static(b"\0"),
        ..Default::default()
    };
    let r = KvClient::new(ch.clone())
        .range(with(every, root))
        .await
        .unwrap();
    r.into_inner()
        .kvs
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect()
}

#[test]
fn a_user_without_a_role_reads_and_writes_nothing_whatever_it_sends() {
    let secs: u64 = std::env::var("FLOTILLA_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start_with("auth-fuzz", 3, &["--bcrypt-cost", "4"]);
    cluster.wait_leader(&rt);
    rt.block_on(async {
        let mut chans = Vec::new();
        for e in &cluster.endpoints {
            chans.push(channel(e).await);
        }
        let (root, nobody) = set_up(&chans[0]).await;
        let before = all_keys(&chans[0], &root).await;
        let taken = cluster
            .endpoints
            .iter()
            .map(|e| format!("http://{e}"))
            .collect();
        let strategy = wire::fuzz(taken);
        let mut runner = runner();
        let started = Instant::now();
        let mut codes: BTreeMap<String, usize> = BTreeMap::new();
        let mut sent = 0;
        while sent < MAX_REQUESTS && started.elapsed() < Duration::from_secs(secs) {
            let f = strategy.new_tree(&mut runner).unwrap().current();
            let shown = format!("{f:?}");
            let ch = chans[sent % chans.len()].clone();
            let Some(answer) = send(ch, f, &nobody).await else {
                continue;
            };
            sent += 1;
            let code = match answer {
                Seen::Ok { leaked } => {
                    assert!(
                        !leaked,
                        "a user without a role got data or wrote: {shown:.300}"
                    );
                    Code::Ok
                }
                Seen::Refused(s) => s.code(),
            };
            let bug = matches!(code, Code::Unknown | Code::Unavailable | Code::Internal);
            assert!(!bug, "{code:?} for {shown:.300}");
            *codes.entry(format!("{code:?}")).or_default() += 1;
        }
        println!(
            "{sent} requests in {:.1} s as a user with no role; answers by code: {codes:?}",
            started.elapsed().as_secs_f64()
        );
        assert!(sent > 100, "only {sent} requests were sent");
        for ch in &chans {
            assert_eq!(all_keys(ch, &root).await, before, "the keys changed");
        }
    });
}

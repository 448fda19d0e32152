//! The sharded store as real processes: three `flotilla shard server`s,
//! each hosting the controller and data groups 1-3, while clients append
//! to keys spread over every shard, the controller joins, moves and
//! takes away groups, and servers are killed with SIGKILL and restarted
//! (one test), or cut off from the others by the fault proxies every
//! server reaches the others through, one server or a minority at a
//! time, with the links stalled or cut (the other).
//!
//! Checked afterwards, on linearizable reads: every acknowledged append
//! is in its key's value exactly once, no append (acknowledged or not)
//! is there twice, and each client's appends to a key are in the order
//! it made them (the course's checkAppends); and the whole history (the
//! appends, a get every fourth request, the final reads) is checked for
//! linearizability, a checker that gives up failing the test. Then every
//! server's replica of every group reaches the latest configuration with
//! every shard
//! settled: nothing left pulling, and no data kept for shards a group
//! gave away (challenge 1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flotilla_linearize::{Kv, KvInput, KvOutput, Limits, Recorder, check};
use flotilla_proto::shard::v1 as pb;
use flotilla_proto::shard::v1::shard_client::ShardClient;
use flotilla_testkit::proxy::{Mode, Net};
use flotilla_testkit::{Proc, Scratch, free_ports, wait_for};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

const GROUPS: &str = "1,2,3";
const CLIENTS: u64 = 3;
/// Keys whose first bytes cover every one of the 10 shards twice.
const KEYS: usize = 20;
/// Most appends per client (the run also ends on time).
const APPENDS_MAX: u64 = 20_000;

struct Servers {
    scratch: Scratch,
    endpoints: Vec<String>,
    procs: Vec<Option<Proc>>,
    /// With proxies: server i reaches server j only through proxy i→j.
    net: Option<Net>,
}

impl Servers {
    fn start(name: &str, proxied: bool) -> Servers {
        let endpoints: Vec<String> = (free_ports(3).into_iter())
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let net = proxied.then(|| Net::start(&endpoints));
        let mut s = Servers {
            scratch: Scratch::new(name),
            endpoints,
            procs: vec![None, None, None],
            net,
        };
        for i in 0..3 {
            s.restart(i);
        }
        s
    }

    fn restart(&mut self, i: usize) {
        let peers: Vec<String> = (self.endpoints.iter().enumerate())
            .map(|(j, e)| match &self.net {
                Some(net) if i != j => format!("{}={}", j + 1, net.addr(i, j)),
                _ => format!("{}={e}", j + 1),
            })
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.scratch.path.join(format!("node{}.log", i + 1)))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
        cmd.args(["shard", "server", "--id", &(i + 1).to_string()])
            .args(["--peers", &peers.join(","), "--groups", GROUPS])
            // Small, so that snapshots and log compaction happen too.
            .args(["--snapshot-entries", "300"])
            // Servers list one another at different (proxy) addresses.
            .args(
                self.net
                    .iter()
                    .flat_map(|_| ["--cluster-token", "flotilla-test"]),
            )
            .arg("--data-dir")
            .arg(self.scratch.path.join(format!("node{}", i + 1)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.procs[i] = Some(Proc::spawn(&format!("shard server {}", i + 1), &mut cmd));
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            p.kill();
        }
    }

    fn net(&self) -> &Net {
        self.net.as_ref().expect("started with proxies")
    }
}

/// What befalls the servers while the controller makes a change.
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// SIGKILL, and a restart afterwards.
    Kill(usize),
    /// The server's links to and from the others in `Mode`, healed
    /// afterwards.
    Isolate(usize, Mode),
}

impl Fault {
    fn begin(self, s: &mut Servers) {
        match self {
            Fault::None => {}
            Fault::Kill(i) => s.kill(i),
            Fault::Isolate(i, mode) => {
                let others: Vec<usize> = (0..3).filter(|&j| j != i).collect();
                s.net().partition(&[vec![i], others], mode);
            }
        }
    }

    fn end(self, s: &mut Servers) {
        match self {
            Fault::None => {}
            Fault::Kill(i) => s.restart(i),
            Fault::Isolate(..) => s.net().heal(),
        }
    }
}

fn client(endpoint: &str) -> ShardClient<Channel> {
    let e = Endpoint::from_shared(format!("http://{endpoint}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(6));
    ShardClient::new(e.connect_lazy())
}

fn key(i: usize) -> String {
    format!("{}-key{i}", (b'a' + i as u8) as char)
}

/// One append, retried with the same session on every server in turn
/// until acknowledged or `until`; true if acknowledged.
async fn append(
    endpoints: &[String],
    session: pb::Session,
    key: &str,
    token: &str,
    until: Instant,
) -> bool {
    let r = pb::PutRequest {
        session: Some(session),
        key: key.to_string().into(),
        value: token.to_string().into(),
        append: true,
    };
    for turn in 0.. {
        if Instant::now() >= until {
            return false;
        }
        let mut c = client(&endpoints[turn % endpoints.len()]);
        match c.put(r.clone()).await {
            Ok(_) => return true,
            Err(s) if matches!(s.code(), tonic::Code::InvalidArgument) => panic!("refused: {s}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    false
}

/// The history every client records.
type History = Arc<Recorder<KvInput, KvOutput>>;

/// A client's appends (and, every fourth request, a get) until `stop`:
/// the tokens acknowledged, by key; each request in `history`.
async fn appender(
    endpoints: Vec<String>,
    id: u64,
    stop: Arc<AtomicBool>,
    history: History,
) -> BTreeMap<String, Vec<String>> {
    let mut acked: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for seq in 1..=APPENDS_MAX {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let k = key(((seq * 7 + id * 3) as usize) % KEYS);
        if seq % 4 == 0 {
            let call = history.invoke(id, KvInput::get(k.as_str()));
            if let Some(value) = try_get(&endpoints, &k).await {
                history.ok(call, KvOutput::Value(value));
            }
            continue;
        }
        let token = format!("c{id}.{seq};");
        let session = pb::Session { client_id: id, seq };
        let call = history.invoke(id, KvInput::append(k.as_str(), token.as_str()));
        // A write whose outcome is unknown when the run ends is left
        // unacknowledged: it may or may not be there, but at most once.
        let until = Instant::now() + Duration::from_secs(30);
        if append(&endpoints, session, &k, &token, until).await {
            history.ok(call, KvOutput::Ok);
            acked.entry(k).or_default().push(token);
        } else {
            break;
        }
    }
    acked
}

/// A change of the controller's.
#[derive(Clone, Copy, Debug)]
enum Change {
    Join(&'static [u64]),
    Leave(u64),
    Move { shard: u64, gid: u64 },
}

/// Makes `change` with session seq `seq`, retried until applied.
async fn reconfigure(endpoints: &[String], seq: u64, change: Change) {
    let session = Some(pb::Session {
        client_id: 1 << 40,
        seq,
    });
    for turn in 0..200 {
        let mut c = client(&endpoints[turn % endpoints.len()]);
        let done = match change {
            Change::Join(gids) => {
                let groups = gids.iter().map(|&g| (g, pb::Servers::default())).collect();
                c.join(pb::JoinRequest { session, groups }).await
            }
            Change::Leave(gid) => {
                c.leave(pb::LeaveRequest {
                    session,
                    gids: vec![gid],
                })
                .await
            }
            Change::Move { shard, gid } => {
                c.r#move(pb::MoveRequest {
                    session,
                    shard,
                    gid,
                })
                .await
            }
        };
        match done {
            Ok(_) => return,
            Err(s) if s.code() == tonic::Code::InvalidArgument => panic!("{change:?}: {s}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("{change:?} was never applied");
}

/// A key's value, linearizable, asked of every server in turn; none if
/// no server answered within 30 s.
async fn try_get(endpoints: &[String], key: &str) -> Option<String> {
    for turn in 0..300 {
        let mut c = client(&endpoints[turn % endpoints.len()]);
        let r = pb::GetRequest {
            key: key.to_string().into(),
        };
        match c.get(r).await {
            Ok(got) => return Some(String::from_utf8(got.into_inner().value.to_vec()).unwrap()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    None
}

/// The course's checkAppends on one key's final value.
fn check_appends(key: &str, value: &str, acked: &[BTreeMap<String, Vec<String>>]) {
    let tokens: Vec<&str> = value.split_inclusive(';').collect();
    let mut seen = std::collections::BTreeSet::new();
    for t in &tokens {
        assert!(seen.insert(*t), "{key}: {t} was applied twice: {value}");
    }
    for (c, by_key) in acked.iter().enumerate() {
        let mut last = None;
        for t in by_key.get(key).into_iter().flatten() {
            let at = tokens.iter().position(|x| x == t);
            let at = at.unwrap_or_else(|| {
                panic!(
                    "{key}: client {}'s acknowledged {t} is lost: {value}",
                    c + 1
                )
            });
            assert!(
                last < Some(at),
                "{key}: client {}'s {t} is out of order: {value}",
                c + 1
            );
            last = Some(at);
        }
    }
}

/// Whether every server's replica of every group has reached the latest
/// configuration with exactly its shards, all serving, and groups
/// without shards hold no data.
async fn settled(endpoints: &[String]) -> Option<()> {
    for e in endpoints {
        let s = client(e)
            .status(pb::StatusRequest {})
            .await
            .ok()?
            .into_inner();
        let latest = s.latest?;
        for g in s.groups.iter().filter(|g| g.gid != 0) {
            let owned: Vec<u64> = (0..latest.shards.len() as u64)
                .filter(|&i| latest.shards[i as usize] == g.gid)
                .collect();
            let mut held: Vec<u64> = g.shards.keys().copied().collect();
            held.sort_unstable();
            let serving = g.shards.values().all(|st| st == "serving");
            let empty = !owned.is_empty() || g.data_bytes == 0;
            if g.config_num != latest.num || held != owned || !serving || !empty {
                return None;
            }
        }
    }
    Some(())
}

/// Runs the clients while the controller makes `plan`'s changes, each
/// under its fault; then checks what the module docs say.
fn run(s: &mut Servers, plan: &[(Change, Fault)]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let endpoints = s.endpoints.clone();
    rt.block_on(reconfigure(&endpoints, 1, Change::Join(&[1])));
    let stop = Arc::new(AtomicBool::new(false));
    let history: History = Arc::new(Recorder::new());
    let clients: Vec<_> = (1..=CLIENTS)
        .map(|id| {
            let (stop, history) = (Arc::clone(&stop), Arc::clone(&history));
            rt.spawn(appender(endpoints.clone(), id, stop, history))
        })
        .collect();
    for (i, &(change, fault)) in plan.iter().enumerate() {
        fault.begin(s);
        rt.block_on(reconfigure(&endpoints, i as u64 + 2, change));
        // Pacing, not timing: the clients run a while in each state.
        std::thread::sleep(Duration::from_millis(700));
        fault.end(s);
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<_> = (clients.into_iter())
        .map(|c| rt.block_on(c).unwrap())
        .collect();
    let total: usize = acked.iter().flat_map(|a| a.values()).map(Vec::len).sum();
    assert!(total >= 30, "the clients made progress: {total} appends");
    for k in 0..KEYS {
        let call = history.invoke(0, KvInput::get(key(k).as_str()));
        let value = rt
            .block_on(try_get(&endpoints, &key(k)))
            .expect("a final read");
        history.ok(call, KvOutput::Value(value.clone()));
        check_appends(&key(k), &value, &acked);
    }
    check_history(&history);
    wait_for(
        "every group at the latest configuration, settled",
        Duration::from_secs(30),
        || rt.block_on(settled(&endpoints)),
    );
    eprintln!("{total} appends acknowledged, every one found once and in order");
}

/// The history is linearizable; a checker that gives up fails too.
fn check_history(history: &History) {
    let limits = Limits {
        timeout: Some(Duration::from_secs(120)),
        ..Limits::default()
    };
    let verdict = check(&Kv, &history.history(), &limits);
    if let Some(why) = verdict.counterexample() {
        panic!("the history is not linearizable: {why}");
    }
    assert!(
        verdict.is_linearizable(),
        "the checker gave up: {verdict:?}"
    );
}

#[test]
fn shards_move_while_servers_die_and_no_acknowledged_write_is_lost() {
    let mut s = Servers::start("shard-cluster", false);
    // One server down at a time, while the controller changes.
    let plan = [
        (Change::Join(&[2, 3]), Fault::Kill(0)),
        (Change::Move { shard: 3, gid: 2 }, Fault::None),
        (Change::Leave(1), Fault::Kill(1)),
        (Change::Join(&[1]), Fault::None),
        (Change::Move { shard: 0, gid: 3 }, Fault::Kill(2)),
        (Change::Leave(2), Fault::None),
    ];
    run(&mut s, &plan);
}

#[test]
fn shards_move_across_partitions_and_no_acknowledged_write_is_lost() {
    let mut s = Servers::start("shard-partitions", true);
    // One server cut off at a time (its groups' leaders among them, at
    // times), its links stalled (a network that drops packets) or cut.
    let plan = [
        (Change::Join(&[2, 3]), Fault::Isolate(0, Mode::Stall)),
        (
            Change::Move { shard: 3, gid: 2 },
            Fault::Isolate(1, Mode::Cut),
        ),
        (Change::Leave(1), Fault::Isolate(2, Mode::Stall)),
        (Change::Join(&[1]), Fault::None),
        (
            Change::Move { shard: 0, gid: 3 },
            Fault::Isolate(0, Mode::Cut),
        ),
        (Change::Leave(2), Fault::Isolate(1, Mode::Stall)),
    ];
    run(&mut s, &plan);
}

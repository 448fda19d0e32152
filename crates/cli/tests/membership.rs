//! Membership changes of a running cluster of real `flotilla server`
//! processes, through `flotilla member`, while clients keep writing: a
//! fourth member is added as a learner and started with `--join`, catches
//! up (from a snapshot: members snapshot every 20 entries), is promoted,
//! then the leader is removed (it must stop by itself, also when
//! restarted, and the others elect a new leader), and the joined member
//! is moved to a new address (`member update`), killed and restarted
//! there from its own data. Afterwards no acknowledged write may be missing and
//! the recorded history must be linearizable. Refusals (unknown member,
//! promoting a voter, a peer URL in use, re-adding a removed id) are
//! checked with their messages. Waits poll with deadlines; only processes
//! this test started are killed, by PID.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;
mod common;

use std::fs::OpenOptions;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cluster_common::Cluster;
use common::{etcdctl, etcdctl_missing, etcdctl_ok, run};
use flotilla_client::Client;
use flotilla_linearize::{KvInput, KvOutput, Recorder};
use flotilla_proto::etcdserverpb as pb;
use flotilla_testkit::{Proc, free_port, wait_for};

type Rec = Recorder<KvInput, KvOutput>;

const CLIENTS: u64 = 3;
const OPS_PER_PHASE: u64 = 20;
const KEYS: u64 = 3;
/// Frequent snapshots, so a new member is sent one.
const SNAPSHOTS: &[&str] = &["--snapshot-entries", "20"];

fn get(key: &str) -> pb::RangeRequest {
    pb::RangeRequest {
        key: Bytes::from(key.to_string()),
        ..Default::default()
    }
}

fn put(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: Bytes::from(key.to_string()),
        value: Bytes::from(value.to_string()),
        ..Default::default()
    }
}

/// One client's share of a phase: gets and puts of shared keys (checked
/// for linearizability) and puts of unique keys (checked for loss).
async fn client_phase(c: Arc<Client>, rec: Arc<Rec>, id: u64, phase: u64, acked: Acked) {
    let mut x = id * 7919 + phase * 104_729 + 1;
    for n in 0..OPS_PER_PHASE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = format!("k{}", x % KEYS);
        // A client whose request had an unknown outcome continues as a
        // new client, so its operations never overlap in the history.
        let who = id * 1000 + phase * 100 + n;
        match x % 3 {
            0 => {
                let op = rec.invoke(who, KvInput::get(&key));
                if let Ok(r) = c.range(get(&key)).await {
                    let v = r.kvs.first().map(|kv| kv.value.clone()).unwrap_or_default();
                    rec.ok(op, KvOutput::Value(String::from_utf8(v.to_vec()).unwrap()));
                }
            }
            1 => {
                let value = format!("c{id}p{phase}n{n}");
                let op = rec.invoke(who, KvInput::put(&key, &value));
                if c.put(put(&key, &value)).await.is_ok() {
                    rec.ok(op, KvOutput::Ok);
                }
            }
            _ => {
                let key = format!("u-{id}-{phase}-{n}");
                if c.put(put(&key, "1")).await.is_ok() {
                    acked.lock().unwrap().push(key);
                }
            }
        }
    }
}

type Acked = Arc<Mutex<Vec<String>>>;

/// Writers for one phase, running while the caller changes membership.
fn start_phase(
    rt: &tokio::runtime::Runtime,
    c: &Arc<Client>,
    rec: &Arc<Rec>,
    phase: u64,
    acked: &Acked,
) -> Vec<tokio::task::JoinHandle<()>> {
    (1..=CLIENTS)
        .map(|id| {
            rt.spawn(client_phase(
                Arc::clone(c),
                Arc::clone(rec),
                id,
                phase,
                Arc::clone(acked),
            ))
        })
        .collect()
}

fn finish(rt: &tokio::runtime::Runtime, tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        rt.block_on(t).unwrap();
    }
}

/// `flotilla member ARGS` against `endpoints`: (success, stdout, stderr).
fn member(cluster: &Cluster, endpoints: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = common::flotilla(&cluster.scratch.path);
    cmd.args(["member", "--endpoints", endpoints, "--timeout-secs", "10"])
        .args(args);
    let (status, out, err) = run(&mut cmd);
    (status.success(), out, err)
}

fn member_ok(cluster: &Cluster, endpoints: &str, args: &[&str]) -> String {
    let (ok, out, err) = member(cluster, endpoints, args);
    assert!(ok, "flotilla member {args:?} failed: {out}{err}");
    out
}

fn member_refused(cluster: &Cluster, endpoints: &str, args: &[&str], reason: &str) {
    let (ok, out, err) = member(cluster, endpoints, args);
    assert!(!ok, "flotilla member {args:?} should fail: {out}");
    assert!(err.contains(reason), "{args:?}: wanted {reason:?} in {err}");
}

/// Starts member `id` as process `i` (at `cluster.endpoints[i]`) with
/// `--join`, asking `ask`, plus `extra` flags.
fn start_joiner(cluster: &mut Cluster, i: usize, id: u64, ask: &str, extra: &[&str]) {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(cluster.log(i))
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.arg("server")
        .args(["--id", &id.to_string(), "--listen", &cluster.endpoints[i]])
        .args(["--join", "--peers", ask])
        .args(extra)
        .arg("--data-dir")
        .arg(cluster.scratch.path.join(format!("node{id}")))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    cluster.procs[i] = Some(Proc::spawn(&format!("member {id}"), &mut cmd));
}

/// Waits until member `i` has applied at least what `leader` had
/// committed when asked, and returns its status.
fn caught_up(rt: &tokio::runtime::Runtime, c: &Client, leader: usize, i: usize) {
    let target = rt.block_on(c.status_of(leader)).unwrap().raft_index;
    wait_for(
        "the new member to catch up",
        Duration::from_secs(60),
        || {
            let s = rt.block_on(c.status_of(i)).ok()?;
            (s.raft_applied_index >= target).then_some(())
        },
    );
}

#[test]
fn members_join_are_promoted_and_removed_under_load() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start_with("membership", 3, SNAPSHOTS);
    let founders = cluster.endpoints.join(",");
    let leader = cluster.wait_leader(&rt);
    let client = {
        let _g = rt.enter();
        Arc::new(cluster.client())
    };
    let rec = Arc::new(Rec::new());
    let acked: Acked = Arc::new(Mutex::new(Vec::new()));
    finish(&rt, start_phase(&rt, &client, &rec, 1, &acked));

    // Add member 4 as a learner while clients write, and start it; not
    // before it is added.
    let addr4 = format!("127.0.0.1:{}", free_port());
    let (status, _, err) = run(common::flotilla(&cluster.scratch.path)
        .args(["server", "--id", "4", "--listen", &addr4, "--join"])
        .args(["--peers", &founders, "--data-dir", "early"]));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("has not been added"), "{err}");
    cluster.endpoints.push(addr4.clone());
    cluster.procs.push(None);
    let phase = start_phase(&rt, &client, &rec, 2, &acked);
    let follower = &cluster.endpoints[(leader + 1) % 3].clone();
    let list = member_ok(
        &cluster,
        follower,
        &[
            "add",
            "--id",
            "4",
            "--peer-url",
            &format!("http://{addr4}"),
            "--learner",
        ],
    );
    let learner4 = |l: &str| l.starts_with("4, ") && l.contains(&addr4) && l.ends_with(", true");
    assert!(list.lines().any(learner4), "{list}");
    start_joiner(&mut cluster, 3, 4, &founders, SNAPSHOTS);
    finish(&rt, phase);
    let all = {
        let _g = rt.enter();
        Client::new(&cluster.endpoints, Duration::from_secs(3)).unwrap()
    };
    caught_up(&rt, &all, leader, 3);
    let s4 = rt.block_on(all.status_of(3)).unwrap();
    assert!(s4.is_learner, "member 4 should report itself a learner");
    refusals(&cluster, &founders, &addr4);

    promote_and_remove_the_leader(&mut cluster, &client, &rec, &acked, &founders, &rt);

    // The joined member moves (its new address goes through the log), is
    // killed with -9 and restarts at the new address from its own data
    // (its --peers is not even reachable: the data directory has all).
    cluster.wait_leader(&rt);
    let moved = format!("127.0.0.1:{}", free_port());
    member_ok(&cluster, &founders, &["update", "4", "--peer-url", &moved]);
    cluster.kill(3);
    cluster.endpoints[3] = moved.clone();
    let phase = start_phase(&rt, &client, &rec, 5, &acked);
    start_joiner(&mut cluster, 3, 4, "127.0.0.1:1", SNAPSHOTS);
    finish(&rt, phase);
    let all = moved_member_caught_up(&cluster, &rt, &moved);
    let acked = acked.lock().unwrap().clone();
    rt.block_on(check_history(&all, &rec, &acked));
}

/// Member 4, restarted at `moved`, catches up and is listed there; a
/// client over the members' current addresses.
fn moved_member_caught_up(cluster: &Cluster, rt: &tokio::runtime::Runtime, moved: &str) -> Client {
    let leader = cluster.wait_leader(rt);
    let all = {
        let _g = rt.enter();
        Client::new(&cluster.endpoints, Duration::from_secs(3)).unwrap()
    };
    caught_up(rt, &all, leader, 3);
    let list = member_ok(cluster, moved, &["list", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v["members"].as_array().map(Vec::len), Some(3), "{list}");
    assert!(list.contains(&format!("http://{moved}")), "{list}");
    all
}

/// Promotes member 4, then removes the leader, writing throughout; the
/// removed member must stop by itself, and its id cannot come back.
fn promote_and_remove_the_leader(
    cluster: &mut Cluster,
    client: &Arc<Client>,
    rec: &Arc<Rec>,
    acked: &Acked,
    founders: &str,
    rt: &tokio::runtime::Runtime,
) {
    let phase = start_phase(rt, client, rec, 3, acked);
    // Under load the learner may fall behind again for a moment; etcd
    // refuses the promotion then, and so do we: the operator retries.
    let list = wait_for("the promotion", Duration::from_secs(30), || {
        let (ok, out, err) = member(cluster, founders, &["promote", "4"]);
        assert!(ok || err.contains("in sync with leader"), "promote: {err}");
        ok.then_some(out)
    });
    assert!(!list.contains("learner"), "{list}");
    finish(rt, phase);
    let leader = cluster.wait_leader(rt);
    let phase = start_phase(rt, client, rec, 4, acked);
    let gone = (leader + 1).to_string();
    let list = member_ok(cluster, founders, &["remove", &gone]);
    assert!(!list.contains(&cluster.endpoints[leader]), "{list}");
    exits_by_itself(cluster, leader, "a removed member stops cleanly");
    finish(rt, phase);
    // Restarted with its old data, a removed member stops again by itself.
    cluster.restart(leader);
    exits_by_itself(cluster, leader, "a removed member stays out");
    member_refused(cluster, founders, &["remove", &gone], "member not found");
    let url = format!("http://{}", cluster.endpoints[leader]);
    member_refused(
        cluster,
        &cluster.endpoints[3],
        &["add", "--id", &gone, "--peer-url", &url],
        "removed",
    );
}

/// Refusals, with etcd's messages.
fn refusals(cluster: &Cluster, endpoints: &str, addr4: &str) {
    member_refused(cluster, endpoints, &["remove", "99"], "member not found");
    member_refused(
        cluster,
        endpoints,
        &["promote", "2"],
        "can only promote a learner",
    );
    let url = format!("http://{addr4}");
    member_refused(
        cluster,
        endpoints,
        &["add", "--id", "5", "--peer-url", &url],
        "Peer URLs already exists",
    );
    member_refused(cluster, endpoints, &["promote", "0"], "not a member id");
}

/// Every acknowledged write is readable, and the whole history (with a
/// final read of each key) is linearizable.
async fn check_history(client: &Client, rec: &Rec, acked: &[String]) {
    assert!(!acked.is_empty(), "no write was acknowledged");
    for key in acked {
        let r = client.range(get(key)).await.expect("read at the end");
        assert_eq!(r.kvs.len(), 1, "acknowledged write of {key} is lost");
    }
    for k in 0..KEYS {
        let key = format!("k{k}");
        let op = rec.invoke(999_999, KvInput::get(&key));
        let r = client.range(get(&key)).await.expect("final read");
        let v = r.kvs.first().map(|kv| kv.value.clone()).unwrap_or_default();
        rec.ok(op, KvOutput::Value(String::from_utf8(v.to_vec()).unwrap()));
    }
    cluster_common::workload::assert_linearizable(rec);
    eprintln!(
        "checked {} operations and {} acknowledged unique writes",
        rec.len(),
        acked.len()
    );
}

/// Waits (30 s at most) for member `i` to exit by itself with success,
/// as a removed member must; its process is then forgotten.
fn exits_by_itself(cluster: &mut Cluster, i: usize, what: &str) {
    let status = cluster.procs[i]
        .as_mut()
        .unwrap()
        .wait(Duration::from_secs(30));
    assert!(status.success(), "{what}: {status:?}");
    cluster.procs[i] = None;
}

/// The id in etcdctl's "Member ID added to cluster ..." (hex).
fn added_id(added: &str) -> String {
    added
        .strip_prefix("Member ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no member id in {added:?}"))
        .to_string()
}

/// Waits until `etcdctl member list` at `endpoints` has `line`.
fn until_listed(endpoints: &str, what: &str, line: &str) {
    wait_for(what, Duration::from_secs(30), || {
        let list = etcdctl_ok(endpoints, &["member", "list"]);
        list.contains(line).then_some(())
    });
}

/// etcdctl's own `member add --learner`, `member promote`, `member
/// update` and `member remove` (with the ids the server picks, in etcdctl's hex), and its
/// refusals. The new member has no snapshot to start from here: it
/// replays the log from its first entry. Skipped, with a message, where
/// etcdctl is not installed.
#[test]
fn etcdctl_adds_promotes_and_removes_members() {
    if etcdctl_missing() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start("etcdctl-members", 3);
    let leader = cluster.wait_leader(&rt);
    let founders = cluster.endpoints.join(",");
    for k in 0..5 {
        etcdctl_ok(&founders, &["put", &format!("m{k}"), "v"]);
    }
    let addr = format!("127.0.0.1:{}", free_port());
    let url = format!("--peer-urls=http://{addr}");
    let added = etcdctl_ok(&founders, &["member", "add", "newbie", &url, "--learner"]);
    let hex = added_id(&added);
    let id = u64::from_str_radix(&hex, 16).unwrap();
    // etcd's form of a member not started yet: no name, no client URL
    // (on every member once applied: etcdctl's list is not linearizable).
    let unstarted = format!("{hex}, unstarted, , http://{addr}, , true");
    until_listed(&founders, "the added member listed", &unstarted);
    cluster.endpoints.push(addr.clone());
    cluster.procs.push(None);
    start_joiner(&mut cluster, 3, id, &founders, &[]);
    wait_for(
        "the learner to serve the data",
        Duration::from_secs(60),
        || {
            let (ok, out, _) = etcdctl(&addr, &["get", "--consistency=s", "m4"], "");
            (ok && out == "m4\nv\n").then_some(())
        },
    );
    // Once it runs, it records its start through the log.
    let started = format!("{hex}, started, node{id}, http://{addr}, http://{addr}, true");
    until_listed(&founders, "the new member to start", &started);
    let (ok, _, err) = etcdctl(&founders, &["member", "promote", "1"], "");
    assert!(
        !ok && err.contains("can only promote a learner member"),
        "{err}"
    );
    let promoted = etcdctl_ok(&founders, &["member", "promote", &hex]);
    assert!(promoted.contains("promoted"), "{promoted}");
    let updated = etcdctl_ok(&founders, &["member", "update", &hex, &url]);
    assert!(updated.contains("updated"), "{updated}");
    let follower = (leader + 1) % 3;
    let gone = format!("{:x}", follower + 1);
    etcdctl_ok(&founders, &["member", "remove", &gone]);
    exits_by_itself(&mut cluster, follower, "a removed member stops cleanly");
    let (ok, _, err) = etcdctl(&founders, &["member", "remove", &gone], "");
    assert!(!ok && err.contains("member not found"), "{err}");
    // etcdctl's member list is not linearizable: the new member shows
    // the removal once it has applied it.
    let list = wait_for(
        "the removal to reach member 4",
        Duration::from_secs(30),
        || {
            let list = etcdctl_ok(&addr, &["member", "list"]);
            (list.lines().count() == 3).then_some(list)
        },
    );
    assert!(
        list.contains(&hex) && !list.contains("true"),
        "no learner: {list}"
    );
    etcdctl_ok(&addr, &["put", "after", "x"]);
}

/// Kills a follower of a fresh 3-member cluster and waits until the
/// leader no longer counts it active: (leader, dead, live follower).
fn kill_a_follower(cluster: &mut Cluster, rt: &tokio::runtime::Runtime) -> (usize, usize, usize) {
    let leader = cluster.wait_leader(rt);
    let (dead, live) = ((leader + 1) % 3, (leader + 2) % 3);
    let client = {
        let _in_runtime = rt.enter();
        cluster.client()
    };
    let leader_sees = |what: &str, want: &[u64]| {
        wait_for(what, Duration::from_secs(30), || {
            let s = rt.block_on(client.status_of(leader)).ok()?;
            let mut active = s.flotilla_active_members;
            active.sort_unstable();
            (active == want).then_some(())
        })
    };
    leader_sees("the leader to hear from everyone", &[1, 2, 3]);
    cluster.kill(dead);
    let mut rest = vec![leader as u64 + 1, live as u64 + 1];
    rest.sort_unstable();
    leader_sees("the leader to notice a member is down", &rest);
    (leader, dead, live)
}

/// etcd's strict reconfiguration check: with a voter down, the leader
/// refuses to add a member or to remove a live voter, and allows removing
/// the dead one; `--strict-reconfig-check=false` lifts the check.
#[test]
fn changes_that_risk_the_quorum_are_refused() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start("strict-reconfig", 3);
    let (_, dead, live) = kill_a_follower(&mut cluster, &rt);
    let endpoints = cluster.endpoints.join(",");
    let url = format!("http://127.0.0.1:{}", free_port());
    let add = ["add", "--id", "4", "--peer-url", &url, "--learner"];
    member_refused(&cluster, &endpoints, &add, "etcdserver: unhealthy cluster");
    let live_id = (live + 1).to_string();
    member_refused(
        &cluster,
        &endpoints,
        &["remove", &live_id],
        "unhealthy cluster",
    );
    member_ok(&cluster, &endpoints, &["remove", &(dead + 1).to_string()]);
    drop(cluster);

    let mut lax = Cluster::start_with("lax-reconfig", 3, &["--strict-reconfig-check=false"]);
    kill_a_follower(&mut lax, &rt);
    let endpoints = lax.endpoints.join(",");
    let added = member_ok(&lax, &endpoints, &add);
    assert!(added.contains('4'), "{added}");
}

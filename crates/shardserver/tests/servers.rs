//! Three sharded servers in one process (each its own [`run`], its own
//! data directory and port), driven through the Shard service: requests
//! are checked before anything is proposed, keys follow their shards
//! across joins, moves and leaves, a write repeated after its shard
//! moved is applied once, and a server stopped and started again catches
//! up on every configuration it missed from its WAL and its peers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_proto::shard::v1 as pb;
use flotilla_proto::shard::v1::shard_client::ShardClient;
use flotilla_raft::NodeId;
use flotilla_shardserver::{ShardServerConfig, run};
use flotilla_testkit::Scratch;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(20);

struct Servers {
    _scratch: Scratch,
    cfgs: Vec<ShardServerConfig>,
    running: Vec<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

impl Servers {
    async fn start(name: &str) -> Servers {
        let scratch = Scratch::new(name);
        let mut listeners = Vec::new();
        for _ in 0..3 {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let consoles = flotilla_testkit::free_ports(3);
        let peers: BTreeMap<NodeId, String> = (listeners.iter().enumerate())
            .map(|(i, l)| (NodeId(i as u64 + 1), l.local_addr().unwrap().to_string()))
            .collect();
        let cfgs: Vec<ShardServerConfig> = (0..3)
            .map(|i| ShardServerConfig {
                id: NodeId(i as u64 + 1),
                peers: peers.clone(),
                groups: vec![1, 2, 3],
                shards: 10,
                data_dir: scratch.path.join(format!("node{}", i + 1)),
                tick: Duration::from_millis(10),
                snapshot_entries: 50,
                cluster_token: None,
                metrics_listen: Some(([127, 0, 0, 1], consoles[i]).into()),
                tls: None,
            })
            .collect();
        let mut s = Servers {
            _scratch: scratch,
            cfgs,
            running: vec![None, None, None],
        };
        for (i, l) in listeners.into_iter().enumerate() {
            s.serve(i, l);
        }
        s
    }

    fn serve(&mut self, i: usize, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        let cfg = self.cfgs[i].clone();
        let task = tokio::spawn(async move {
            run(cfg, listener, async move { drop(stopped.await) })
                .await
                .unwrap();
        });
        self.running[i] = Some((stop, task));
    }

    async fn stop(&mut self, i: usize) {
        let (stop, task) = self.running[i].take().unwrap();
        stop.send(()).unwrap();
        task.await.unwrap();
    }

    async fn restart(&mut self, i: usize) {
        let listener = TcpListener::bind(&self.cfgs[i].peers[&NodeId(i as u64 + 1)])
            .await
            .unwrap();
        self.serve(i, listener);
    }

    fn client(&self, i: usize) -> ShardClient<Channel> {
        let addr = &self.cfgs[i].peers[&NodeId(i as u64 + 1)];
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        ShardClient::new(channel)
    }

    async fn shutdown(mut self) {
        for i in 0..3 {
            if self.running[i].is_some() {
                self.stop(i).await;
            }
        }
    }
}

fn session(client_id: u64, seq: u64) -> Option<pb::Session> {
    Some(pb::Session { client_id, seq })
}

fn join(seq: u64, gids: &[u64]) -> pb::JoinRequest {
    pb::JoinRequest {
        session: session(99, seq),
        groups: gids.iter().map(|&g| (g, pb::Servers::default())).collect(),
    }
}

fn put(client: u64, seq: u64, key: &str, value: &str, append: bool) -> pb::PutRequest {
    pb::PutRequest {
        session: session(client, seq),
        key: key.to_string().into(),
        value: value.to_string().into(),
        append,
    }
}

async fn get(c: &mut ShardClient<Channel>, key: &str) -> pb::GetResponse {
    let r = pb::GetRequest {
        key: key.to_string().into(),
    };
    c.get(r).await.unwrap().into_inner()
}

/// Polls server `i`'s status until its controller replica has reached
/// configuration `num` and every data group there is at it, with only
/// serving shards.
async fn settled(s: &Servers, i: usize, num: u64) -> pb::StatusResponse {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(st) = s.client(i).status(pb::StatusRequest {}).await {
            let st = st.into_inner();
            let latest = st.latest.as_ref().map_or(0, |c| c.num);
            let done = (st.groups.iter().skip(1))
                .all(|g| g.config_num == latest && g.shards.values().all(|s| s == "serving"));
            if done && latest == num {
                return st;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "server {} never settled",
            i + 1
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Server `i`'s console (`--metrics-listen`): the page, `/api/shards`
/// at configuration `num` with `shard` owned and served by `gid`, and
/// `/metrics` counting every shard served once, by some group.
async fn console_shows(s: &Servers, i: usize, num: u64, shard: usize, gid: u64) {
    use flotilla_testkit::http::get;
    let addr = s.cfgs[i].metrics_listen.unwrap().to_string();
    let (page, api, metrics, post) = tokio::task::spawn_blocking(move || {
        let post = flotilla_testkit::http::post(&addr, "/api/shards", "");
        (
            get(&addr, "/"),
            get(&addr, "/api/shards"),
            get(&addr, "/metrics"),
            post,
        )
    })
    .await
    .unwrap();
    assert!(page.0 == 200 && page.1.contains("/api/shards"), "{page:?}");
    assert_eq!(post.0, 405, "{post:?}");
    let v: serde_json::Value = serde_json::from_str(&api.1).unwrap();
    assert_eq!(
        (v["member"].as_u64(), v["latest"]["num"].as_u64()),
        (Some(i as u64 + 1), Some(num))
    );
    assert_eq!(v["latest"]["shards"][shard].as_u64(), Some(gid), "{v}");
    let group = (v["groups"].as_array().unwrap().iter())
        .find(|g| g["gid"].as_u64() == Some(gid))
        .unwrap();
    assert_eq!(group["shards"][shard.to_string()], "serving", "{group}");
    assert_eq!(group["config_num"].as_u64(), Some(num));
    assert_eq!(v["groups"][0]["gid"], 0, "the controller first");
    let serving: u64 = (metrics.1.lines())
        .filter(|l| l.starts_with("flotilla_shards{") && l.contains("state=\"serving\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(serving, 10, "{}", metrics.1);
    let leaders = (metrics.1.lines())
        .filter(|l| l.starts_with("flotilla_raft_is_leader{group="))
        .count();
    assert_eq!(leaders, 4, "the controller and three groups");
    assert!(
        metrics
            .1
            .contains("# TYPE flotilla_wal_fsync_seconds histogram")
    );
    roles_agree(&v, &metrics.1, i as u64 + 1);
}

/// Each group's role in `/api/shards` and its `flotilla_raft_is_leader`
/// say the same as whom it names leader, on server `member`.
fn roles_agree(v: &serde_json::Value, metrics: &str, member: u64) {
    for g in v["groups"].as_array().unwrap() {
        let leader = g["leader"].as_u64() == Some(member);
        let role = g["role"].as_str().unwrap();
        assert_eq!(role == "leader", leader, "{g}");
        assert!(["leader", "follower", "candidate"].contains(&role), "{g}");
        let line = format!(
            "flotilla_raft_is_leader{{group=\"{}\"}} {}\n",
            g["gid"],
            u8::from(leader)
        );
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
}

fn code_and_message<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
) -> (Code, String) {
    let e = r.unwrap_err();
    (e.code(), e.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_checked_before_anything_is_proposed() {
    let s = Servers::start("shard-checks").await;
    let mut c = s.client(0);
    let (code, msg) = code_and_message(c.put(put(1, 1, "a", "x", false)).await);
    assert_eq!(code, Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("no group serves shard 7"), "{msg}");
    let no_session = pb::PutRequest {
        session: None,
        ..put(1, 1, "a", "x", false)
    };
    let puts = [
        (no_session, "has no session"),
        (put(0, 1, "a", "x", false), "nonzero client_id"),
        (
            put(1, 0, "a", "x", false),
            "nonzero client_id and seq (got client_id 1, seq 0)",
        ),
        (put(1, 1, "", "x", false), "the key is empty"),
        (
            put(1, 1, &"k".repeat(65_537), "x", false),
            "more than the 65536 allowed",
        ),
        (
            put(1, 1, "a", &"v".repeat(1_572_865), false),
            "more than the 1572864 allowed",
        ),
    ];
    for (r, want) in puts {
        let (code, msg) = code_and_message(c.put(r).await);
        assert_eq!(code, Code::InvalidArgument, "{msg}");
        assert!(msg.contains(want), "{msg} lacks {want}");
    }
    // At the limits themselves, the request passes the checks (and meets
    // the store with no group yet).
    let largest_key = "a".repeat(65_536);
    for r in [
        put(1, 1, &largest_key, "x", false),
        put(1, 1, "a", &"v".repeat(1_572_864), false),
    ] {
        let (code, msg) = code_and_message(c.put(r).await);
        assert_eq!(code, Code::FailedPrecondition, "{msg}");
    }
    s.shutdown().await;
}

/// The controller's requests (and a get), refused with what was wrong;
/// nothing is made of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_requests_are_checked_before_anything_is_proposed() {
    let s = Servers::start("shard-ctrl-checks").await;
    let mut c = s.client(1);
    let (code, msg) = code_and_message(
        c.get(pb::GetRequest {
            key: Default::default(),
        })
        .await,
    );
    assert_eq!(
        (code, msg.as_str()),
        (Code::InvalidArgument, "the key is empty")
    );
    let (code, msg) = code_and_message(c.join(join(1, &[])).await);
    assert_eq!(
        (code, msg.as_str()),
        (Code::InvalidArgument, "the join names no group")
    );
    let (code, msg) = code_and_message(c.join(join(1, &[1, 7])).await);
    assert_eq!(code, Code::FailedPrecondition, "{msg}");
    assert!(
        msg.contains("group 7 is not hosted by these servers (they host [1, 2, 3])"),
        "{msg}"
    );
    let leave = |gids: Vec<u64>| pb::LeaveRequest {
        session: session(99, 1),
        gids,
    };
    let (code, msg) = code_and_message(c.leave(leave(vec![])).await);
    assert_eq!(
        (code, msg.as_str()),
        (Code::InvalidArgument, "the leave names no group")
    );
    let (code, msg) = code_and_message(c.leave(leave(vec![2])).await);
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    let mv = |shard, gid, seq| pb::MoveRequest {
        session: session(99, seq),
        shard,
        gid,
    };
    let (code, msg) = code_and_message(c.r#move(mv(99, 1, 2)).await);
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("shard 99 does not exist"), "{msg}");
    let (code, msg) = code_and_message(c.r#move(mv(1, 5, 3)).await);
    assert_eq!(code, Code::FailedPrecondition, "{msg}");
    let latest = c
        .query(pb::QueryRequest { num: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest.num, 0, "no refused change was made");
    assert_eq!(latest.shards, vec![0; 10]);
    s.shutdown().await;
}

/// `done`, sent again with its session, changes nothing: the latest is
/// still configuration 4, and configuration 1 is still queryable.
async fn repeated_change_is_not_made_twice(c: &mut ShardClient<Channel>, gone: pb::LeaveRequest) {
    c.leave(gone).await.unwrap();
    assert_eq!(
        c.query(pb::QueryRequest { num: 0 })
            .await
            .unwrap()
            .into_inner()
            .num,
        4
    );
    let first = (c.query(pb::QueryRequest { num: 1 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (first.num, first.shards),
        (1, vec![1; 10]),
        "old ones stay queryable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_follow_their_shards_and_a_repeated_write_applies_once() {
    let s = Servers::start("shard-moves").await;
    let mut c = s.client(0);
    c.join(join(1, &[1])).await.unwrap();
    // Keys "0k" to "9k" lie on the ten shards (first byte modulo 10).
    for i in 0..10u64 {
        c.put(put(1, i + 1, &format!("{i}k"), &format!("v{i}"), false))
            .await
            .unwrap();
    }
    c.put(put(2, 1, "3k", "x", true)).await.unwrap();
    let shard = u64::from(b'3') % 10;
    let joined = c.join(join(2, &[2, 3])).await.unwrap().into_inner();
    assert_eq!(joined.config.unwrap().num, 2);
    let mv = pb::MoveRequest {
        session: session(99, 3),
        shard,
        gid: 3,
    };
    let moved = c.r#move(mv).await.unwrap().into_inner().config.unwrap();
    assert_eq!(moved.shards[shard as usize], 3);
    // The same write again, at another server, after its shard moved:
    // answered by the new owner, not applied again. (Before the groups
    // have settled, the old owner may still answer it, rightly: ownership
    // changes when a group's log says so, not when the controller's does.)
    for i in 0..3 {
        settled(&s, i, 3).await;
    }
    console_shows(&s, 1, 3, shard as usize, 3).await;
    let mut c2 = s.client(1);
    let again = c2
        .put(put(2, 1, "3k", "x", true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.gid, again.config_num), (3, 3));
    assert_eq!(get(&mut c2, "3k").await.value, "v3x");
    let gone = pb::LeaveRequest {
        session: session(99, 4),
        gids: vec![1],
    };
    c.leave(gone.clone()).await.unwrap();
    for i in 0..3 {
        let st = settled(&s, i, 4).await;
        let g1 = st.groups.iter().find(|g| g.gid == 1).unwrap();
        assert!(
            g1.shards.is_empty() && g1.data_bytes == 0,
            "group 1 gave all away: {g1:?}"
        );
        assert_eq!(st.groups[0].gid, 0, "the controller's row first");
    }
    for i in 0..10usize {
        let got = get(&mut s.client(i % 3), &format!("{i}k")).await;
        let want = if i == 3 {
            "v3x".to_string()
        } else {
            format!("v{i}")
        };
        assert!(got.found && got.value == want, "{i}k: {got:?}");
        assert_ne!(got.gid, 1, "group 1 left");
    }
    repeated_change_is_not_made_twice(&mut c, gone).await;
    assert!(!get(&mut c, "zz").await.found);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_catches_up_on_the_configurations_it_missed() {
    let mut s = Servers::start("shard-restart").await;
    let mut c = s.client(0);
    c.join(join(1, &[1])).await.unwrap();
    c.put(put(1, 1, "a", "1", false)).await.unwrap();
    s.stop(2).await;
    c.join(join(2, &[2, 3])).await.unwrap();
    // More entries than --snapshot-entries: the groups compact their logs.
    for i in 0..120u64 {
        c.put(put(1, i + 2, &format!("{}x", i % 10), ".", true))
            .await
            .unwrap();
    }
    let shard = u64::from(b'a') % 10;
    let mv = pb::MoveRequest {
        session: session(99, 3),
        shard,
        gid: 2,
    };
    c.r#move(mv).await.unwrap();
    s.restart(2).await;
    let st = settled(&s, 2, 3).await;
    assert_eq!(st.latest.unwrap().shards[shard as usize], 2);
    let mut c3 = s.client(2);
    let got = get(&mut c3, "a").await;
    assert_eq!((got.value.as_ref(), got.gid), (&b"1"[..], 2));
    assert_eq!(get(&mut c3, "0x").await.value.len(), 12);
    s.shutdown().await;
}

/// A shard larger than one entry may carry (`PART_BYTES`) moves in
/// parts, and arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_larger_than_an_entry_moves_in_parts() {
    let s = Servers::start("shard-large").await;
    let mut c = s.client(0);
    c.join(join(1, &[1])).await.unwrap();
    let value = |i: u64| format!("{i:04}").repeat(256 * 1024);
    let count = (flotilla_shardserver::mover::PART_BYTES / (1 << 20)) as u64 * 3 + 1;
    for i in 0..count {
        c.put(put(5, i + 1, &format!("L{i}"), &value(i), false))
            .await
            .unwrap();
    }
    let shard = u64::from(b'L') % 10;
    c.join(join(2, &[2])).await.unwrap();
    let mv = pb::MoveRequest {
        session: session(99, 3),
        shard,
        gid: 2,
    };
    let latest = c.r#move(mv).await.unwrap().into_inner().config.unwrap();
    assert_eq!(latest.shards[shard as usize], 2);
    for i in 0..3 {
        let st = settled(&s, i, latest.num).await;
        let g2 = st.groups.iter().find(|g| g.gid == 2).unwrap();
        assert_eq!(g2.shards.get(&shard).map(String::as_str), Some("serving"));
        assert!(g2.data_bytes >= count << 20, "{g2:?}");
    }
    for i in 0..count {
        let got = get(&mut s.client(i as usize % 3), &format!("L{i}")).await;
        assert_eq!(got.gid, 2);
        assert!(got.value == value(i).as_bytes(), "L{i} arrived whole");
    }
    s.shutdown().await;
}

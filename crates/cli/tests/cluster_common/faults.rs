//! Faults for the cluster tests, each a round that injects the fault,
//! runs a client phase (or probes) under it, and repairs it: kill -9,
//! SIGSTOP/SIGCONT, the leader cut off (stalled or refused links), a
//! one-way partition, a split into minorities (no quorum), delayed links,
//! and the restart of every member.
//!
//! With `FLOTILLA_SOAK_SECS=N`, [`soak`] runs rounds picked at random
//! (seeded; `FLOTILLA_SOAK_SEED` replays a run) until N seconds have
//! passed, at most [`SOAK_ROUNDS_MAX`] of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_client::Client;
use flotilla_raft::rng::SplitMix64;
use flotilla_testkit::proxy::Mode;
use tokio::runtime::Runtime;

use super::Cluster;
use super::workload::Workload;

/// The most rounds a soak runs, however long it may take.
pub const SOAK_ROUNDS_MAX: u64 = 10_000;
/// Timeout of the probes that must not be acknowledged.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One fault round.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// kill -9 of a member (0-based; taken modulo the size), then restart.
    Kill(usize),
    /// SIGSTOP of the leader, then SIGCONT.
    PauseLeader,
    /// The leader cut off from every other member, both ways.
    IsolateLeader(Mode),
    /// The leader's links to the others in `Mode`; theirs to it pass.
    OneWayFromLeader(Mode),
    /// Members split into pieces of at most a minority each: no quorum.
    SplitMinorities(Mode),
    /// Every link delayed.
    Delay(Duration),
    /// kill -9 of every member, then restart of all.
    RestartAll,
}

impl Fault {
    /// Runs the round; the cluster has a leader again when it returns.
    pub fn run(self, c: &mut Cluster, rt: &Runtime, w: &Workload) {
        let n = c.procs.len();
        match self {
            Fault::Kill(i) => {
                c.kill(i % n);
                rt.block_on(w.phase());
                c.restart(i % n);
            }
            Fault::PauseLeader => {
                let leader = c.wait_leader(rt);
                c.signal(leader, "STOP");
                rt.block_on(w.phase());
                c.signal(leader, "CONT");
            }
            Fault::IsolateLeader(mode) => cut_leader(c, rt, w, mode, true),
            Fault::OneWayFromLeader(mode) => cut_leader(c, rt, w, mode, false),
            Fault::SplitMinorities(mode) => split_minorities(c, rt, w, mode),
            Fault::Delay(d) => {
                c.net().set_all(Mode::Delay(d));
                rt.block_on(w.phase());
                c.net().heal();
            }
            Fault::RestartAll => {
                for i in 0..n {
                    c.kill(i);
                }
                for i in 0..n {
                    c.restart(i);
                }
            }
        }
        c.wait_leader(rt);
    }

    /// A round picked by `rng` for an `n`-member cluster.
    pub fn pick(rng: &mut SplitMix64, n: usize) -> Fault {
        let mode = |r: &mut SplitMix64| match r.range(0, 2) {
            0 => Mode::Stall,
            _ => Mode::Cut,
        };
        match rng.range(0, 8) {
            0 => Fault::Kill(rng.range(0, n as u64) as usize),
            1 => Fault::PauseLeader,
            2 | 3 => Fault::IsolateLeader(mode(rng)),
            4 => Fault::OneWayFromLeader(mode(rng)),
            5 => Fault::SplitMinorities(mode(rng)),
            6 => Fault::Delay(Duration::from_millis(rng.range(5, 105))),
            _ => Fault::RestartAll,
        }
    }
}

/// Clients that each talk to one member only (call inside a runtime).
fn member_clients(c: &Cluster, members: &[usize]) -> Vec<Arc<Client>> {
    members
        .iter()
        .map(|&i| Arc::new(Client::new(&c.endpoints[i..=i], PROBE_TIMEOUT).unwrap()))
        .collect()
}

/// The leader loses its links to the others (`both_ways`: theirs to it
/// too; otherwise it still hears them): the majority elects a new leader
/// and serves; the old leader must acknowledge no write, whether it still
/// believes it leads or has learnt of the new one; then the links heal.
fn cut_leader(c: &mut Cluster, rt: &Runtime, w: &Workload, mode: Mode, both_ways: bool) {
    let n = c.procs.len();
    let leader = c.wait_leader(rt);
    let others: Vec<usize> = (0..n).filter(|&j| j != leader).collect();
    for &j in &others {
        c.net().set(leader, j, mode);
        if both_ways {
            c.net().set(j, leader, mode);
        }
    }
    let probes = {
        let _g = rt.enter();
        member_clients(c, &[leader, leader])
    };
    let acked = rt.block_on(w.probe_writes(&probes));
    assert_eq!(acked, 0, "the cut-off leader acknowledged {acked} writes");
    let new = c.wait_leader_of(rt, &others);
    eprintln!(
        "member {} cut off ({mode:?}, both ways: {both_ways}); member {} leads",
        leader + 1,
        new + 1
    );
    let acks = rt.block_on(w.phase());
    assert!(acks > 0, "the majority served nothing");
    let acked = rt.block_on(w.probe_writes(&probes));
    assert_eq!(
        acked, 0,
        "the cut-off old leader acknowledged {acked} writes"
    );
    c.net().heal();
}

/// Pieces of at most a minority each: no member may acknowledge a write
/// until the links heal.
fn split_minorities(c: &mut Cluster, rt: &Runtime, w: &Workload, mode: Mode) {
    let n = c.procs.len();
    let piece = (n - 1) / 2;
    let groups: Vec<Vec<usize>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(piece.max(1))
        .map(<[usize]>::to_vec)
        .collect();
    c.net().partition(&groups, mode);
    let all: Vec<usize> = (0..n).collect();
    let probes = {
        let _g = rt.enter();
        member_clients(c, &all)
    };
    let acked = rt.block_on(w.probe_writes(&probes));
    assert_eq!(
        acked, 0,
        "{acked} writes acknowledged without a quorum ({groups:?})"
    );
    c.net().heal();
}

/// `FLOTILLA_SOAK_SECS`, if set.
pub fn soak_secs() -> Option<u64> {
    let v = std::env::var("FLOTILLA_SOAK_SECS").ok()?;
    Some(
        v.parse()
            .expect("FLOTILLA_SOAK_SECS is a number of seconds"),
    )
}

/// Random fault rounds for `FLOTILLA_SOAK_SECS` seconds; nothing when it
/// is not set (the short CI version).
pub fn soak(name: &str, c: &mut Cluster, rt: &Runtime, w: &Workload) {
    let Some(secs) = soak_secs() else { return };
    let seed = match std::env::var("FLOTILLA_SOAK_SEED") {
        Ok(s) => s.parse().expect("FLOTILLA_SOAK_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    eprintln!(
        "{name}: soak of {secs} s; replay with FLOTILLA_SOAK_SECS={secs} FLOTILLA_SOAK_SEED={seed}"
    );
    let mut rng = SplitMix64::new(seed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let n = c.procs.len();
    for round in 0..SOAK_ROUNDS_MAX {
        if Instant::now() >= deadline {
            break;
        }
        let fault = Fault::pick(&mut rng, n);
        eprintln!("{name}: round {round}: {fault:?}");
        fault.run(c, rt, w);
    }
}

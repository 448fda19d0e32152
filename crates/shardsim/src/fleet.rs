//! The course's sharded KV tester (`shardkv/config.go`, spec §5.1) on
//! production replica hosts: a controller group and replica groups, each
//! a [`HostedCluster`] of its own (production hosts over the real WAL on
//! the simulator's disk), advanced together in virtual time, with actors
//! that span them: the groups' movers ([`crate::mover`]) and the clerks
//! ([`crate::clerk`]).
//!
//! What crosses between groups or from a client (a controller query, a
//! shard pull, a delete, a client's request) goes to one server through
//! the host's request path and is answered there, exactly as a request
//! within a group is; in unreliable mode each such request and each
//! answer is lost with [`LOSS_PER_MILLE`], on top of the groups' own
//! unreliable networks.
//!
//! Invariants: every cluster's clock and the fleet's are equal between
//! steps; an answer reaches only the actor that asked, once; after every
//! step, no shard is served by two groups at one configuration number
//! (checked on every running member).

use std::collections::BTreeMap;

use flotilla_host::NodeError;
use flotilla_raft::NodeId;
use flotilla_raft::rng::SplitMix64;
use flotilla_shardkv::{CtrlApplied, CtrlCommand, Gid, GroupApplied, GroupCommand, ShardKv};
use flotilla_sim::hosted::{Answered, App, HostedConfig, Request, ServiceModel};
use flotilla_sim::{Actor, Failure, HostedCluster, MS, Tester};

use crate::ctrl::{CtrlApp, CtrlHosted, NET_LATENCY_NS};

/// Per mille of cross-group and client requests and answers lost in
/// unreliable mode.
pub const LOSS_PER_MILLE: u64 = 100;

/// The actor of every cluster that takes the fleet's answers.
const MAILBOX: usize = 0;

/// A replica group as a hosted app: every member runs a [`ShardKv`].
#[derive(Debug)]
pub struct GroupApp {
    /// The group's id.
    pub gid: Gid,
    /// Shards per configuration.
    pub nshards: usize,
}

impl App for GroupApp {
    type Machine = ShardKv;

    fn machine(&mut self, _member: u64, _voters: &[NodeId]) -> ShardKv {
        ShardKv::new(self.gid, self.nshards)
    }

    /// The world has no clients here (the fleet's clerks are the
    /// clients); were one configured, it would propose nothing.
    fn next(&mut self, _rng: &mut SplitMix64, _c: u64, _now: u64) -> Request {
        Request::Read
    }

    fn written(&mut self, _c: u64, _o: &Option<GroupApplied>, _now: u64) -> Result<(), String> {
        Ok(())
    }

    fn read(&mut self, _c: u64, _m: &ShardKv, _now: u64) -> Result<(), String> {
        Ok(())
    }
}

/// A hosted replica group.
pub type GroupHosted = HostedCluster<GroupApp>;

/// Takes a cluster's answers for the fleet (and never wakes for more).
struct Mailbox;

impl<A: App> Actor<HostedCluster<A>> for Mailbox {
    fn wake(&mut self, _c: &mut HostedCluster<A>) -> Result<Option<u64>, Failure> {
        Ok(None)
    }
}

/// An answer that reached a fleet actor.
#[derive(Debug)]
pub enum Mail {
    /// From the controller: the request's id and the answer.
    Ctrl(u64, Result<Answered<Option<CtrlApplied>>, NodeError>),
    /// From group `gid`: the request's id, the server (index) that
    /// answered, and the answer.
    Group(
        Gid,
        u64,
        usize,
        Result<Answered<Option<GroupApplied>>, NodeError>,
    ),
}

/// An actor of the fleet.
pub trait FleetActor {
    /// Runs at a wake-up (its time, or an answer's arrival) as actor
    /// `me`; returns when to wake next (`None`: done).
    fn wake(&mut self, f: &mut Fleet, me: usize) -> Result<Option<u64>, Failure>;
}

/// How a fleet is set up (the course's `make_config`).
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// The replica groups' ids.
    pub gids: Vec<Gid>,
    /// Servers per group (and in the controller).
    pub n: u64,
    /// Shards.
    pub nshards: usize,
    /// The course's `maxraftstate` (`None`: -1, never snapshot).
    pub maxraftstate: Option<u64>,
    /// Lose and delay messages everywhere.
    pub unreliable: bool,
    /// Every message's latency within a group and to the controller.
    pub latency_ns: u64,
    /// Each server's processor (`bench.rs`); `None`: processing takes no
    /// time, as in the course's tests and `flotilla sim shard`.
    pub service: Option<FleetService>,
}

/// A service-time model for a fleet's servers
/// ([`flotilla_sim::hosted::ServiceModel`]: its costs and shared
/// processors; the fleet assigns the slots).
#[derive(Clone, Debug)]
pub struct FleetService {
    /// The costs and the processors.
    pub model: ServiceModel,
    /// Where groups run: every group on servers of its own (the course's
    /// fleet), or every group's server `i` on one process `i` with the
    /// controller's (`flotilla up --groups`).
    pub colocated: bool,
}

impl FleetService {
    /// The model for cluster `k` (0 the controller, then the groups in
    /// order) of `n` servers each.
    fn for_cluster(&self, k: usize, n: u64) -> ServiceModel {
        let n = n as usize;
        let first = if self.colocated { 0 } else { k * n };
        ServiceModel {
            slots: (first..first + n).collect(),
            ..self.model.clone()
        }
    }
}

impl FleetConfig {
    /// The course's fleet: groups 100, 101, 102 of 3 servers, 10 shards.
    pub fn course(maxraftstate: Option<u64>, unreliable: bool) -> FleetConfig {
        FleetConfig {
            gids: vec![100, 101, 102],
            n: 3,
            nshards: flotilla_shardkv::COURSE_SHARDS,
            maxraftstate,
            unreliable,
            latency_ns: NET_LATENCY_NS,
            service: None,
        }
    }

    /// The course's settings for cluster `k` (0 the controller, then the
    /// groups in order), with this fleet's processors.
    fn hosted(&self, k: usize, maxraftstate: Option<u64>) -> HostedConfig {
        let mut hc = HostedConfig::course(self.n, self.unreliable, self.latency_ns, maxraftstate);
        hc.service = self.service.as_ref().map(|s| s.for_cluster(k, self.n));
        hc
    }
}

/// The fleet: see the module docs.
pub struct Fleet {
    /// The controller's servers.
    pub ctrl: CtrlHosted,
    /// The replica groups, by gid.
    pub groups: BTreeMap<Gid, GroupHosted>,
    /// The setup.
    pub cfg: FleetConfig,
    seed: u64,
    /// The fleet's PRNG (losses, clerks' choices).
    pub rng: SplitMix64,
    now: u64,
    actors: Vec<Option<Box<dyn FleetActor>>>,
    /// Actor wake-ups: (time, sequence) to actor.
    wakes: BTreeMap<(u64, u64), usize>,
    /// Each actor's pending wake-up, so a new one replaces it.
    pending: BTreeMap<usize, (u64, u64)>,
    seq: u64,
    /// (cluster, request) to the actor that asked; cluster 0 is the
    /// controller.
    routes: BTreeMap<(Gid, u64), usize>,
    mail: BTreeMap<usize, Vec<Mail>>,
}

impl Fleet {
    /// The fleet `cfg` describes, for seed `seed`.
    pub fn new(cfg: FleetConfig, seed: u64) -> Fleet {
        // Fixed, valid settings on empty disks: a failed start is the
        // simulator's bug.
        let start = |e: String| -> ! { panic!("{e}") };
        let ctrl_cfg = cfg.hosted(0, None);
        let app = CtrlApp {
            nshards: cfg.nshards,
        };
        let mut ctrl = HostedCluster::new(seed, ctrl_cfg, app).unwrap_or_else(|e| start(e));
        ctrl.spawn(Box::new(Mailbox));
        let mut groups = BTreeMap::new();
        for (i, &gid) in cfg.gids.iter().enumerate() {
            let hc = cfg.hosted(i + 1, cfg.maxraftstate);
            let app = GroupApp {
                gid,
                nshards: cfg.nshards,
            };
            let group_seed = seed.wrapping_mul(31).wrapping_add(i as u64 + 1);
            let mut g = HostedCluster::new(group_seed, hc, app).unwrap_or_else(|e| start(e));
            g.spawn(Box::new(Mailbox));
            groups.insert(gid, g);
        }
        Fleet {
            ctrl,
            groups,
            cfg,
            seed,
            rng: SplitMix64::new(seed ^ 0x7368_6172),
            now: 0,
            actors: Vec::new(),
            wakes: BTreeMap::new(),
            pending: BTreeMap::new(),
            seq: 0,
            routes: BTreeMap::new(),
            mail: BTreeMap::new(),
        }
    }

    /// Virtual time (ns).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// A failure at the current time.
    pub fn fail(&self, what: impl Into<String>) -> Failure {
        Failure {
            seed: self.seed,
            at_ns: self.now,
            what: what.into(),
        }
    }

    /// Whether a message is lost now (unreliable mode only).
    fn lost(&mut self) -> bool {
        self.cfg.unreliable && self.rng.range(0, 1000) < LOSS_PER_MILLE
    }

    /// Sends `command` to controller server `server` for actor `me`.
    /// `None` if it was lost or the server is down.
    pub fn ask_ctrl(&mut self, me: usize, server: usize, command: &CtrlCommand) -> Option<u64> {
        if self.lost() {
            return None;
        }
        let request = self.ctrl.propose(server, command.encode(), Some(MAILBOX))?;
        self.routes.insert((0, request), me);
        Some(request)
    }

    /// Sends `command` to server `server` of group `gid` for actor `me`.
    pub fn ask_group(
        &mut self,
        me: usize,
        gid: Gid,
        server: usize,
        command: &GroupCommand,
    ) -> Option<u64> {
        if self.lost() {
            return None;
        }
        let g = self.groups.get_mut(&gid)?;
        let request = g.propose(server, command.encode(), Some(MAILBOX))?;
        self.routes.insert((gid, request), me);
        Some(request)
    }

    /// Asks server `server` of group `gid` for a linearizable read for
    /// actor `me` (answered once its machine has applied the read index).
    pub fn read_group(&mut self, me: usize, gid: Gid, server: usize) -> Option<u64> {
        if self.lost() {
            return None;
        }
        let g = self.groups.get_mut(&gid)?;
        let request = g.read(server, Some(MAILBOX))?;
        self.routes.insert((gid, request), me);
        Some(request)
    }

    /// The answers that reached actor `me`.
    pub fn take_mail(&mut self, me: usize) -> Vec<Mail> {
        self.mail.remove(&me).unwrap_or_default()
    }

    /// Starts an actor now; returns its id.
    pub fn spawn(&mut self, actor: Box<dyn FleetActor>) -> usize {
        self.actors.push(Some(actor));
        let id = self.actors.len() - 1;
        self.schedule(id, self.now);
        id
    }

    fn schedule(&mut self, id: usize, at: u64) {
        if let Some(old) = self.pending.remove(&id) {
            self.wakes.remove(&old);
        }
        self.seq += 1;
        self.wakes.insert((at, self.seq), id);
        self.pending.insert(id, (at, self.seq));
    }

    /// Hands every cluster's answers to the actors that asked, each
    /// woken now (an answer may be lost on its way in unreliable mode).
    fn collect_mail(&mut self) {
        let mut arrived = Vec::new();
        for (request, _m, answer) in self.ctrl.take_mail(MAILBOX) {
            if let Some(actor) = self.routes.remove(&(0, request)) {
                arrived.push((actor, Mail::Ctrl(request, answer)));
            }
        }
        for (&gid, g) in self.groups.iter_mut() {
            for (request, m, answer) in g.take_mail(MAILBOX) {
                if let Some(actor) = self.routes.remove(&(gid, request)) {
                    let server = m.saturating_sub(1) as usize;
                    arrived.push((actor, Mail::Group(gid, request, server, answer)));
                }
            }
        }
        for (actor, mail) in arrived {
            if self.lost() || self.actors.get(actor).is_none_or(Option::is_none) {
                continue;
            }
            self.mail.entry(actor).or_default().push(mail);
            self.schedule(actor, self.now);
        }
    }

    /// When the next event of any cluster or actor is due.
    fn next_at(&self) -> Option<u64> {
        let clusters = self.groups.values().filter_map(|g| g.next_event_at());
        let actor = self.wakes.first_key_value().map(|(&(at, _), _)| at);
        clusters.chain(self.ctrl.next_event_at()).chain(actor).min()
    }

    /// Runs every cluster and actor until virtual time `t`.
    pub fn run_until(&mut self, t: u64) -> Result<(), Failure> {
        loop {
            self.collect_mail();
            let Some(at) = self.next_at().filter(|&at| at <= t) else {
                break;
            };
            let at = at.max(self.now);
            self.ctrl.run_until(at)?;
            for g in self.groups.values_mut() {
                g.run_until(at)?;
            }
            self.now = at;
            self.collect_mail();
            self.check_ownership()?;
            while let Some((&(when, seq), &id)) = self.wakes.first_key_value() {
                if when > self.now {
                    break;
                }
                self.wakes.remove(&(when, seq));
                self.pending.remove(&id);
                self.wake(id)?;
            }
        }
        self.ctrl.run_until(t)?;
        for g in self.groups.values_mut() {
            g.run_until(t)?;
        }
        self.now = self.now.max(t);
        Ok(())
    }

    fn wake(&mut self, id: usize) -> Result<(), Failure> {
        let Some(mut actor) = self.actors.get_mut(id).and_then(Option::take) else {
            return Ok(());
        };
        let next = actor.wake(self, id)?;
        self.actors[id] = Some(actor);
        match next {
            Some(at) => self.schedule(id, at.max(self.now)),
            None => self.actors[id] = None,
        }
        Ok(())
    }

    /// Runs for `d` ns.
    pub fn run_for(&mut self, d: u64) -> Result<(), Failure> {
        self.run_until(self.now + d)
    }

    /// Runs until `done` holds (checked after every step), or fails with
    /// `what` after `limit_ns`.
    pub fn run_until_cond(
        &mut self,
        limit_ns: u64,
        what: &str,
        mut done: impl FnMut(&Fleet) -> bool,
    ) -> Result<(), Failure> {
        let deadline = self.now + limit_ns;
        while !done(self) {
            match self.next_at() {
                Some(at) if at <= deadline => self.run_until(at.max(self.now))?,
                _ => {
                    self.run_until(deadline)?;
                    return if done(self) {
                        Ok(())
                    } else {
                        Err(self.fail(what))
                    };
                }
            }
        }
        Ok(())
    }

    /// No shard served by two groups at one configuration number.
    fn check_ownership(&self) -> Result<(), Failure> {
        let mut owner: BTreeMap<(u64, usize), Gid> = BTreeMap::new();
        for (&gid, g) in &self.groups {
            for i in 0..g.n() {
                let served = g.with_machine(i, |m| {
                    let num = m.config().num;
                    (0..m.config().shards.len())
                        .filter(|&s| m.serves(s))
                        .map(|s| (num, s))
                        .collect::<Vec<_>>()
                });
                for key in served.unwrap_or_default() {
                    if let Some(other) = owner.insert(key, gid).filter(|&o| o != gid) {
                        let (num, s) = key;
                        let what = format!(
                            "shard {s} served by groups {other} and {gid} at configuration {num}"
                        );
                        return Err(self.fail(what));
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes every network (un)reliable: the clusters' and the fleet's.
    pub fn set_reliable(&mut self, reliable: bool) {
        self.cfg.unreliable = !reliable;
        self.ctrl.set_reliable(reliable);
        self.groups
            .values_mut()
            .for_each(|g| g.set_reliable(reliable));
    }

    /// The course's `ShutdownGroup`: every server of `gid` crashes.
    pub fn shutdown_group(&mut self, gid: Gid) {
        if let Some(g) = self.groups.get_mut(&gid) {
            (0..g.n()).for_each(|i| g.crash(i));
        }
    }

    /// The course's `StartGroup`: every server of `gid` restarts from its
    /// disk.
    pub fn start_group(&mut self, gid: Gid) {
        if let Some(g) = self.groups.get_mut(&gid) {
            (0..g.n()).for_each(|i| g.restart(i));
        }
    }

    /// The course's `ShutdownServer(gid, i)`.
    pub fn shutdown_server(&mut self, gid: Gid, i: usize) {
        if let Some(g) = self.groups.get_mut(&gid) {
            g.crash(i);
        }
    }

    /// The course's `StartServer(gid, i)`.
    pub fn start_server(&mut self, gid: Gid, i: usize) {
        if let Some(g) = self.groups.get_mut(&gid) {
            g.restart(i);
        }
    }

    /// The course's `checklogs`: with a `maxraftstate`, no server's Raft
    /// state exceeds 8 times it; without, no server built a snapshot.
    pub fn checklogs(&self) -> Result<(), Failure> {
        for (gid, g) in &self.groups {
            match self.cfg.maxraftstate {
                Some(max) if g.log_size() > 8 * max => {
                    let what = format!(
                        "group {gid}: Raft state of {} bytes > 8 × {max}",
                        g.log_size()
                    );
                    return Err(self.fail(what));
                }
                None if g.snapshot_size() > 0 => {
                    let what = format!("group {gid} built a snapshot without maxraftstate");
                    return Err(self.fail(what));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A server index to try at `gid`: the one that leads, if any, else
    /// `fallback` modulo the group's size.
    pub fn target(&self, gid: Gid, fallback: usize) -> usize {
        let Some(g) = self.groups.get(&gid) else {
            return 0;
        };
        g.leader().unwrap_or(fallback % g.n().max(1))
    }

    /// The controller's server to try: its leader, if any, else
    /// `fallback` modulo its size.
    pub fn ctrl_target(&self, fallback: usize) -> usize {
        self.ctrl
            .leader()
            .unwrap_or(fallback % self.ctrl.n().max(1))
    }
}

/// Milliseconds of virtual time.
pub const fn ms(n: u64) -> u64 {
    n * MS
}

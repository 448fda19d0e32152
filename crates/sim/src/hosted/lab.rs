//! The course's Raft tests on the production replica host: a
//! [`HostedCluster`] is the hosted world (every member a
//! [`flotilla_host::Host`] over the real WAL on `MemFs`, syncs that take a
//! random while, snapshot jobs racing new writes) with no random faults,
//! clients or operator of its own; the test drives it, as the course's
//! tester does, through [`Tester`]: the course's `Start` is a proposal
//! through the host's request path at the member that leads, `crash`
//! loses what the member had not synced, `restart` recovers from its WAL.
//!
//! What the hosted world checks still holds on every event: every member
//! applies the same entry at each index, in order, and a restored
//! snapshot matches the log; one leader per term; and a proposal is
//! answered only once its entry is durable on a quorum.
//!
//! The members run the course's timing (the core's defaults: 10 ms
//! ticks, heartbeats every 100 ms, elections after 1–2 s), and the
//! network the course's faults (`NetConfig::default`). In snapshot mode
//! the log is compacted every 10 applied entries and each snapshot is
//! padded to span several 256-byte chunks, so InstallSnapshot transfers
//! are chunked.
//!
//! Invariant: test actors and the world's events run in virtual-time
//! order; at one instant, the world's events first.

use std::collections::BTreeMap;

use bytes::Bytes;
use flotilla_host::StateMachine;
use flotilla_raft::codec::Encode;
use flotilla_raft::rng::SplitMix64;
use flotilla_raft::{LogIndex, NodeId, Role, Term};

use super::app::{App, Padded, Request};
use super::config::HostedConfig;
use super::machine;
use super::member::{SimHost, SimWaiter};
use super::world::{Output, TEST, TestAnswer, World};
use crate::lab::Tester;
use crate::lab::{Actor, Failure};

/// Bytes of padding in each snapshot in snapshot mode.
const SNAPSHOT_PADDING: usize = 600;

/// A test actor of a hosted cluster of app `A`.
pub type HostedActor<A = LabApp> = Box<dyn Actor<HostedCluster<A>>>;

/// The course's tester over production hosts (see the module docs), of
/// app `A` ([`LabApp`] for the Raft tests).
pub struct HostedCluster<A: App = LabApp> {
    world: World<A>,
    seed: u64,
    /// The test's PRNG (the world draws from its own).
    pub rng: SplitMix64,
    actors: Vec<Option<HostedActor<A>>>,
    /// Each actor's wake generation: only its latest wake-up counts.
    epochs: Vec<u64>,
    /// Actor wake-ups: (time, sequence) to (actor, epoch).
    wakes: BTreeMap<(u64, u64), (usize, u64)>,
    seq: u64,
    /// The actor each test request's answer goes to.
    routes: BTreeMap<u64, usize>,
    /// Answers waiting for their actor to take them.
    mail: BTreeMap<usize, Vec<TestAnswer<Output<A>>>>,
    /// Requests are made without a pump (`read_burst` pumps once after).
    hold_pump: bool,
}

impl HostedCluster<LabApp> {
    /// A cluster set up as the course's `make_config(t, n, unreliable,
    /// snapshot)`.
    pub fn lab(n: u64, seed: u64, reliable: bool, snapshot: bool) -> HostedCluster {
        // The network's faults are the course's (no added latency); the
        // course's snapshot mode compacts every 10 entries.
        let cfg = HostedConfig {
            snapshot_entries: if snapshot { 10 } else { 1 << 62 },
            ..HostedConfig::course(n, !reliable, 0, None).with_snapshot_chunks(256)
        };
        let padding = if snapshot { SNAPSHOT_PADDING } else { 0 };
        // The members' configurations are fixed and valid and their
        // disks empty: a start that fails is a bug of the simulator's.
        HostedCluster::new(seed, cfg, LabApp { padding }).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl<A: App> HostedCluster<A> {
    /// A cluster of app `A` as `cfg` describes it, with no clients, faults
    /// or operator of the world's own (the test is all of them).
    pub fn new(seed: u64, cfg: HostedConfig, app: A) -> Result<HostedCluster<A>, String> {
        let cfg = HostedConfig {
            clients: 0,
            crashes: false,
            partitions: false,
            membership: false,
            ..cfg
        };
        let world = World::new(seed, cfg, app).map_err(|e| format!("seed {seed}: {e}"))?;
        Ok(HostedCluster {
            world,
            seed,
            rng: SplitMix64::new(seed ^ 0x6c61_6232),
            actors: Vec::new(),
            epochs: Vec::new(),
            wakes: BTreeMap::new(),
            seq: 0,
            routes: BTreeMap::new(),
            mail: BTreeMap::new(),
            hold_pump: false,
        })
    }

    /// The seed of the run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The network (links, faults, counters).
    pub fn network(&mut self) -> &mut crate::net::Network {
        &mut self.world.net
    }

    /// The fate of a message from `from` to `to` sent now, on the
    /// world's network with the test's PRNG: the times its copies arrive.
    pub fn route(&mut self, (from, to): (u64, u64), request: bool, bytes: u64) -> Vec<u64> {
        let now = self.world.now;
        self.world
            .net
            .route(&mut self.rng, now, (from, to), request, bytes)
    }

    /// Proposes `data` at server `i` through the host's request path
    /// (a follower forwards it to the leader it knows); the answer goes
    /// to actor `to`, if any. `None` if the server is down.
    pub fn propose(&mut self, i: usize, data: Bytes, to: Option<usize>) -> Option<u64> {
        let command = Some(data.clone());
        self.ask(i, to, false, command, |host, waiter| {
            host.propose(data, waiter)
        })
    }

    /// Asks server `i` for `n` linearizable read indexes together, and
    /// pumps its host once after them all, as the runtime does with the
    /// requests it drained from its queue at once; the answers go to
    /// actor `to`, if any. `None` if the server is down.
    pub fn read_burst(&mut self, i: usize, n: usize, to: Option<usize>) -> Option<Vec<u64>> {
        self.hold_pump = true;
        let asked: Option<Vec<u64>> = (0..n).map(|_| self.read(i, to)).collect();
        self.hold_pump = false;
        self.world.pump(i as u64 + 1);
        asked
    }

    /// Asks server `i` for a linearizable read index; the answer goes to
    /// actor `to`, if any. `None` if the server is down.
    pub fn read(&mut self, i: usize, to: Option<usize>) -> Option<u64> {
        self.ask(i, to, false, None, |host, waiter| host.read_index(waiter))
    }

    /// Proposes the membership change `cc` at server `i`; the answer goes
    /// to actor `to`, if any. `None` if the server is down.
    pub fn change_membership(
        &mut self,
        i: usize,
        cc: &flotilla_raft::ConfChange,
        to: Option<usize>,
    ) -> Option<u64> {
        let request = self.ask(i, to, true, None, |host, waiter| {
            host.change_membership(cc, waiter)
        })?;
        self.world.test_changes.insert(request, cc.clone());
        Some(request)
    }

    /// Makes a request of the test's at server `i` (a write of `command`,
    /// or a read or membership change): a waiter the world checks like a
    /// client's, handed to `make`, then a pump. `None` if the server is
    /// down.
    fn ask(
        &mut self,
        i: usize,
        to: Option<usize>,
        membership: bool,
        command: Option<Bytes>,
        make: impl FnOnce(&mut SimHost<A::Machine>, SimWaiter<Output<A>>),
    ) -> Option<u64> {
        let m = i as u64 + 1;
        self.world.member(m).host()?;
        self.world.charge_request(m);
        let request = self.world.next_request;
        self.world.next_request += 1;
        if let Some(actor) = to {
            self.routes.insert(request, actor);
        }
        let waiter = self.world.waiter(m, request, membership);
        if let Some(out) = self.world.out.get_mut(&request) {
            out.client = TEST;
            out.command = command;
        }
        make(self.world.member(m).host()?, waiter);
        if !self.hold_pump {
            self.world.pump(m);
        }
        Some(request)
    }

    /// The answers that reached actor `actor` (see [`HostedCluster::propose`]).
    pub fn take_mail(&mut self, actor: usize) -> Vec<TestAnswer<Output<A>>> {
        self.mail.remove(&actor).unwrap_or_default()
    }

    /// Whether answers wait for actor `actor` to take them.
    pub fn has_mail(&self, actor: usize) -> bool {
        self.mail.get(&actor).is_some_and(|m| !m.is_empty())
    }

    /// Runs `f` on server `i`'s machine, if the server is up.
    pub fn with_machine<R>(&self, i: usize, f: impl FnOnce(&A::Machine) -> R) -> Option<R> {
        let host = self.world.members.get(i)?.running()?;
        let chain = machine::lock_chain(host.machine());
        Some(f(&chain.inner))
    }

    /// Starts handing the leadership from server `i` to member `to`
    /// through the host (Raft's leader transfer: proposals wait
    /// meanwhile). `None` if the server is down.
    pub fn transfer_leader(
        &mut self,
        i: usize,
        to: NodeId,
    ) -> Option<Result<(), flotilla_raft::TransferError>> {
        let m = i as u64 + 1;
        let result = self.world.member(m).host()?.transfer_leader(to);
        self.world.pump(m);
        Some(result)
    }

    /// The members server `i` heard from within an election timeout, if it
    /// is up and leads.
    pub fn recently_active(&self, i: usize) -> Option<Vec<NodeId>> {
        self.world
            .members
            .get(i)?
            .running()?
            .raw()
            .recently_active()
    }

    /// What the world counted so far (reads answered and checked,
    /// writes acknowledged, crashes, ...).
    pub fn report(&self) -> &super::HostedReport {
        &self.world.report
    }

    /// The highest index applied anywhere (the committed log's length).
    pub fn committed(&self) -> LogIndex {
        let ledger = machine::lock(&self.world.ledger);
        ledger
            .entries
            .keys()
            .next_back()
            .copied()
            .unwrap_or_default()
    }

    /// Server `i`'s Raft status, if the server is up.
    pub fn status(&self, i: usize) -> Option<flotilla_raft::Status> {
        Some(self.world.members.get(i)?.running()?.raw().status())
    }

    /// The size of the largest snapshot any server built.
    pub fn snapshot_size(&self) -> u64 {
        self.world
            .snapshot_bytes
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// A server that believes it leads, if any (the highest term's).
    pub fn leader(&self) -> Option<usize> {
        (0..self.n())
            .filter_map(|i| Some((self.get_state(i)?, i)))
            .filter(|((_, leads), _)| *leads)
            .max_by_key(|((term, _), _)| *term)
            .map(|(_, i)| i)
    }

    /// The id the next [`HostedCluster::spawn`] returns.
    pub fn next_actor(&self) -> usize {
        self.actors.len()
    }

    /// Wakes actor `id` now (an answer reached it, say), replacing its
    /// pending wake-up: the actor tells again when it wants the next one.
    pub fn wake_actor(&mut self, id: usize) {
        if self.actors.get(id).is_some_and(Option::is_some) {
            self.schedule_actor(id, self.world.now);
        }
    }

    /// Hands the world's answers to the actors they go to.
    fn deliver_answers(&mut self) {
        for answer in std::mem::take(&mut self.world.test_answers) {
            let Some(actor) = self.routes.remove(&answer.0) else {
                continue;
            };
            self.mail.entry(actor).or_default().push(answer);
            self.wake_actor(actor);
        }
    }

    /// Makes the network (un)reliable.
    pub fn set_reliable(&mut self, reliable: bool) {
        self.world.net.cfg.reliable = reliable;
    }

    /// Turns the course's long reordering of responses on or off.
    pub fn set_long_reordering(&mut self, on: bool) {
        self.world.net.cfg.long_reordering = on;
    }

    /// Request messages sent so far (the course's RPC count).
    pub fn rpc_total(&self) -> u64 {
        self.world.net.counters.requests
    }

    /// Bytes sent so far, as the wire codec encodes the messages.
    pub fn bytes_total(&self) -> u64 {
        self.world.net.counters.bytes
    }

    /// Snapshot chunks sent to server `i` so far.
    pub fn snapshot_chunks_to(&self, i: usize) -> u64 {
        let id = i as u64 + 1;
        self.world.snapshot_chunks_to.get(&id).copied().unwrap_or(0)
    }

    /// Reconnects server `i` to everyone.
    pub fn connect(&mut self, i: usize) {
        self.world.net.rejoin(i as u64 + 1);
    }

    /// Crashes server `i` (if it runs) and restarts it from its WAL. It
    /// stays disconnected or connected as it was (the course's `start1`).
    pub fn restart(&mut self, i: usize) {
        let m = i as u64 + 1;
        self.world.crash_member(m);
        self.world.restart(m);
    }

    /// Whether server `i` is running.
    pub fn alive(&mut self, i: usize) -> bool {
        self.world.member(i as u64 + 1).host().is_some()
    }

    /// The largest persisted Raft state over all servers (the course's
    /// `LogSize`): the hard state and the entries the WAL holds past the
    /// snapshot, as the codec encodes them.
    pub fn log_size(&self) -> u64 {
        let sizes = self.world.members.iter().map(raft_state_bytes);
        sizes.max().unwrap_or(0)
    }

    /// Over all servers, the persisted Raft state ([`HostedCluster::log_size`]'s
    /// measure) plus the latest snapshot each built: what the course's
    /// sharded KV challenge 1 sums.
    pub fn state_bytes_total(&self) -> u64 {
        let logs = self.world.members.iter().map(raft_state_bytes);
        let snapshots = self.world.snapshot_bytes.values().copied();
        logs.chain(snapshots).fold(0, u64::saturating_add)
    }

    /// Starts an actor now; returns its id.
    pub fn spawn(&mut self, actor: HostedActor<A>) -> usize {
        self.actors.push(Some(actor));
        self.epochs.push(0);
        let id = self.actors.len() - 1;
        self.schedule_actor(id, self.world.now);
        id
    }

    /// Whether every spawned actor has finished.
    pub fn actors_done(&self) -> bool {
        self.actors.iter().all(Option::is_none)
    }

    fn schedule_actor(&mut self, id: usize, at: u64) {
        self.epochs[id] += 1;
        self.seq += 1;
        self.wakes.insert((at, self.seq), (id, self.epochs[id]));
    }

    /// When the next world event or actor wake-up is due.
    pub fn next_event_at(&self) -> Option<u64> {
        let actor = self.wakes.first_key_value().map(|(&(at, _), _)| at);
        match (self.world.next_at(), actor) {
            (Some(w), Some(a)) => Some(w.min(a)),
            (w, a) => w.or(a),
        }
    }

    fn wake(&mut self) {
        let Some((&(at, seq), &(id, epoch))) = self.wakes.first_key_value() else {
            return;
        };
        self.wakes.remove(&(at, seq));
        self.world.now = self.world.now.max(at);
        if self.epochs[id] != epoch {
            return;
        }
        let Some(mut actor) = self.actors[id].take() else {
            return;
        };
        match actor.wake(self) {
            Ok(Some(at)) => {
                self.actors[id] = Some(actor);
                let at = at.max(self.world.now);
                self.schedule_actor(id, at);
            }
            Ok(None) => {}
            Err(f) => {
                let what = format!("actor {id}: {f}");
                self.world.failure.get_or_insert(what);
            }
        }
    }
}

impl<A: App> Tester for HostedCluster<A> {
    /// Every member, the spares (started outside the configuration)
    /// after the voters.
    fn n(&self) -> usize {
        self.world.hosts() as usize
    }

    fn now(&self) -> u64 {
        self.world.now
    }

    fn test_rng(&mut self) -> &mut SplitMix64 {
        &mut self.rng
    }

    fn fail(&self, what: impl Into<String>) -> Failure {
        Failure {
            seed: self.seed,
            at_ns: self.world.now,
            what: what.into(),
        }
    }

    fn next_event_at(&self) -> Option<u64> {
        HostedCluster::next_event_at(self)
    }

    fn run_until(&mut self, t: u64) -> Result<(), Failure> {
        loop {
            self.deliver_answers();
            if let Some(what) = self.world.failure.take() {
                return Err(self.fail(what));
            }
            let actor = self.wakes.first_key_value().map(|(&(at, _), _)| at);
            match (self.world.next_at().filter(|&w| w <= t), actor) {
                (Some(w), a) if a.is_none_or(|a| w <= a) => self.world.step_event(),
                (_, Some(a)) if a <= t => self.wake(),
                _ => break,
            }
        }
        self.world.now = self.world.now.max(t);
        Ok(())
    }

    fn connected(&self, i: usize) -> bool {
        !self.world.net.is_isolated(i as u64 + 1)
    }

    fn disconnect(&mut self, i: usize) {
        self.world.net.isolate(i as u64 + 1);
    }

    fn crash(&mut self, i: usize) {
        self.world.crash_member(i as u64 + 1);
    }

    fn get_state(&self, i: usize) -> Option<(Term, bool)> {
        let host = self.world.members[i].running()?;
        let status = host.raw().status();
        Some((status.term, status.role == Role::Leader))
    }

    fn applied(&self, i: usize) -> LogIndex {
        self.world.members[i].applied
    }

    /// The lab's commands are never empty; a no-op's data is.
    fn command_at(&self, index: LogIndex) -> Option<Bytes> {
        let ledger = machine::lock(&self.world.ledger);
        let (_, data, _) = ledger.entries.get(&index)?;
        (!data.is_empty()).then(|| data.clone())
    }

    /// Through the host's request path: the proposal is batched and
    /// proposed at the host's next pump (now), so the leader's log grows
    /// by exactly this entry; the host answers it once it is applied.
    fn start(&mut self, i: usize, cmd: Bytes) -> Option<(LogIndex, Term)> {
        let m = i as u64 + 1;
        let (before, term) = {
            let status = self.world.member(m).host()?.raw().status();
            if status.role != Role::Leader {
                return None;
            }
            (status.last_index, status.term)
        };
        self.propose(i, cmd, None)?;
        let status = self.world.member(m).host()?.raw().status();
        let placed = status.role == Role::Leader && status.term == term;
        if placed && status.last_index == before.next() {
            return Some((status.last_index, term));
        }
        let what = format!(
            "member {m} led term {term} with its log at {before}; after a proposal it is {:?} in term {} at {}",
            status.role, status.term, status.last_index
        );
        self.world.failure.get_or_insert(what);
        None
    }
}

/// A member's hard state and the entries its WAL holds past the
/// snapshot, as the codec encodes them; a log it cannot read back counts
/// as too large.
fn raft_state_bytes<M: StateMachine>(m: &super::member::Member<M>) -> u64 {
    let storage = m.storage();
    let mut buf = Vec::new();
    storage.hard_state().encode(&mut buf);
    let (first, last) = (storage.first_index(), storage.last_index());
    match storage.entries(first, last.next()) {
        Ok(entries) => entries.iter().for_each(|e| e.encode(&mut buf)),
        Err(_) => return u64::MAX,
    }
    buf.len() as u64
}

/// The Raft tests' application: nothing but the chain's checks, and
/// snapshots padded to `padding` bytes.
pub struct LabApp {
    padding: usize,
}

impl LabApp {
    /// The app whose snapshots carry `padding` bytes.
    pub fn new(padding: usize) -> LabApp {
        LabApp { padding }
    }
}

impl App for LabApp {
    type Machine = Padded;

    fn machine(&mut self, _member: u64, _voters: &[NodeId]) -> Padded {
        Padded::new(self.padding)
    }

    /// The lab has no clients of the world's (the test proposes through
    /// [`Tester::start`]); were one configured, it would write.
    fn next(&mut self, _rng: &mut SplitMix64, c: u64, now: u64) -> Request {
        Request::Write(Bytes::from(format!("c{c}-{now}")))
    }

    fn written(&mut self, _c: u64, _output: &(), _now: u64) -> Result<(), String> {
        Ok(())
    }

    fn read(&mut self, _c: u64, _machine: &Padded, _now: u64) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_round_trips_and_anything_else_is_refused() {
        let mut m = Padded::new(600);
        let data = m.snapshot();
        assert_eq!(data.len(), 600);
        assert!(m.restore(&data).is_ok());
        assert!(m.restore(&Bytes::from_static(b"x")).is_err());
        assert!(m.restore(&Bytes::from(vec![0; 600])).is_err());
    }

    #[test]
    fn a_leader_is_elected_and_a_command_is_applied_everywhere() {
        let mut c = HostedCluster::lab(3, 1, true, false);
        let leader = c.check_one_leader().unwrap();
        let x = crate::lab::cmd(7);
        let index = c.one(x.clone(), 3, false).unwrap();
        assert_eq!(c.n_committed(index), (3, Some(x)));
        assert!(c.get_state(leader).is_some());
        assert!(c.rpc_total() > 0 && c.bytes_total() > 0);
    }

    /// An actor that only receives mail.
    struct Mailbox;

    impl Actor<HostedCluster> for Mailbox {
        fn wake(&mut self, _c: &mut HostedCluster) -> Result<Option<u64>, Failure> {
            Ok(None)
        }
    }

    #[test]
    fn a_test_s_requests_are_answered_to_the_actor_that_made_them() {
        use super::super::world::Answered;
        let mut c = HostedCluster::lab(3, 3, true, false);
        let leader = c.check_one_leader().unwrap();
        let mailbox = c.spawn(Box::new(Mailbox));
        let follower = (leader + 1) % 3;
        let wrote = c
            .propose(follower, crate::lab::cmd(5), Some(mailbox))
            .unwrap();
        let read = c.read(follower, Some(mailbox)).unwrap();
        let removed = (leader + 2) % 3;
        let cc = flotilla_raft::ConfChange::new(vec![flotilla_raft::ConfChangeOp::Remove(NodeId(
            removed as u64 + 1,
        ))]);
        let changed = c.change_membership(leader, &cc, Some(mailbox)).unwrap();
        c.run_for(1000 * crate::net::MS).unwrap();
        let mail = c.take_mail(mailbox);
        let answer = |r| mail.iter().find(|(request, _, _)| *request == r);
        let Some((_, m, Ok(Answered::Written(index, ())))) = answer(wrote) else {
            panic!("the write through a follower: {mail:?}");
        };
        assert_eq!(*m as usize, follower + 1, "answered where it was asked");
        assert_eq!(c.command_at(*index), Some(crate::lab::cmd(5)));
        assert!(matches!(answer(read), Some((_, _, Ok(Answered::Read(_))))));
        let Some((_, _, Ok(Answered::Changed(at)))) = answer(changed) else {
            panic!("the membership change: {mail:?}");
        };
        let status = c.status(leader).unwrap();
        assert!(status.conf_state.voters.len() == 2 && status.commit >= *at);
        assert!(c.take_mail(mailbox).is_empty(), "each answer once");
    }

    #[test]
    fn the_lab_has_the_course_s_network_and_snapshots_only_when_asked() {
        for reliable in [true, false] {
            let mut c = HostedCluster::lab(3, 4, reliable, false);
            assert_eq!(c.seed(), 4);
            let net = &c.network().cfg;
            assert_eq!((net.duplicate_per_mille, net.base_delay_ns), (0, 0));
            assert!(!net.long_reordering);
            for x in 0..30 {
                c.one(crate::lab::cmd(x), 3, true).unwrap();
            }
            let dropped = c.network().counters.dropped;
            assert_eq!(dropped == 0, reliable, "{dropped} messages lost");
            assert_eq!(c.snapshot_size(), 0, "no snapshot without snapshot mode");
        }
        let mut c = HostedCluster::lab(3, 4, true, true);
        for x in 0..30 {
            c.one(crate::lab::cmd(x), 3, true).unwrap();
        }
        // The chain's header and the 600 bytes of padding.
        assert!(c.snapshot_size() > 600, "{}", c.snapshot_size());
    }

    #[test]
    fn a_follower_does_not_start_a_command() {
        let mut c = HostedCluster::lab(3, 2, true, false);
        let leader = c.check_one_leader().unwrap();
        let follower = (leader + 1) % 3;
        assert_eq!(c.start(follower, crate::lab::cmd(1)), None);
        let (index, _) = c.start(leader, crate::lab::cmd(1)).unwrap();
        assert!(index > LogIndex(0));
    }
}

//! The hosted simulation's world: the event queue on virtual time, the
//! members, the network, the clients, and the checks made on every
//! answer (see the module docs of [`super`]).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flotilla_host::{Action, Pump, SnapshotTask};
use flotilla_raft::message::MessageBody;
use flotilla_raft::rng::SplitMix64;
use flotilla_raft::{Decode, Encode, LogIndex, Message, NodeId, Role};

use super::admin::Admin;
use super::app::{App, Bare};
use super::config::HostedConfig;
use super::machine::{self, Ledger};
use super::member::{Inbox, Life, Member, open_group, raft_config, start_error};
use super::quorum::CommitWatch;
use super::safety::Safety;
use crate::invariants::election_safety::ElectionSafety;
use crate::net::{MS, NetConfig, Network};

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostedReport {
    /// Entries committed (the ledger's length).
    pub commits: u64,
    /// Writes acknowledged to clients.
    pub acked_writes: u64,
    /// Linearizable reads answered.
    pub reads: u64,
    /// Crashes.
    pub crashes: u64,
    /// Snapshot jobs that finished (used or not).
    pub snapshot_jobs: u64,
    /// Writes acknowledged after the faults stopped.
    pub acked_after_faults: u64,
    /// Membership changes answered `Ok`.
    pub membership_changes: u64,
    /// Members that applied their own removal and shut down.
    pub removals: u64,
    /// Durable log entries checked for log matching.
    pub entries_matched: u64,
    /// New leaders checked for completeness.
    pub leaders_checked: u64,
    /// Commit decisions checked for durability on a quorum.
    pub commits_checked: u64,
    /// Leadership transfers started.
    pub transfers: u64,
    /// Events processed.
    pub events: u64,
    /// Virtual time simulated, ns.
    pub virtual_ns: u64,
}

impl HostedReport {
    /// Adds another run's figures to these (a sweep's totals).
    pub fn add(&mut self, other: &HostedReport) {
        self.commits += other.commits;
        self.acked_writes += other.acked_writes;
        self.reads += other.reads;
        self.crashes += other.crashes;
        self.snapshot_jobs += other.snapshot_jobs;
        self.acked_after_faults += other.acked_after_faults;
        self.membership_changes += other.membership_changes;
        self.removals += other.removals;
        self.entries_matched += other.entries_matched;
        self.leaders_checked += other.leaders_checked;
        self.commits_checked += other.commits_checked;
        self.transfers += other.transfers;
        self.events += other.events;
        self.virtual_ns += other.virtual_ns;
    }
}

pub(crate) enum Event {
    Tick(u64, u64),
    Deliver(Message),
    /// A message of this many bytes reached its member, which handles it
    /// once its processor has served it (`service.rs`; only with a
    /// service model).
    Arrive(Message, u64),
    SyncDone(u64, u64, flotilla_wal::Lsn),
    SnapshotDone(u64, u64, SnapshotTask),
    /// A client's turn; ignored unless the token is the client's latest.
    Client(u64, u64),
    Fault,
    Restart(u64),
    /// The operator's turn; ignored unless the token is its latest.
    Admin(u64),
}

/// The client of a request a test made itself (through
/// [`super::HostedCluster`]): its answer goes to the test.
pub(crate) const TEST: u64 = u64::MAX - 1;

/// What a host answered a test's request, once the world checked it.
#[derive(Debug)]
pub enum Answered<O> {
    /// A proposal was applied at this index, with the machine's output.
    Written(LogIndex, O),
    /// A read index, applied at the member that answered.
    Read(LogIndex),
    /// A membership change took effect at this index.
    Changed(LogIndex),
}

/// A test's request answered: the request, the member that answered,
/// and the answer.
pub type TestAnswer<O> = (u64, u64, Result<Answered<O>, flotilla_host::NodeError>);

/// A request a client has out.
pub(crate) struct Out {
    pub(crate) client: u64,
    /// The command, for a write; `None` for a read.
    pub(crate) command: Option<Bytes>,
    /// The highest index acknowledged to any client or applied anywhere
    /// when it began: a read's index may not be below it.
    pub(crate) acked_floor: LogIndex,
    pub(crate) gave_up: Rc<RefCell<bool>>,
}

pub(crate) struct Client {
    pub(crate) target: u64,
    /// The token of the client's latest scheduled turn.
    pub(crate) token: u64,
    /// The request out, with its deadline.
    pub(crate) pending: Option<(u64, u64)>,
}

/// The machine's output of app `A`.
pub type Output<A> = <<A as App>::Machine as flotilla_host::StateMachine>::Output;

pub(crate) struct World<A: App> {
    pub(crate) app: A,
    pub(crate) cfg: HostedConfig,
    pub(crate) rng: SplitMix64,
    pub(crate) now: u64,
    next_seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Event>,
    /// Member `id` at `id - 1`: the voters, then the spares.
    pub(crate) members: Vec<Member<A::Machine>>,
    pub(crate) net: Network,
    pub(crate) ledger: Arc<Mutex<Ledger>>,
    pub(crate) inbox: Inbox<Output<A>>,
    pub(crate) clients: Vec<Client>,
    pub(crate) out: BTreeMap<u64, Out>,
    pub(crate) next_request: u64,
    pub(crate) acked_max: LogIndex,
    pub(crate) faults_end: u64,
    /// The highest index acknowledged to a client by halfway through the
    /// time without faults: every member of the final configuration must
    /// have applied it by the end.
    pub(crate) settled: Option<LogIndex>,
    pub(crate) commits: CommitWatch,
    pub(crate) admin: Admin,
    pub(crate) report: HostedReport,
    /// One leader per term, over the run (§5.2).
    election: ElectionSafety,
    /// The other properties checked after every event (`safety.rs`).
    pub(crate) safety: Safety,
    /// Snapshot chunks sent to each member.
    pub(crate) snapshot_chunks_to: BTreeMap<u64, u64>,
    /// The size of the last snapshot each member built.
    pub(crate) snapshot_bytes: BTreeMap<u64, u64>,
    /// Answers to the test's own requests, until it takes them.
    pub(crate) test_answers: Vec<TestAnswer<Output<A>>>,
    /// The test's membership changes out, by request.
    pub(crate) test_changes: BTreeMap<u64, flotilla_raft::ConfChange>,
    pub(crate) failure: Option<String>,
    /// The trace, when the run keeps one.
    pub(crate) trace: Option<Vec<String>>,
}

/// Runs one seed of the [`Bare`] app; `Err` names the first rule broken,
/// with the time.
pub fn run(seed: u64, cfg: &HostedConfig) -> Result<HostedReport, String> {
    run_app(seed, cfg, Bare::default()).map(|(report, _)| report)
}

/// Runs one seed of `app`; returns the app with the report, for its own
/// figures. `Err` names the first rule broken, with the time.
pub fn run_app<A: App>(seed: u64, cfg: &HostedConfig, app: A) -> Result<(HostedReport, A), String> {
    let mut w = World::new(seed, cfg.clone(), app)?;
    if let Err(f) = w.run_to_end() {
        w.print_trace();
        return Err(format!("seed {seed}: {f}"));
    }
    Ok((w.report, w.app))
}

impl<A: App> World<A> {
    pub(crate) fn new(seed: u64, cfg: HostedConfig, mut app: A) -> Result<World<A>, String> {
        let mut rng = SplitMix64::new(seed);
        let ledger = Arc::new(Mutex::new(Ledger::new(cfg.members)));
        let mut members = Vec::new();
        for id in 1..=cfg.members + cfg.spares {
            let fs = flotilla_wal::MemFs::new();
            let storage = open_group(&fs).map_err(|e| start_error(id, &e))?;
            let raft = member_config(&cfg, id, rng.next_u64());
            let app_machine = app.machine(id, &voters(cfg.members));
            let compaction = cfg.compaction();
            let host = super::member::start_host(raft, compaction, storage, &ledger, app_machine)
                .map_err(|e| start_error(id, &e))?;
            let life = Life::Up(Box::new(host));
            members.push(Member {
                id,
                fs,
                life,
                incarnation: 0,
                syncing: false,
                table: None,
                heard: BTreeSet::new(),
                applied: LogIndex(0),
            });
        }
        let net = network(&cfg);
        let clients = (0..cfg.clients)
            .map(|c| Client {
                target: 1 + c % cfg.members,
                token: 0,
                pending: None,
            })
            .collect();
        let mut w = World {
            app,
            faults_end: cfg.duration_ns,
            settled: None,
            cfg,
            rng,
            now: 0,
            next_seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            members,
            net,
            ledger,
            inbox: Rc::new(RefCell::new(Vec::new())),
            clients,
            out: BTreeMap::new(),
            next_request: 1,
            acked_max: LogIndex(0),
            commits: CommitWatch::default(),
            admin: Admin {
                target: 1,
                ..Admin::default()
            },
            report: HostedReport::default(),
            election: ElectionSafety::default(),
            safety: Safety::default(),
            snapshot_chunks_to: BTreeMap::new(),
            snapshot_bytes: BTreeMap::new(),
            test_answers: Vec::new(),
            test_changes: BTreeMap::new(),
            failure: None,
            trace: None,
        };
        w.trace = w.cfg.trace.then(Vec::new);
        w.start();
        Ok(w)
    }

    fn start(&mut self) {
        for m in 1..=self.hosts() {
            let first = self.rng.range(0, 10 * MS);
            self.schedule(first, Event::Tick(m, 0));
            self.pump(m);
        }
        for c in 0..self.cfg.clients {
            let first = self.rng.range(50 * MS, 100 * MS);
            self.wake(c, first);
        }
        if self.cfg.crashes || self.cfg.partitions || self.cfg.transfers {
            let first = self.rng.range(200 * MS, 600 * MS);
            self.schedule(first, Event::Fault);
        }
        if self.cfg.membership {
            let first = self.rng.range(100 * MS, 400 * MS);
            self.admin_wake(first);
        }
    }

    /// Runs every event of the faults and the calm after them, then
    /// checks that the group recovered.
    fn run_to_end(&mut self) -> Result<(), String> {
        let calm = self.cfg.liveness_ns.unwrap_or(self.cfg.duration_ns);
        let end = self.cfg.duration_ns + calm;
        while self.next_at().is_some_and(|at| at <= end) && self.failure.is_none() {
            self.step_event();
        }
        if self.failure.is_none()
            && let Err(f) = self.app.finish()
        {
            self.fail(f);
        }
        if let Some(f) = self.failure.take() {
            return Err(f);
        }
        self.report.commits = machine::lock(&self.ledger).entries.len() as u64;
        self.report.virtual_ns = self.now;
        if self.report.acked_after_faults == 0 {
            return Err(format!(
                "no write was acknowledged in the {} ms after the faults stopped; {}",
                calm / MS,
                self.describe()
            ));
        }
        self.final_configuration()
            .map_err(|f| format!("at the end: {f}; {}", self.describe()))
    }

    /// When the next event is due, if one is.
    pub(crate) fn next_at(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse((at, _))| *at)
    }

    /// Runs the next event (virtual time moves to it), then checks what
    /// the machines recorded.
    pub(crate) fn step_event(&mut self) {
        let Some(Reverse((at, seq))) = self.queue.pop() else {
            return;
        };
        self.now = at;
        self.report.events += 1;
        self.note_settled();
        if let Some(event) = self.events.remove(&seq) {
            self.trace_event(&event);
            self.handle(event);
        }
        self.check_ledger();
    }

    /// The core's settings for member `m`'s next incarnation.
    pub(crate) fn raft_config(&mut self, m: u64) -> flotilla_raft::Config {
        let seed = self.rng.next_u64();
        member_config(&self.cfg, m, seed)
    }

    /// Every member, voters and spares.
    pub(crate) fn hosts(&self) -> u64 {
        self.cfg.members + self.cfg.spares
    }

    pub(crate) fn schedule(&mut self, after: u64, event: Event) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.insert(seq, event);
        self.queue.push(Reverse((self.now + after, seq)));
    }

    /// Schedules client `c`'s next turn, which replaces any earlier one.
    pub(crate) fn wake(&mut self, c: u64, after: u64) {
        let client = &mut self.clients[c as usize];
        client.token += 1;
        let token = client.token;
        self.schedule(after, Event::Client(c, token));
    }

    pub(crate) fn fail(&mut self, what: String) {
        let at = self.now / MS;
        self.failure.get_or_insert(format!("at {at} ms: {what}"));
    }

    pub(crate) fn member(&mut self, id: u64) -> &mut Member<A::Machine> {
        &mut self.members[(id - 1) as usize]
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick(m, inc) => self.tick(m, inc),
            Event::Deliver(msg) => self.deliver(msg),
            Event::Arrive(msg, bytes) => self.arrive(msg, bytes),
            Event::SyncDone(m, inc, lsn) => self.sync_done(m, inc, lsn),
            Event::SnapshotDone(m, inc, task) => self.snapshot_done(m, inc, task),
            Event::Client(c, token) => {
                if self.clients[c as usize].token == token {
                    self.client_step(c);
                }
            }
            Event::Fault => self.fault(),
            Event::Restart(m) => self.restart(m),
            Event::Admin(token) => {
                if self.admin.token == token {
                    self.admin_step();
                }
            }
        }
    }

    fn tick(&mut self, m: u64, inc: u64) {
        let member = self.member(m);
        if member.incarnation != inc {
            return;
        }
        if let Some(host) = member.host() {
            host.tick();
            self.pump(m);
        }
        if !matches!(self.member(m).life, Life::Removed(_)) {
            self.schedule(10 * MS, Event::Tick(m, inc));
        }
    }

    fn deliver(&mut self, msg: Message) {
        let (from, to) = (msg.from.get(), msg.to.get());
        if !self.net.link_up(from, to) || to == 0 || to > self.hosts() {
            return;
        }
        // The transport refuses a removed member's messages.
        let refused = self.member(to).table.as_ref();
        if refused.is_some_and(|t| t.removed.contains(&msg.from)) {
            return;
        }
        self.member(to).heard.insert(msg.from);
        let Some(host) = self.member(to).host() else {
            return;
        };
        // An honest peer's message is never refused.
        if let Err((e, _)) = host.step(msg) {
            self.fail(format!("member {to} refused a message from {from}: {e}"));
            return;
        }
        self.pump(to);
    }

    /// Takes member `m`'s processor for a client request entering it, if
    /// it is up (service model only).
    pub(crate) fn charge_request(&self, m: u64) {
        let up = self.members[(m - 1) as usize].running().is_some();
        if let Some(service) = self.cfg.service.as_ref().filter(|_| up) {
            service.request(m, self.now);
        }
    }

    /// Queues `msg` at its member's processor (service model only).
    fn arrive(&mut self, msg: Message, bytes: u64) {
        let Some(service) = &self.cfg.service else {
            return self.deliver(msg);
        };
        let handled = service.receive(msg.to.get(), self.now, bytes);
        self.schedule(handled - self.now, Event::Deliver(msg));
    }

    fn sync_done(&mut self, m: u64, inc: u64, lsn: flotilla_wal::Lsn) {
        let member = self.member(m);
        if member.incarnation != inc {
            return;
        }
        member.syncing = false;
        let Some(host) = member.host() else { return };
        if let Err(e) = host.wal().sync_to(lsn) {
            self.fail(format!("member {m}: sync failed: {e}"));
            return;
        }
        host.synced();
        self.pump(m);
    }

    fn snapshot_done(&mut self, m: u64, inc: u64, task: SnapshotTask) {
        let member = self.member(m);
        if member.incarnation != inc {
            return;
        }
        let Some(host) = member.host() else { return };
        let index = task.index;
        let data = task.run(&host.wal());
        self.snapshot_bytes.insert(m, data.len() as u64);
        let Some(host) = self.member(m).host() else {
            return;
        };
        host.snapshot_built(index, Some(data));
        self.report.snapshot_jobs += 1;
        self.pump(m);
    }

    /// Runs member `m`'s host until quiet and carries out its actions.
    pub(crate) fn pump(&mut self, m: u64) {
        let Some(host) = self.member(m).host() else {
            return;
        };
        let mut pumped = host.pump();
        while let Ok(Pump::SyncNow(lsn)) = pumped {
            pumped = match host.wal().sync_to(lsn) {
                Ok(_) => host.resume().and_then(|()| host.pump()),
                Err(e) => Err(e.into()),
            };
        }
        let actions = host.take_actions();
        if let Err(e) = pumped {
            self.fail(format!("member {m} stopped: {e}"));
            return;
        }
        for action in actions {
            self.execute(m, action);
        }
        if let Some(status) = self.observe_commit(m) {
            self.check_member(m, &status);
        }
        self.answers();
        if let Some(chain) = self.member(m).machine() {
            let chain = machine::lock_chain(&chain);
            let was =
                std::mem::replace(&mut self.members[(m - 1) as usize].applied, chain.applied());
            if let Some(service) = &self.cfg.service {
                service.applied(m, self.now, chain.applied().0.saturating_sub(was.0));
            }
            if let Err(f) = self.app.pumped(m, &chain.inner, self.now) {
                drop(chain);
                self.fail(f);
            }
        }
        match self.member(m).retire_if_removed() {
            Ok(true) => self.report.removals += 1,
            Ok(false) => {}
            Err(e) => self.fail(e),
        }
    }

    /// Notes member `m`'s commit index (see [`quorum`]): it never goes
    /// back within an incarnation, and a leader that passes every commit
    /// seen decided it (checked in `safety.rs`); checks that its core's
    /// configuration is the ledger's at that index. Returns the core's
    /// status, if the member is up.
    fn observe_commit(&mut self, m: u64) -> Option<flotilla_raft::Status> {
        let host = self.member(m).host()?;
        let status = host.raw().status();
        let decided = host.raw().term_at(status.commit);
        let (was, max) = (self.commits.seen(m), self.commits.max());
        if status.commit < was {
            let what = format!(
                "monotonic commit violated: member {m} commit went from {was} to {}",
                status.commit
            );
            self.fail(what);
        }
        self.commits.observe(m, status.commit);
        if let Some(term) = decided.filter(|_| status.role == Role::Leader && status.commit > max) {
            self.decided(m, status.commit, term);
        }
        if status.role == Role::Leader
            && let Err(v) = self.election.observe_leader(status.term, status.id)
        {
            self.fail(v.to_string());
            return Some(status);
        }
        self.check_core_conf(m, &status);
        Some(status)
    }

    /// Member `m`'s core has the configuration the ledger gives at its
    /// commit index (once the ledger knows it).
    fn check_core_conf(&mut self, m: u64, status: &flotilla_raft::Status) {
        let ledger = machine::lock(&self.ledger);
        if status.commit > ledger.last_known() {
            return;
        }
        let expected = ledger.conf_at(status.commit);
        if &status.conf_state != expected {
            let what = format!(
                "member {m}'s core has configuration {:?} at commit {}, the log's is {expected:?}",
                status.conf_state, status.commit
            );
            drop(ledger);
            self.fail(what);
        }
    }

    fn execute(&mut self, m: u64, action: Action) {
        let inc = self.member(m).incarnation;
        match action {
            Action::Send(messages) => {
                for msg in messages {
                    self.send(msg);
                }
            }
            Action::SetPeers(table) => self.member(m).table = Some(table),
            Action::Sync(lsn) => {
                if std::mem::replace(&mut self.member(m).syncing, true) {
                    self.fail(format!("member {m}: a second sync while one runs"));
                }
                let took = self.rng.range(50_000, 4 * MS);
                self.schedule(took, Event::SyncDone(m, inc, lsn));
            }
            Action::Snapshot(task) => {
                let took = self.rng.range(0, 40 * MS);
                self.schedule(took, Event::SnapshotDone(m, inc, task));
            }
        }
    }

    fn send(&mut self, msg: Message) {
        let link = (msg.from.get(), msg.to.get());
        let callers = self.cfg.links_to_callers;
        if !self.member(link.0).reaches(msg.to, callers) {
            return;
        }
        // Every message crosses the wire codec, as the transport's do.
        self.safety.sent(link.0, &msg);
        let bytes = msg.to_bytes();
        match Message::from_bytes(&bytes) {
            Ok(copy) if copy == msg => {}
            other => return self.fail(format!("{msg} decoded as {other:?}")),
        }
        if matches!(msg.body, MessageBody::Snapshot(_)) {
            *self.snapshot_chunks_to.entry(link.1).or_insert(0) += 1;
        }
        let (request, size) = (msg.body.is_request(), bytes.len() as u64);
        let arrivals = self.net.route(&mut self.rng, self.now, link, request, size);
        for at in arrivals {
            let after = at.saturating_sub(self.now);
            let event = match self.cfg.service {
                Some(_) => Event::Arrive(msg.clone(), size),
                None => Event::Deliver(msg.clone()),
            };
            self.schedule(after, event);
        }
    }

    /// Liveness in the configuration the changes left: it is not joint
    /// (the leader left it), and every member of it is up and has the
    /// same configuration in its core.
    fn final_configuration(&mut self) -> Result<(), String> {
        let last = {
            let ledger = machine::lock(&self.ledger);
            ledger.conf_at(ledger.last_known()).clone()
        };
        if last.is_joint() {
            return Err(format!("still in the joint configuration {last:?}"));
        }
        let settled = self.settled.unwrap_or_default();
        for id in last.members() {
            let member = self.member(id.get());
            let applied = member.applied;
            let theirs = member.host().map(|h| h.raw().status().conf_state);
            if theirs.as_ref() != Some(&last) {
                return Err(format!(
                    "member {id} has configuration {theirs:?}, the log's last is {last:?}"
                ));
            }
            if applied < settled {
                return Err(format!(
                    "member {id} applied up to {applied}, not the write at {settled} acknowledged long before"
                ));
            }
        }
        Ok(())
    }

    /// Notes what was acknowledged halfway through the time without
    /// faults (see `settled`).
    fn note_settled(&mut self) {
        let calm = self.cfg.liveness_ns.unwrap_or(self.cfg.duration_ns);
        if self.settled.is_none() && self.now >= self.faults_end + calm / 2 {
            self.settled = Some(self.acked_max);
        }
    }

    /// Every member's state, for a liveness failure's message.
    fn describe(&mut self) -> String {
        let mut out = Vec::new();
        for m in &self.members {
            let state = match &m.life {
                Life::Up(h) => {
                    let s = h.raw().status();
                    format!(
                        "{:?} term {} leader {:?} commit {} applied {} last {} conf {:?}",
                        s.role, s.term, s.leader, s.commit, s.applied, s.last_index, s.conf_state
                    )
                }
                Life::Down(_) => "down".to_string(),
                Life::Removed(_) => "removed".to_string(),
            };
            let table = m
                .table
                .as_ref()
                .map(|t| (t.addrs.keys().collect::<Vec<_>>(), &t.removed));
            out.push(format!("member {}: {state}, table {table:?}", m.id));
        }
        out.join("; ")
    }

    fn check_ledger(&mut self) {
        self.check_decided();
        let violation = machine::lock(&self.ledger).violation.take();
        if let Some(v) = violation.or_else(|| self.app.violation()) {
            self.fail(v);
        }
    }
}

/// The network of a run configured as `cfg`: its own, or the randomized
/// runs' (the course's loss and delays, 2 % duplicates, 0.5 ms latency).
fn network(cfg: &HostedConfig) -> Network {
    Network::new(cfg.net.clone().unwrap_or(NetConfig {
        reliable: !cfg.unreliable,
        duplicate_per_mille: 20,
        base_delay_ns: MS / 2,
        ..NetConfig::default()
    }))
}

/// The core's settings for member `id` of a run configured as `cfg`, with
/// `seed` for its randomness.
fn member_config(cfg: &HostedConfig, id: u64, seed: u64) -> flotilla_raft::Config {
    let Some(template) = &cfg.raft else {
        return raft_config(id, cfg.members, seed);
    };
    let mut raft = template.clone();
    raft.id = NodeId(id);
    raft.voters = voters(cfg.members);
    raft.seed = seed;
    raft
}

/// The bootstrap voters of a group of `members`.
pub(crate) fn voters(members: u64) -> Vec<NodeId> {
    (1..=members).map(NodeId).collect()
}

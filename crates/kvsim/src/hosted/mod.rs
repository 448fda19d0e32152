//! etcd's KV machine on the production host, on the simulator: the
//! hosted world of `flotilla_sim::hosted` (the real host, the real WAL on
//! the in-memory disk, crashes, partitions, an unreliable network,
//! forwarding through followers, snapshot jobs) runs
//! [`flotilla_host::kv_app::KvMachine`], the machine every server runs,
//! and its clients speak the requests the session service proposes.
//!
//! - Writes: each client is a session (`flotilla.kv.v1.Kv`'s), numbering
//!   its writes from 1; a command is encoded as `Core::write_session`
//!   encodes it (stamped with the proposer's clock, the replicated clock
//!   sessions expire on) and proposed at the member the client talks to.
//!   After an error or a deadline the client sends the same write (same
//!   session and number, a new stamp) again, maybe elsewhere, as a client
//!   retries an RPC: the session table must apply it once.
//! - Sessions expire on the replicated clock (a short TTL here), and a
//!   write of an expired session is answered `SessionExpired`: its
//!   outcome stays unknown in the history, and the client opens a new
//!   session. A session's first write is a registration on a key of its
//!   own, outside the history: the session table's one open case (a first
//!   write applied, its answer lost, and the client silent past the TTL,
//!   see `flotilla_kv::session`) then applies only that write twice.
//! - Reads: a linearizable get asks the member for a read index and reads
//!   the member's machine once it applied it, as etcd's Range does.
//! - Every answer goes into a history checked for linearizability at the
//!   end (`flotilla_linearize`, the KV model); the world's own checks
//!   (durable on a quorum, same log everywhere) hold as for any app.
//! - The watch publication and watchers across restarts: [`watch`].
//! - Membership: the operator's changes carry the added members'
//!   addresses as etcd's member add writes them, and the machine's member
//!   table (`flotilla_host::kv_app::members`, what `MemberList` answers
//!   and the transport dials) is checked against the configuration after
//!   every change and restore (the chain's check).

pub mod watch;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flotilla_host::kv_app::members::encode_context;
use flotilla_host::kv_app::{KvMachine, KvOutput};
use flotilla_kv::{
    Command, Compare, Op, Outcome, ReadConsistency, Request as KvRequest, SessionLimits, Txn,
};
use flotilla_linearize::{Kv, KvInput, KvOutput as ModelOutput, Limits, OpId, Recorder, Verdict};
use flotilla_raft::rng::SplitMix64;
use flotilla_raft::{ConfChange, ConfChangeOp, NodeId};
use flotilla_sim::MS;
use flotilla_sim::hosted::{App, HostedConfig, HostedReport, Request};

use crate::client::{model_input, model_output};
use watch::{Published, Publisher, Watcher};

/// How the KV side of a hosted run goes.
#[derive(Clone, Debug)]
pub struct KvHostedConfig {
    /// Keys the clients share (`k0`, `k1`, ...).
    pub keys: u64,
    /// Idle time on the replicated clock after which a session expires.
    pub session_ttl_ms: u64,
    /// Watchers, following members 1, 2, ... in turn.
    pub watchers: u64,
    /// The wall-clock budget of the linearizability check.
    pub check_timeout: Duration,
}

impl Default for KvHostedConfig {
    fn default() -> Self {
        KvHostedConfig {
            keys: 5,
            session_ttl_ms: 300,
            watchers: 2,
            check_timeout: Duration::from_secs(20),
        }
    }
}

/// What the KV side of a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvHostedReport {
    /// Writes answered `Ok` (registrations apart).
    pub writes: u64,
    /// Of those: puts, appends, deletes, compare-and-swaps on a version,
    /// and on a value.
    pub by_kind: [u64; 5],
    /// Compare-and-swaps that swapped: on a version, on a value.
    pub swapped: [u64; 2],
    /// Sessions registered.
    pub sessions: u64,
    /// Linearizable gets answered.
    pub reads: u64,
    /// Writes answered `SessionExpired`.
    pub sessions_expired: u64,
    /// Operations in the checked history.
    pub history_ops: u64,
    /// Batches of events the machines published.
    pub published: u64,
    /// Revisions the watchers received.
    pub watched: u64,
    /// Times a watcher resumed from its member's history.
    pub watch_resumes: u64,
}

impl KvHostedReport {
    /// Adds another run's figures to these (a sweep's totals).
    pub fn add(&mut self, o: &KvHostedReport) {
        self.writes += o.writes;
        for (a, b) in self.by_kind.iter_mut().zip(o.by_kind) {
            *a += b;
        }
        for (a, b) in self.swapped.iter_mut().zip(o.swapped) {
            *a += b;
        }
        self.sessions += o.sessions;
        self.reads += o.reads;
        self.sessions_expired += o.sessions_expired;
        self.history_ops += o.history_ops;
        self.published += o.published;
        self.watched += o.watched;
        self.watch_resumes += o.watch_resumes;
    }
}

/// What a client has out.
#[derive(Debug)]
enum Pending {
    /// A write of the session: its number, its op, and its place in the
    /// history (`None`: the session's registration) and kind (an index
    /// of [`KvHostedReport::by_kind`]).
    Write {
        seq: u64,
        op: Op,
        id: Option<(OpId, usize)>,
    },
    /// A linearizable get of `key`, begun at `call`.
    Read { key: String, call: u64 },
}

/// One client: a session and what it has out.
#[derive(Debug)]
struct Client {
    session: u64,
    /// The last number used.
    seq: u64,
    /// A write of this session was answered (the servers must know it).
    answered: bool,
    pending: Option<Pending>,
    /// Writes begun (for unique values).
    made: u64,
}

/// The KV app: see the module docs.
pub struct KvApp {
    cfg: KvHostedConfig,
    clients: Vec<Client>,
    next_session: u64,
    history: Recorder<KvInput, ModelOutput>,
    published: Arc<Mutex<Published>>,
    watchers: Vec<Watcher>,
    report: KvHostedReport,
}

/// Runs one seed of the KV app on the hosted world.
pub fn run(
    seed: u64,
    hosted: &HostedConfig,
    cfg: &KvHostedConfig,
) -> Result<(HostedReport, KvHostedReport), String> {
    let app = KvApp::new(cfg.clone(), hosted.members);
    let (report, app) = flotilla_sim::hosted::run_app(seed, hosted, app)?;
    Ok((report, app.report()))
}

impl KvApp {
    /// The app of a run whose group starts with `members` voters.
    pub fn new(cfg: KvHostedConfig, members: u64) -> KvApp {
        let watchers = (0..cfg.watchers)
            .map(|w| Watcher::new(1 + w % members.max(1)))
            .collect();
        KvApp {
            cfg,
            clients: Vec::new(),
            next_session: 1,
            history: Recorder::new(),
            published: Arc::new(Mutex::new(Published::default())),
            watchers,
            report: KvHostedReport::default(),
        }
    }

    /// The run's figures.
    pub fn report(&self) -> KvHostedReport {
        let mut r = self.report.clone();
        r.published = watch::lock(&self.published).batches;
        r.watched = self.watchers.iter().map(|w| w.received).sum();
        r.watch_resumes = self.watchers.iter().map(|w| w.resumed).sum();
        r
    }

    /// Client `c` (with no session until it opens one).
    fn client(&mut self, c: u64) -> &mut Client {
        while self.clients.len() <= c as usize {
            self.clients.push(Client::new(0));
        }
        &mut self.clients[c as usize]
    }

    /// The encoded command of client `c`'s write `seq`, stamped `now`.
    fn command(&mut self, c: u64, seq: u64, op: Op, now: u64) -> Bytes {
        let client = self.client(c);
        Command {
            stamp_ms: now / MS,
            request: KvRequest {
                client: client.session,
                seq,
                read: ReadConsistency::Linearizable,
                resumed: client.answered,
                op,
            },
        }
        .encode()
    }

    /// A new operation for client `c`.
    fn choose(&mut self, rng: &mut SplitMix64, c: u64, now: u64) -> Request {
        let key = format!("k{}", rng.range(0, self.cfg.keys.max(1)));
        let client = self.client(c);
        client.made += 1;
        let value = format!("{c}.{}", client.made);
        let (op, kind) = match rng.range(0, 10) {
            0..=3 => {
                client.pending = Some(Pending::Read { key, call: now });
                return Request::Read;
            }
            4..=5 => (Op::put(key, value), 0),
            6 => (Op::append(key, value), 1),
            7 => (Op::delete(key), 2),
            8 => (cas(key, Compare::version_is, rng.range(0, 4), value), 3),
            // The client's own last value: it swaps unless someone wrote since.
            _ => {
                let last = client.made - 1;
                let expect = |k, v| Compare::value_is(k, format!("{c}.{v}"));
                (cas(key, expect, last, value), 4)
            }
        };
        let session = client.session;
        client.seq += 1;
        let seq = client.seq;
        let id = model_input(&op, ReadConsistency::Linearizable)
            .map(|input| (self.history.invoke_at(session, input, now), kind));
        self.client(c).pending = Some(Pending::Write {
            seq,
            op: op.clone(),
            id,
        });
        Request::Write(self.command(c, seq, op, now))
    }

    /// Counts a write answered `Ok` (`kind`: `None` for a registration).
    fn count(&mut self, kind: Option<usize>, response: &flotilla_kv::Response) {
        let Some(kind) = kind else {
            self.report.sessions += 1;
            return;
        };
        self.report.writes += 1;
        self.report.by_kind[kind] += 1;
        if let flotilla_kv::Response::Txn {
            succeeded: true, ..
        } = response
        {
            self.report.swapped[kind - 3] += 1;
        }
    }

    /// Client `c` opens a new session: its first write registers it.
    fn open_session(&mut self, c: u64, now: u64) -> Request {
        let session = self.next_session;
        self.next_session += 1;
        let client = self.client(c);
        *client = Client::new(session);
        client.seq = 1;
        let op = Op::put(format!("session/{session}"), "open");
        client.pending = Some(Pending::Write {
            seq: 1,
            op: op.clone(),
            id: None,
        });
        Request::Write(self.command(c, 1, op, now))
    }
}

/// A single-key compare-and-swap: `compare(key, expected)`, then a put.
fn cas<T>(key: String, compare: impl Fn(String, T) -> Compare, expected: T, value: String) -> Op {
    Op::Txn(Txn {
        compares: vec![compare(key.clone(), expected)],
        success: vec![Op::put(key, value)],
        failure: vec![],
    })
}

impl Client {
    fn new(session: u64) -> Client {
        Client {
            session,
            seq: 0,
            answered: false,
            pending: None,
            made: 0,
        }
    }
}

impl App for KvApp {
    type Machine = KvMachine<Publisher>;

    fn machine(&mut self, member: u64, voters: &[NodeId]) -> Self::Machine {
        let addrs: BTreeMap<NodeId, String> =
            voters.iter().map(|&id| (id, format!("sim-{id}"))).collect();
        let publisher = Publisher::new(member, Arc::clone(&self.published));
        let limits = SessionLimits {
            ttl_ms: self.cfg.session_ttl_ms,
            ..SessionLimits::default()
        };
        KvMachine::with_sessions(&addrs, Arc::new(publisher), limits)
    }

    /// An add carries the new member's address, as etcd's member add
    /// and promote write it (`flotilla_etcd::membership`).
    fn change_context(&self, cc: &mut ConfChange) {
        let added = cc.ops.iter().filter_map(|op| match *op {
            ConfChangeOp::AddVoter(id) | ConfChangeOp::AddLearner(id) => Some(id),
            ConfChangeOp::Remove(_) => None,
        });
        let addrs: BTreeMap<NodeId, String> = added.map(|id| (id, format!("sim-{id}"))).collect();
        if !addrs.is_empty() {
            cc.context = encode_context(&addrs);
        }
    }

    fn next(&mut self, rng: &mut SplitMix64, c: u64, now: u64) -> Request {
        let client = self.client(c);
        // A write not answered (an error, or the client gave up) is sent
        // again; a read not answered is dropped, and a new choice made.
        match &client.pending {
            Some(Pending::Write { seq, op, .. }) => {
                let (seq, op) = (*seq, op.clone());
                Request::Write(self.command(c, seq, op, now))
            }
            _ if client.seq == 0 => self.open_session(c, now),
            _ => self.choose(rng, c, now),
        }
    }

    fn written(&mut self, c: u64, output: &KvOutput, now: u64) -> Result<(), String> {
        let client = self.client(c);
        let session = client.session;
        let Some(Pending::Write { seq, op, id }) = client.pending.take() else {
            return Err(format!("client {c} was answered a write it did not send"));
        };
        let Some(applied) = output else {
            return Err(format!(
                "session {session}'s write {seq} was answered by an entry that is no command"
            ));
        };
        if (applied.client, applied.seq) != (session, seq) {
            return Err(format!(
                "session {session}'s write {seq} was answered with the outcome of session {}'s write {}",
                applied.client, applied.seq
            ));
        }
        match &applied.outcome {
            Outcome::Ok { response, .. } => {
                client.answered = true;
                self.count(id.map(|(_, kind)| kind), response);
                if let Some((id, _)) = id {
                    self.history.ok_at(id, model_output(response), now);
                }
            }
            Outcome::SessionExpired => {
                // The outcome stays unknown in the history; a new session.
                client.seq = 0;
                self.report.sessions_expired += 1;
            }
            Outcome::WrongLeader { .. } => client.pending = Some(Pending::Write { seq, op, id }),
            Outcome::Refused(r) => {
                return Err(format!(
                    "session {session}'s write {seq} ({op:?}) was refused: {r}"
                ));
            }
        }
        Ok(())
    }

    fn read(&mut self, c: u64, machine: &Self::Machine, now: u64) -> Result<(), String> {
        let client = self.client(c);
        let session = client.session;
        let Some(Pending::Read { key, call }) = client.pending.take() else {
            return Err(format!("client {c} was answered a read it did not send"));
        };
        let Outcome::Ok { response, .. } = machine.replica.read(&Op::get(key.clone())) else {
            return Err(format!("a get of {key} was not served by the machine"));
        };
        let id = self.history.invoke_at(session, KvInput::get(key), call);
        self.history.ok_at(id, model_output(&response), now);
        self.report.reads += 1;
        Ok(())
    }

    /// Watchers follow their member; the replicated clock (the largest
    /// stamp applied, which sessions expire on) is never ahead of the
    /// proposers' clocks (virtual time here).
    fn pumped(&mut self, m: u64, machine: &Self::Machine, now: u64) -> Result<(), String> {
        let clock = machine.replica.clock_ms();
        if clock > now / MS {
            return Err(format!(
                "member {m}'s replicated clock is at {clock} ms, ahead of the time ({} ms)",
                now / MS
            ));
        }
        for w in self.watchers.iter_mut().filter(|w| w.member == m) {
            w.follow(machine, &self.published)?;
        }
        Ok(())
    }

    fn violation(&mut self) -> Option<String> {
        watch::lock(&self.published).take_violation()
    }

    fn finish(&mut self) -> Result<(), String> {
        let history = self.history.history();
        self.report.history_ops = history.len() as u64;
        match flotilla_linearize::check(&Kv, &history, &Limits::timeout(self.cfg.check_timeout)) {
            Verdict::Linearizable => Ok(()),
            Verdict::NotLinearizable(cx) => Err(format!("the history is not linearizable:\n{cx}")),
            Verdict::Unknown(u) => Err(format!(
                "the linearizability check timed out after {:?} on {} of {} keys",
                self.cfg.check_timeout,
                u.partitions.len(),
                u.total
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_host::kv_app::{Batch, Publish};

    #[test]
    fn a_machine_s_bad_publication_is_the_app_s_violation() {
        let mut app = KvApp::new(KvHostedConfig::default(), 3);
        let voters = [NodeId(1), NodeId(2), NodeId(3)];
        let machine = app.machine(1, &voters);
        assert_eq!(app.violation(), None);
        machine.watch.publish(Batch::Events {
            revision: 5,
            events: Vec::new(),
        });
        let v = app.violation().expect("a gap");
        assert!(
            v.contains("member 1 published revision 5 after revision 1"),
            "{v}"
        );
    }
}

//! The course's sharded KV tester's operations (spec §5.1) over a
//! [`Fleet`]: join and leave groups through the controller, run clerks'
//! operations one at a time or concurrently, shut groups and servers
//! down and start them again, and check values and Raft state sizes.
//! Every client operation goes into one history, which a test may check
//! for linearizability.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use flotilla_linearize::{Kv, Limits, Recorder, Verdict, check};
use flotilla_shardkv::{Config, CtrlOp, CtrlReply, Gid, KvOp, KvReply};
use flotilla_sim::{Failure, MS};

use crate::clerk::{History, KvClerk, Script, Workload};
use crate::ctrl::CtrlClerk;
use crate::fleet::{Fleet, FleetConfig};
use crate::mover::Mover;

/// How long one request of the tester's may take before the test fails.
pub const OP_LIMIT_NS: u64 = 60_000 * MS;

/// Controller clients' ids start here, apart from the KV clerks'.
const CTRL_CLIENTS: u64 = 1 << 40;

/// How long the linearizability checker may take on one history (the
/// course passes on its 1 s timeout; we fail on ours, loudly).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// The tester. See the module docs.
pub struct ShardTester {
    /// The fleet under test.
    pub f: Fleet,
    /// Every client operation of the run.
    pub history: History,
    next_client: u64,
    next_ctrl_client: u64,
}

impl ShardTester {
    /// The fleet `cfg` describes, with a mover per group, for `seed`.
    pub fn new(cfg: FleetConfig, seed: u64) -> ShardTester {
        let mut f = Fleet::new(cfg, seed);
        let gids: Vec<Gid> = f.groups.keys().copied().collect();
        for gid in gids {
            f.spawn(Box::new(Mover::new(gid)));
        }
        ShardTester {
            f,
            history: Rc::new(Recorder::new()),
            next_client: 1,
            next_ctrl_client: CTRL_CLIENTS,
        }
    }

    /// Runs `op` at the controller to its answer.
    pub fn ctrl(&mut self, op: CtrlOp) -> Result<CtrlReply, Failure> {
        let answers = Rc::new(RefCell::new(Vec::new()));
        let me = self.f.ctrl.next_actor();
        let clerk = CtrlClerk::new(me, self.next_ctrl_client, vec![op], answers.clone());
        self.next_ctrl_client += 1;
        self.f.ctrl.spawn(Box::new(clerk));
        let what = "a controller request did not complete in time";
        self.f
            .run_until_cond(OP_LIMIT_NS, what, |_| !answers.borrow().is_empty())?;
        let reply = answers.borrow_mut().pop();
        reply.ok_or_else(|| self.f.fail("no controller answer"))
    }

    fn change(&mut self, op: CtrlOp) -> Result<(), Failure> {
        match self.ctrl(op.clone())? {
            CtrlReply::Done => Ok(()),
            other => Err(self.f.fail(format!("{op:?} answered {other:?}"))),
        }
    }

    /// The course's `joinm`: groups `gids` join, with their servers.
    pub fn join(&mut self, gids: &[Gid]) -> Result<(), Failure> {
        let n = self.f.cfg.n;
        let groups = gids
            .iter()
            .map(|&g| (g, (0..n).map(|i| format!("server-{g}-{i}")).collect()))
            .collect();
        self.change(CtrlOp::Join(groups))
    }

    /// The course's `leavem`.
    pub fn leave(&mut self, gids: &[Gid]) -> Result<(), Failure> {
        self.change(CtrlOp::Leave(gids.to_vec()))
    }

    /// The latest configuration.
    pub fn query(&mut self) -> Result<Config, Failure> {
        match self.ctrl(CtrlOp::Query(None))? {
            CtrlReply::Config(c) => Ok(c),
            other => Err(self.f.fail(format!("a query answered {other:?}"))),
        }
    }

    /// Starts a clerk running `workload`; returns its actor id.
    pub fn clerk(&mut self, workload: Box<dyn Workload>) -> usize {
        let client = self.next_client;
        self.next_client += 1;
        let clerk = KvClerk::new(client, workload, Some(self.history.clone()));
        self.f.spawn(Box::new(clerk))
    }

    /// Runs `ops` with a fresh clerk, to their answers.
    pub fn ops(&mut self, ops: Vec<KvOp>) -> Result<Vec<KvReply>, Failure> {
        let n = ops.len();
        let (script, replies) = Script::new(ops);
        self.clerk(Box::new(script));
        let what = "a client's operations did not complete in time";
        self.f
            .run_until_cond(OP_LIMIT_NS, what, |_| replies.borrow().len() == n)?;
        Ok(replies.take())
    }

    /// Puts `value` at `key`.
    pub fn put(&mut self, key: &str, value: &str) -> Result<(), Failure> {
        self.ops(vec![KvOp::Put(b(key), b(value))]).map(drop)
    }

    /// Appends `value` to `key`.
    pub fn append(&mut self, key: &str, value: &str) -> Result<(), Failure> {
        self.ops(vec![KvOp::Append(b(key), b(value))]).map(drop)
    }

    /// The course's `check`: a get of `key` answers `expected`.
    pub fn check(&mut self, key: &str, expected: &str) -> Result<(), Failure> {
        let reply = self.ops(vec![KvOp::Get(b(key))])?;
        let got = match reply.first() {
            Some(KvReply::Value(v)) => String::from_utf8_lossy(v).into_owned(),
            Some(KvReply::NoKey) => String::new(),
            other => return Err(self.f.fail(format!("get {key:?} answered {other:?}"))),
        };
        if got != expected {
            let what = format!("get {key:?}: {got:?}, expected {expected:?}");
            return Err(self.f.fail(what));
        }
        Ok(())
    }

    /// Checks every operation recorded so far for linearizability.
    pub fn check_history(&self) -> Result<(), Failure> {
        let h = self.history.history();
        match check(&Kv, &h, &Limits::timeout(CHECK_TIMEOUT)) {
            Verdict::Linearizable => Ok(()),
            Verdict::NotLinearizable(why) => {
                Err(self.f.fail(format!("history not linearizable: {why:?}")))
            }
            Verdict::Unknown(u) => Err(self.f.fail(format!("history check gave up: {u:?}"))),
        }
    }

    /// Sums over every group server of the Raft state and snapshot bytes
    /// (the course's challenge 1 total), each server's latest.
    pub fn total_state_bytes(&self) -> u64 {
        self.f.groups.values().map(|g| g.state_bytes_total()).sum()
    }
}

/// A key or value from text.
pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

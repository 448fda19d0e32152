//! The hosted simulation's nemesis: crashes (power loss: the WAL loses
//! what was not synced), partitions and heals, and leadership transfers
//! (through `Host::transfer_leader`, to a random voter), until the faults
//! stop;
//! then every member that was not removed comes back on a reliable
//! network.
//!
//! Invariant: at most a minority of each half of the latest known
//! configuration is down at once (so a quorum can still form once
//! partitions heal); a removed member is never restarted.

use std::sync::Arc;

use flotilla_raft::{ConfState, NodeId};

use super::machine;
use super::member::Life;
use super::world::{Event, World};
use crate::net::MS;

impl<A: super::app::App> World<A> {
    pub(crate) fn fault(&mut self) {
        if self.now >= self.faults_end {
            self.end_faults();
            return;
        }
        // Drawn only when transfers are on, so that a seed of any other
        // configuration replays as before.
        if self.cfg.transfers && self.rng.range(0, 3) == 0 {
            self.transfer();
        }
        let roll = self.rng.range(0, 10);
        if self.cfg.crashes && roll < 4 {
            self.crash_one();
        } else if self.cfg.partitions && roll < 7 {
            self.partition();
        } else {
            self.note(|| "heal".to_string());
            self.net.heal();
        }
        let next = self.rng.range(100 * MS, 700 * MS);
        self.schedule(next, Event::Fault);
    }

    /// Whether crashing `m` too leaves a majority of each half of `conf`
    /// up.
    fn crash_leaves_majority(&self, conf: &ConfState, m: u64) -> bool {
        let down = |id: &&NodeId| {
            id.get() == m || !matches!(self.members[(id.get() - 1) as usize].life, Life::Up(_))
        };
        let half_ok = |voters: &[NodeId]| {
            let out = voters.iter().filter(down).count();
            out <= (voters.len().saturating_sub(1)) / 2
        };
        half_ok(&conf.voters) && half_ok(&conf.outgoing)
    }

    fn crash_one(&mut self) {
        let m = self.rng.range(1, self.hosts() + 1);
        let conf = {
            let ledger = machine::lock(&self.ledger);
            let last = ledger
                .entries
                .keys()
                .next_back()
                .copied()
                .unwrap_or_default();
            ledger.conf_at(last).clone()
        };
        if !self.crash_leaves_majority(&conf, m) || !self.crash_member(m) {
            return;
        }
        let back = self.rng.range(50 * MS, 1500 * MS);
        self.schedule(back, Event::Restart(m));
    }

    /// Power loss at member `m`, if it is up; returns whether it was.
    pub(crate) fn crash_member(&mut self, m: u64) -> bool {
        if self.member(m).host().is_none() {
            return false;
        }
        let seed = self.rng.next_u64();
        if let Err(e) = self.member(m).crash(seed) {
            self.fail(e);
            return false;
        }
        self.safety.crashed(m);
        self.note(|| format!("n{m} CRASH"));
        self.report.crashes += 1;
        true
    }

    pub(crate) fn restart(&mut self, m: u64) {
        let member = self.member(m);
        if !matches!(member.life, Life::Down(_)) {
            return;
        }
        let inc = member.incarnation;
        let raft = self.raft_config(m);
        let (compaction, ledger) = (self.cfg.compaction(), Arc::clone(&self.ledger));
        let machine = self.app.machine(m, &super::world::voters(self.cfg.members));
        if let Err(e) = self.member(m).restart(raft, compaction, &ledger, machine) {
            self.fail(e);
            return;
        }
        if let Some(host) = self.member(m).host() {
            let commit = host.raw().status().commit;
            self.commits.started(m, commit);
        }
        let first = self.rng.range(0, 10 * MS);
        self.schedule(first, Event::Tick(m, inc));
        self.pump(m);
    }

    /// The member that leads the highest term, if any, hands the
    /// leadership to a random voter of its configuration (itself
    /// included: the core refuses that, as it refuses a transfer while
    /// another runs).
    fn transfer(&mut self) {
        let leads = |m: &super::member::Member<A::Machine>| {
            let status = m.running()?.raw().status();
            (status.role == flotilla_raft::Role::Leader).then_some((status.term, m.id, status))
        };
        let Some((_, leader, status)) = self.members.iter().filter_map(leads).max_by_key(|l| l.0)
        else {
            return;
        };
        let voters = &status.conf_state.voters;
        if voters.is_empty() {
            return;
        }
        let to = voters[self.rng.range(0, voters.len() as u64) as usize];
        if let Some(host) = self.member(leader).host()
            && host.transfer_leader(to).is_ok()
        {
            self.note(|| format!("n{leader} hands the leadership to {to}"));
            self.report.transfers += 1;
            self.pump(leader);
        }
    }

    fn partition(&mut self) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for id in 1..=self.hosts() {
            if self.rng.range(0, 2) == 0 {
                a.push(id)
            } else {
                b.push(id)
            }
        }
        self.note(|| format!("partition {a:?} | {b:?}"));
        self.net.partition(&[a, b]);
    }

    /// The faults stop: the network heals and turns reliable, every member
    /// not removed comes back, and the clients must get writes through
    /// again.
    fn end_faults(&mut self) {
        self.net.heal();
        self.net.cfg.reliable = true;
        for m in 1..=self.hosts() {
            self.restart(m);
        }
    }
}

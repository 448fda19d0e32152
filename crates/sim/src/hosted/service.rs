//! A per-server service-time model, for throughput figures that a
//! 2-core machine cannot show for real (how 3 groups compare with 1 when
//! each server has a processor of its own). Off unless a run sets
//! [`super::HostedConfig::service`].
//!
//! Each server is one queue before one processor ([`Cpus`], a slot per
//! server). A message that reaches a member waits until the member's
//! processor is free, takes it for [`Costs::message_ns`] plus
//! [`Costs::kib_ns`] per KiB, and is handled by the host when that
//! time has passed; a client request that enters a member and each entry
//! a member applies take its processor for their cost too (the request
//! itself is not delayed: the messages and answers after it are). Syncs
//! and snapshot jobs are the disk's, not the processor's, and cost
//! nothing here.
//!
//! Members of several clusters can share one slot, as the groups one
//! production process hosts share its cores: a cluster's member `m` uses
//! slot `slots[m - 1]`.
//!
//! Invariants: off, nothing here runs, so every seed runs event for event
//! as without the model; on, a slot's work never overlaps (each new piece
//! starts when the one before it finished, or later).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What a server's processor spends on each piece of work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Costs {
    /// A client request entering a member.
    pub request_ns: u64,
    /// A message a member receives, before its bytes.
    pub message_ns: u64,
    /// Each KiB of a message received.
    pub kib_ns: u64,
    /// Each entry a member applies.
    pub apply_ns: u64,
}

impl Default for Costs {
    /// A server that takes 40 µs of processor per client request, 10 µs
    /// per message, 1 µs per KiB (about 1 GB/s) and 5 µs per entry
    /// applied: round figures of the order the real server shows.
    fn default() -> Costs {
        Costs {
            request_ns: 40_000,
            message_ns: 10_000,
            kib_ns: 1_000,
            apply_ns: 5_000,
        }
    }
}

/// The costs, and the processors members use. See the module docs.
#[derive(Clone, Debug)]
pub struct ServiceModel {
    /// What each piece of work costs.
    pub costs: Costs,
    /// The processors.
    pub cpus: Cpus,
    /// Member `m`'s slot in `cpus`: `slots[m - 1]`.
    pub slots: Vec<usize>,
}

impl ServiceModel {
    /// Member `m`'s slot (members past `slots` get slots of their own,
    /// after the table's).
    fn slot(&self, m: u64) -> usize {
        let i = m.saturating_sub(1) as usize;
        self.slots.get(i).copied().unwrap_or(usize::MAX - i)
    }

    /// Takes member `m`'s processor for a message of `bytes`: when it
    /// will have been handled.
    pub(crate) fn receive(&self, m: u64, now: u64, bytes: u64) -> u64 {
        let cost = self.costs.message_ns + self.costs.kib_ns * bytes / 1024;
        self.cpus.take(self.slot(m), now, cost)
    }

    /// Takes member `m`'s processor for a client request.
    pub(crate) fn request(&self, m: u64, now: u64) {
        self.cpus.take(self.slot(m), now, self.costs.request_ns);
    }

    /// Takes member `m`'s processor for `entries` applied.
    pub(crate) fn applied(&self, m: u64, now: u64, entries: u64) {
        if entries > 0 {
            self.cpus
                .take(self.slot(m), now, self.costs.apply_ns * entries);
        }
    }
}

/// Processors shared by the clusters of one run: per slot, when it is
/// next free and how long it has worked.
#[derive(Clone, Debug, Default)]
pub struct Cpus(Arc<Mutex<BTreeMap<usize, (u64, u64)>>>);

impl Cpus {
    /// Processors that have done nothing yet.
    pub fn new() -> Cpus {
        Cpus::default()
    }

    /// Takes slot `slot` for `cost` from `now`, or from when it is free
    /// if later; returns when the work finishes.
    pub fn take(&self, slot: usize, now: u64, cost: u64) -> u64 {
        let mut slots = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (free_at, worked) = slots.entry(slot).or_insert((0, 0));
        let done = (*free_at).max(now) + cost;
        *free_at = done;
        *worked += cost;
        done
    }

    /// How long slot `slot` has worked, in ns.
    pub fn worked(&self, slot: usize) -> u64 {
        self.all_worked().get(&slot).copied().unwrap_or(0)
    }

    /// How long each slot that has worked has, in ns.
    pub fn all_worked(&self) -> BTreeMap<usize, u64> {
        let slots = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slots.iter().map(|(&s, &(_, worked))| (s, worked)).collect()
    }

    /// The most any slot has worked since `before` (an earlier
    /// [`Cpus::all_worked`]), in ns.
    pub fn busiest_since(&self, before: &BTreeMap<usize, u64>) -> u64 {
        let since = |(s, w): (&usize, &u64)| w - before.get(s).copied().unwrap_or(0);
        self.all_worked().iter().map(since).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(slots: Vec<usize>, cpus: Cpus) -> ServiceModel {
        let costs = Costs {
            request_ns: 7,
            message_ns: 100,
            kib_ns: 10,
            apply_ns: 3,
        };
        ServiceModel { costs, cpus, slots }
    }

    #[test]
    fn work_on_one_slot_queues_and_never_overlaps() {
        let cpus = Cpus::new();
        assert_eq!(cpus.take(0, 1_000, 50), 1_050);
        assert_eq!(cpus.take(0, 1_010, 50), 1_100, "waits for the first");
        assert_eq!(cpus.take(0, 5_000, 50), 5_050, "idle until then");
        assert_eq!(cpus.take(1, 1_010, 50), 1_060, "another slot is free");
        assert_eq!(cpus.worked(0), 150);
        assert_eq!(cpus.worked(1), 50);
        assert_eq!(cpus.worked(2), 0);
        let before = cpus.all_worked();
        assert_eq!(before, BTreeMap::from([(0, 150), (1, 50)]));
        cpus.take(1, 0, 30);
        cpus.take(2, 0, 20);
        assert_eq!(cpus.busiest_since(&before), 30, "slot 1's 30, not its 80");
        assert_eq!(cpus.busiest_since(&cpus.all_worked()), 0);
    }

    #[test]
    fn a_message_costs_its_base_and_its_bytes_on_its_member_s_slot() {
        let cpus = Cpus::new();
        let m = model(vec![4, 5], cpus.clone());
        assert_eq!(m.receive(2, 0, 2048), 120);
        assert_eq!(m.receive(2, 0, 0), 220);
        assert_eq!(cpus.worked(5), 220);
        m.request(1, 0);
        m.applied(1, 0, 4);
        m.applied(1, 0, 0);
        assert_eq!(cpus.worked(4), 7 + 12);
    }

    #[test]
    fn members_of_two_clusters_share_a_slot_when_told_to() {
        let cpus = Cpus::new();
        let a = model(vec![0, 1, 2], cpus.clone());
        let b = model(vec![0, 1, 2], cpus.clone());
        assert_eq!(a.receive(1, 0, 0), 100);
        assert_eq!(b.receive(1, 0, 0), 200, "behind the other cluster's");
        let c = model(vec![], cpus.clone());
        assert_eq!(
            c.receive(1, 0, 0),
            100,
            "unlisted members get slots of their own"
        );
        assert_eq!(c.slot(1), usize::MAX);
        assert_eq!(c.slot(2), usize::MAX - 1);
    }
}

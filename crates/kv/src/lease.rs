//! The store's leases (etcd's lessor, its replicated half): which leases
//! exist, the time-to-live each was granted, the remaining time its last
//! checkpoint recorded, and the keys attached to it.
//!
//! Time is not here: when a lease expires is the leader's business (its
//! own monotonic clock, outside the state machine), and it ends a lease
//! by proposing [`crate::Op::LeaseRevoke`] through the log, so every
//! replica deletes the lease's keys at the same revision.
//!
//! Invariants (kept by the store, which is the only writer):
//! - a key is in lease `l`'s key set exactly when the store holds the key
//!   with `lease == l`; lease 0 means "no lease" and is never in the
//!   table;
//! - `0 <= remaining`; 0 means "no checkpoint: the whole TTL".

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

/// One lease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    /// The time-to-live it was granted, in seconds.
    pub ttl: i64,
    /// What its last checkpoint recorded as left, in seconds (0: none
    /// since it was granted or last renewed: the whole TTL).
    pub remaining: i64,
    /// The keys attached to it, in key order.
    pub(crate) keys: BTreeSet<Bytes>,
}

impl Lease {
    /// The keys attached to the lease, in key order.
    pub fn keys(&self) -> impl Iterator<Item = &Bytes> {
        self.keys.iter()
    }

    /// How long a leader that takes the lease over waits before it
    /// expires it (before any extension): the checkpointed remaining
    /// time, or the whole TTL.
    pub fn countdown(&self) -> i64 {
        if self.remaining > 0 {
            self.remaining
        } else {
            self.ttl
        }
    }
}

/// The lease table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leases {
    pub(crate) map: BTreeMap<i64, Lease>,
}

impl Leases {
    /// Lease `id`, if it exists.
    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.map.get(&id)
    }

    /// Whether lease `id` exists.
    pub fn contains(&self, id: i64) -> bool {
        self.map.contains_key(&id)
    }

    /// Every lease, by id.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &Lease)> {
        self.map.iter().map(|(id, l)| (*id, l))
    }

    /// The number of leases.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there is no lease.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds lease `id` (the caller checked it is new and not 0).
    pub(crate) fn grant(&mut self, id: i64, ttl: i64) {
        self.map.insert(
            id,
            Lease {
                ttl,
                ..Lease::default()
            },
        );
    }

    /// Records a checkpoint's remaining times of the leases that exist.
    pub(crate) fn checkpoint(&mut self, checkpoints: &[(i64, i64)]) {
        for &(id, remaining) in checkpoints {
            if let Some(l) = self.map.get_mut(&id) {
                l.remaining = remaining.max(0);
            }
        }
    }

    /// Moves `key` from lease `from` to lease `to` (either may be 0).
    pub(crate) fn reattach(&mut self, key: &Bytes, from: i64, to: i64) {
        if from == to {
            return;
        }
        self.detach(key, from);
        if let Some(l) = self.map.get_mut(&to) {
            l.keys.insert(key.clone());
        }
    }

    /// Takes `key` off lease `from` (0: none).
    pub(crate) fn detach(&mut self, key: &Bytes, from: i64) {
        if let Some(l) = self.map.get_mut(&from) {
            l.keys.remove(key);
        }
    }

    /// Removes lease `id`, returning it.
    pub(crate) fn remove(&mut self, id: i64) -> Option<Lease> {
        self.map.remove(&id)
    }
}

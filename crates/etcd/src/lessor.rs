//! When leases expire: the leader's half of etcd's lessor, as a pure
//! state machine over a monotonic clock in milliseconds ([`Lessor`]); the
//! replicated half (which leases exist, their TTLs, checkpoints and keys)
//! is the store's (`flotilla_kv::Leases`). [`crate::lease_service`] drives
//! it on the server's clock; the tests here drive it on a virtual one.
//!
//! Only the leader counts down. It keeps a deadline per lease: when it
//! takes leadership it starts each at `now + extend + countdown` (the
//! checkpointed remaining time, or the whole TTL), a grant it learns of
//! starts at `now + TTL`, and a keep-alive moves it to `now + TTL`. A
//! lease past its deadline is reported by [`Lessor::expired`] and the
//! leader proposes its revoke through the log, so every replica deletes
//! its keys at the same revision; a revoke that did not take effect is
//! proposed again after [`REVOKE_RETRY_MS`]. Every
//! `checkpoint_interval`, leases with a TTL longer than it get their
//! remaining time checkpointed through the log ([`Lessor::checkpoints`]),
//! so a leader change does not restart long countdowns.
//!
//! The guarantees, with `E` = `extend` (one election timeout), `I` the
//! checkpoint interval and `T` a lease's TTL:
//! - **never early**: a lease is not revoked before `k + T`, where `k` is
//!   the moment any member answered a keep-alive of it (or it was
//!   granted). The leader that answers has just confirmed its
//!   leadership (a ReadIndex round), a keep-alive that finds a
//!   checkpointed remaining time clears it through the log before it is
//!   answered, and a later leader starts its countdown after it takes
//!   over, from a countdown recorded no earlier than `k`;
//! - **late by a bounded amount**: once the last keep-alive's `k + T` has
//!   passed, the lease is revoked within `min(T, I) + E` plus the time
//!   the cluster had no leader, plus one tick of the driver, when leaders
//!   change; within one tick when they do not;
//! - the clock is monotonic, so a wall-clock jump changes nothing; a
//!   leader paused past deadlines revokes those leases when it resumes,
//!   if it still leads (keep-alives could not reach it either).

use std::collections::HashMap;

use flotilla_kv::Leases;

/// How long after proposing a revoke the leader proposes it again, if
/// the lease still exists (the proposal was lost in a leader change).
pub const REVOKE_RETRY_MS: u64 = 3_000;

/// etcd's largest lease TTL, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// etcd's default lease checkpoint interval.
pub const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 5 * 60 * 1000;

/// Most leases one checkpoint entry carries (etcd's batch limit).
pub const CHECKPOINT_BATCH: usize = 1000;

/// The lessor's timing settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LessorConfig {
    /// How much longer than its countdown a new leader gives each lease
    /// (one election timeout: the time keep-alives may have failed while
    /// the cluster had no leader).
    pub extend_ms: u64,
    /// How often remaining times are checkpointed.
    pub checkpoint_interval_ms: u64,
}

impl LessorConfig {
    /// The settings for a cluster whose base election timeout is
    /// `election_ms`.
    pub fn for_election_timeout(election_ms: u64) -> LessorConfig {
        LessorConfig {
            extend_ms: election_ms,
            checkpoint_interval_ms: DEFAULT_CHECKPOINT_INTERVAL_MS,
        }
    }

    /// etcd's smallest TTL for that election timeout: one and a half
    /// election timeouts, in whole seconds, so that a lease outlives a
    /// leader election.
    pub fn min_ttl(&self) -> i64 {
        let ms = self.extend_ms.saturating_mul(3) / 2;
        i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX).max(1)
    }
}

/// Why a keep-alive was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewError {
    /// This member does not lead (or has not taken its leases over yet).
    NotPrimary,
    /// No such lease, or it expired and its revoke is under way.
    NotFound,
}

/// What a keep-alive did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renewed {
    /// The lease's TTL, in seconds.
    pub ttl: i64,
    /// The lease has a checkpointed remaining time, which must be cleared
    /// through the log before the keep-alive is answered (else a new
    /// leader would count down from it).
    pub clear_checkpoint: bool,
}

/// The leader's countdowns. See the module docs.
#[derive(Debug)]
pub struct Lessor {
    config: LessorConfig,
    /// The term in which this member took its leases over, while it leads.
    primary: Option<u64>,
    /// Each lease's deadline, while primary.
    deadlines: HashMap<i64, u64>,
    /// When a revoke was last proposed, by lease.
    revoking: HashMap<i64, u64>,
    /// When remaining times were last checkpointed.
    last_checkpoint_ms: u64,
}

impl Lessor {
    /// A lessor that does not lead.
    pub fn new(config: LessorConfig) -> Lessor {
        Lessor {
            config,
            primary: None,
            deadlines: HashMap::new(),
            revoking: HashMap::new(),
            last_checkpoint_ms: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> LessorConfig {
        self.config
    }

    /// Whether this member counts down (it took its leases over).
    pub fn is_primary(&self) -> bool {
        self.primary.is_some()
    }

    /// Follows the member's role and the lease table at `now`: `leads_in`
    /// is the term this member leads in and has applied its log through
    /// (`None` while it does not, or has not caught up). Taking over
    /// starts every countdown (see the module docs); while it stays
    /// primary, leases granted since get `now + TTL` and revoked ones are
    /// forgotten.
    pub fn sync(&mut self, now: u64, leads_in: Option<u64>, table: &Leases) {
        if leads_in != self.primary {
            self.deadlines.clear();
            self.revoking.clear();
            self.primary = leads_in;
            self.last_checkpoint_ms = now;
            if leads_in.is_some() {
                for (id, l) in table.iter() {
                    let countdown = secs_to_ms(l.countdown());
                    let deadline = now
                        .saturating_add(self.config.extend_ms)
                        .saturating_add(countdown);
                    self.deadlines.insert(id, deadline);
                }
            }
            return;
        }
        if self.primary.is_none() {
            return;
        }
        self.deadlines.retain(|id, _| table.contains(*id));
        self.revoking.retain(|id, _| table.contains(*id));
        for (id, l) in table.iter() {
            self.deadlines
                .entry(id)
                .or_insert_with(|| now.saturating_add(secs_to_ms(l.ttl)));
        }
    }

    /// A keep-alive of lease `id` at `now`; `table` is the replicated
    /// lease table.
    pub fn renew(&mut self, now: u64, id: i64, table: &Leases) -> Result<Renewed, RenewError> {
        if self.primary.is_none() {
            return Err(RenewError::NotPrimary);
        }
        let Some(l) = table.get(id) else {
            return Err(RenewError::NotFound);
        };
        let deadline = self.deadlines.entry(id).or_insert(u64::MAX);
        if *deadline <= now || self.revoking.contains_key(&id) {
            return Err(RenewError::NotFound);
        }
        *deadline = now.saturating_add(secs_to_ms(l.ttl));
        Ok(Renewed {
            ttl: l.ttl,
            clear_checkpoint: l.remaining > 0,
        })
    }

    /// What is left of lease `id` at `now`, in whole seconds (as etcd
    /// truncates), if this member counts it down.
    pub fn remaining(&self, now: u64, id: i64) -> Option<i64> {
        let deadline = *self.deadlines.get(&id)?;
        Some(i64::try_from(deadline.saturating_sub(now) / 1000).unwrap_or(i64::MAX))
    }

    /// The leases past their deadline at `now` whose revoke is due (never
    /// proposed, or proposed [`REVOKE_RETRY_MS`] ago), at most `limit` of
    /// them, earliest deadline first; each is marked as being revoked.
    pub fn expired(&mut self, now: u64, limit: usize) -> Vec<i64> {
        if self.primary.is_none() {
            return Vec::new();
        }
        let mut due: Vec<(u64, i64)> = self
            .deadlines
            .iter()
            .filter(|&(id, &d)| {
                d <= now
                    && self
                        .revoking
                        .get(id)
                        .is_none_or(|&at| now.saturating_sub(at) >= REVOKE_RETRY_MS)
            })
            .map(|(&id, &d)| (d, id))
            .collect();
        due.sort_unstable();
        due.truncate(limit);
        for &(_, id) in &due {
            self.revoking.insert(id, now);
        }
        due.into_iter().map(|(_, id)| id).collect()
    }

    /// If a checkpoint is due at `now`: the remaining times (whole seconds,
    /// rounded up so a checkpoint never shortens a lease) of the leases
    /// whose TTL is longer than the interval, in batches of at most
    /// [`CHECKPOINT_BATCH`]. Shorter leases lose at most their TTL to a
    /// leader change, so they are not worth a log entry.
    pub fn checkpoints(&mut self, now: u64, table: &Leases) -> Vec<Vec<(i64, i64)>> {
        let interval = self.config.checkpoint_interval_ms;
        if self.primary.is_none() || now.saturating_sub(self.last_checkpoint_ms) < interval {
            return Vec::new();
        }
        self.last_checkpoint_ms = now;
        let mut all: Vec<(i64, i64)> = table
            .iter()
            .filter(|(_, l)| secs_to_ms(l.ttl) > interval)
            .filter_map(|(id, _)| {
                let left = self.deadlines.get(&id)?.checked_sub(now)?;
                Some((id, i64::try_from(left.div_ceil(1000)).unwrap_or(i64::MAX)))
            })
            .collect();
        all.sort_unstable();
        all.chunks(CHECKPOINT_BATCH).map(<[_]>::to_vec).collect()
    }
}

fn secs_to_ms(secs: i64) -> u64 {
    u64::try_from(secs).unwrap_or(0).saturating_mul(1000)
}

#[cfg(test)]
mod tests;

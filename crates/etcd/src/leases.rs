//! The lessor on the server's clock ([`Keeper`]) and the task that acts
//! for it ([`run`]): every [`TICK`] it follows this member's role and the
//! replicated lease table, and while it leads it proposes the revokes of
//! expired leases and the checkpoints of long ones through the log. The
//! decisions are [`crate::lessor`]'s; this module only feeds it time and
//! the table, and proposes what it asks for.
//!
//! A member takes its leases over only once it leads *and* has applied
//! its log through a read barrier of its own term, so every grant and
//! checkpoint its predecessor committed is in the table it counts from.
//! Lock order: the state machine, then the lessor.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_kv::Op;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::core::Core;
use crate::lessor::{Lessor, LessorConfig, RenewError, Renewed};
use flotilla_runtime::lock;

/// How often the lessor looks for expired leases (etcd: every 500 ms).
pub const TICK: Duration = Duration::from_millis(100);

/// Most revokes proposed per tick (etcd revokes at most 1,000 a second).
pub const REVOKES_PER_TICK: usize = 100;

/// The lessor of a member, on its monotonic clock. Cheap to share.
#[derive(Debug)]
pub struct Keeper {
    lessor: Mutex<Lessor>,
    started: Instant,
}

impl Keeper {
    /// A keeper with `config`, not leading.
    pub fn new(config: LessorConfig) -> Arc<Keeper> {
        Arc::new(Keeper {
            lessor: Mutex::new(Lessor::new(config)),
            started: Instant::now(),
        })
    }

    /// Milliseconds on this member's monotonic clock.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The settings.
    pub fn config(&self) -> LessorConfig {
        lock(&self.lessor).config()
    }

    /// A keep-alive of lease `id` here (see [`Lessor::renew`]).
    pub fn renew(&self, core: &Core, id: i64) -> Result<Renewed, RenewError> {
        let sm = lock(&core.sm);
        let now = self.now_ms();
        lock(&self.lessor).renew(now, id, sm.replica.store().leases())
    }

    /// What is left of lease `id`, in seconds, if this member counts it
    /// down.
    pub fn remaining(&self, id: i64) -> Option<i64> {
        let now = self.now_ms();
        lock(&self.lessor).remaining(now, id)
    }

    /// Whether this member counts leases down.
    pub fn is_primary(&self) -> bool {
        lock(&self.lessor).is_primary()
    }
}

/// Starts [`run`].
pub fn spawn(core: Core, keeper: Arc<Keeper>, closing: watch::Receiver<bool>) {
    tokio::spawn(run(core, keeper, closing));
}

/// Drives `keeper` on this member until `closing`.
pub async fn run(core: Core, keeper: Arc<Keeper>, mut closing: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The term this member caught up in as leader.
    let mut caught_up: Option<u64> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = closing.wait_for(|c| *c) => return,
        }
        let term = core.node.term().0;
        let leads = core.node.leader() == Some(core.me);
        if !leads {
            caught_up = None;
        } else if caught_up != Some(term) && core.read_barrier().await.is_ok() {
            // Applied through a barrier of this term: the table is whole.
            caught_up = Some(term);
        }
        let leads_in = caught_up.filter(|&t| leads && t == term);
        let (expired, checkpoints) = {
            let sm = lock(&core.sm);
            let table = sm.replica.store().leases();
            let now = keeper.now_ms();
            let mut lessor = lock(&keeper.lessor);
            lessor.sync(now, leads_in, table);
            (
                lessor.expired(now, REVOKES_PER_TICK),
                lessor.checkpoints(now, table),
            )
        };
        for id in expired {
            let core = core.clone();
            tokio::spawn(async move {
                match core.write(Op::LeaseRevoke { id }).await {
                    Ok(_) => tracing::debug!(lease = %format!("{id:016x}"), "lease expired"),
                    Err(e) => tracing::debug!(lease = id, error = %e, "revoking an expired lease"),
                }
            });
        }
        for checkpoints in checkpoints {
            let core = core.clone();
            tokio::spawn(async move {
                if let Err(e) = core.write(Op::LeaseCheckpoint { checkpoints }).await {
                    tracing::debug!(error = %e, "lease checkpoint");
                }
            });
        }
    }
}

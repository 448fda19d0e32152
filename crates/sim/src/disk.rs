//! A simulated disk that forgets: writes land in a volatile cache and only
//! `sync` makes them durable. On a crash, the durable state survives plus a
//! random prefix of the unsynced writes, the last of which may be torn (an
//! append keeps only a prefix of its entries), as a real disk with a page
//! cache does.
//!
//! A sync may also be split in two, as an asynchronous write's is: it
//! covers the writes made before [`SimDisk::begin_sync`], and they become
//! durable only at [`SimDisk::finish_sync`]; writes made in between wait
//! for a later sync.
//!
//! Invariant: `view` is always `durable` with every pending write applied;
//! after `crash`, `view == durable`.

use std::convert::Infallible;

use flotilla_raft::codec::Encode;
use flotilla_raft::rng::SplitMix64;
use flotilla_raft::{
    Entry, HardState, InitialState, LogIndex, MemStorage, Snapshot, Storage, Term,
};

#[derive(Clone, Debug)]
enum Write {
    Snapshot(Snapshot),
    Append(Vec<Entry>),
    HardState(HardState),
}

/// One node's disk.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    durable: MemStorage,
    view: MemStorage,
    pending: Vec<Write>,
    /// The sequence number of `pending[0]` (writes are numbered from 0 for
    /// the disk's lifetime, so a sync begun before a crash covers nothing
    /// after it).
    pending_base: u64,
    /// Number of syncs so far.
    pub syncs: u64,
}

fn apply(store: &mut MemStorage, w: &Write) {
    // MemStorage cannot fail.
    let _ = match w {
        Write::Snapshot(s) => store.save_snapshot(s),
        Write::Append(e) => store.append(e),
        Write::HardState(h) => store.save_hard_state(h),
    };
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// Loses power: keeps the durable state plus a random prefix of the
    /// unsynced writes, tearing the last one kept when `tear` allows.
    pub fn crash(&mut self, rng: &mut SplitMix64, lose_unsynced: bool) {
        let pending = std::mem::take(&mut self.pending);
        self.pending_base += pending.len() as u64;
        let keep = if lose_unsynced {
            rng.range(0, pending.len() as u64 + 1) as usize
        } else {
            pending.len()
        };
        for (i, w) in pending.iter().take(keep).enumerate() {
            match w {
                Write::Append(entries) if lose_unsynced && i + 1 == keep => {
                    let torn = rng.range(0, entries.len() as u64 + 1) as usize;
                    apply(&mut self.durable, &Write::Append(entries[..torn].to_vec()));
                }
                w => apply(&mut self.durable, w),
            }
        }
        self.view = self.durable.clone();
    }

    /// Bytes of Raft state on disk (hard state and log since the snapshot),
    /// as the course's `RaftStateSize` measures them.
    pub fn raft_state_bytes(&self) -> u64 {
        let state = self.view.state();
        let mut buf = Vec::new();
        state.hard_state.encode(&mut buf);
        for e in &state.entries {
            e.encode(&mut buf);
        }
        buf.len() as u64
    }

    /// Bytes of the snapshot on disk (its application data).
    pub fn snapshot_bytes(&self) -> u64 {
        self.view
            .state()
            .snapshot
            .as_ref()
            .map_or(0, |s| s.data.len() as u64)
    }

    /// What a restart would read (after a crash: what survived).
    pub fn contents(&self) -> &InitialState {
        self.view.state()
    }

    /// Whether the synced state holds the entry at `index` of `term`, itself
    /// or inside a snapshot (which holds only committed entries).
    pub fn durably_holds(&self, index: LogIndex, term: Term) -> bool {
        let state = self.durable.state();
        if state
            .snapshot
            .as_ref()
            .is_some_and(|s| s.meta.index >= index)
        {
            return true;
        }
        let Some(first) = state.entries.first() else {
            return false;
        };
        index
            .0
            .checked_sub(first.index.0)
            .and_then(|offset| state.entries.get(offset as usize))
            .is_some_and(|e| e.term == term)
    }

    /// Starts a sync of every write made so far; returns the token to
    /// finish it with.
    pub fn begin_sync(&self) -> u64 {
        self.pending_base + self.pending.len() as u64
    }

    /// Finishes a sync begun with [`SimDisk::begin_sync`]: the writes it
    /// covers (those still pending) become durable.
    pub fn finish_sync(&mut self, token: u64) {
        let n = (token.saturating_sub(self.pending_base) as usize).min(self.pending.len());
        for w in self.pending.drain(..n) {
            apply(&mut self.durable, &w);
        }
        self.pending_base += n as u64;
        self.syncs += 1;
    }

    fn write(&mut self, w: Write) {
        apply(&mut self.view, &w);
        self.pending.push(w);
    }
}

impl Storage for SimDisk {
    type Error = Infallible;

    fn initial_state(&mut self) -> Result<InitialState, Infallible> {
        Ok(self.view.state().clone())
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), Infallible> {
        self.write(Write::Snapshot(snapshot.clone()));
        Ok(())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), Infallible> {
        self.write(Write::Append(entries.to_vec()));
        Ok(())
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), Infallible> {
        self.write(Write::HardState(*hard_state));
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Infallible> {
        self.finish_sync(self.begin_sync());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use flotilla_raft::storage::conformance::{Harness, entry, run_all};
    use flotilla_raft::{LogIndex, Term};

    use super::*;

    struct Disks;

    impl Harness for Disks {
        type S = SimDisk;
        fn fresh(&mut self) -> SimDisk {
            SimDisk::new()
        }
        fn reopen(&mut self, mut s: SimDisk) -> SimDisk {
            s.crash(&mut SplitMix64::new(1), true);
            s
        }
    }

    #[test]
    fn sim_disk_passes_the_conformance_suite() {
        run_all(&mut Disks);
    }

    #[test]
    fn a_split_sync_covers_only_the_writes_made_before_it_began() {
        let mut d = SimDisk::new();
        d.append(&[entry(1, 1)]).unwrap();
        let token = d.begin_sync();
        d.append(&[entry(1, 2)]).unwrap();
        d.finish_sync(token);
        assert!(d.durably_holds(LogIndex(1), Term(1)));
        assert!(!d.durably_holds(LogIndex(2), Term(1)));
        // A sync begun before a crash covers nothing written after it.
        let stale = d.begin_sync();
        d.crash(&mut SplitMix64::new(3), true);
        d.append(&[entry(2, 2)]).unwrap();
        d.finish_sync(stale);
        assert!(!d.durably_holds(LogIndex(2), Term(2)));
        d.sync().unwrap();
        assert!(d.durably_holds(LogIndex(2), Term(2)));
    }

    #[test]
    fn crash_keeps_every_synced_write_and_a_prefix_of_the_rest() {
        for seed in 0..200 {
            let mut d = SimDisk::new();
            d.append(&[entry(1, 1), entry(1, 2)]).unwrap();
            d.sync().unwrap();
            d.append(&[entry(1, 3), entry(1, 4), entry(1, 5)]).unwrap();
            d.save_hard_state(&HardState {
                term: Term(1),
                vote: None,
                commit: LogIndex(5),
            })
            .unwrap();
            d.crash(&mut SplitMix64::new(seed), true);
            let s = d.contents();
            assert!(s.entries.len() >= 2, "seed {seed}: a synced entry was lost");
            for (i, e) in s.entries.iter().enumerate() {
                assert_eq!(e.index, LogIndex(i as u64 + 1), "seed {seed}: not a prefix");
            }
            if s.hard_state.commit == LogIndex(5) {
                assert_eq!(
                    s.entries.len(),
                    5,
                    "seed {seed}: later write kept without earlier one"
                );
            }
        }
    }
}

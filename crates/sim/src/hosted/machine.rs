//! The replicated application the hosted simulation runs: a digest chain
//! over the applied commands and conf changes, which records every entry
//! it applies in a ledger that all members share ([`Ledger`]), so that
//! any two members that apply different entries at one index, skip an
//! index, compute different configurations, or restore a snapshot that
//! does not match the log are caught the moment they do.
//!
//! Like a server's member table, the chain keeps the group's members
//! (from the conf changes it applies) and the ids removed, and hands
//! them to the host as its [`PeerTable`]: the host points the transport
//! at it, and learns from it that its own member was removed.
//!
//! The chain wraps the application's own machine (an [`super::App`]'s),
//! which applies every entry after the chain has checked it, and whose
//! output is the host's answer.
//!
//! A snapshot holds the last applied index, the digest, the member
//! table and the application's snapshot; restoring one checks the digest
//! and the configuration against the ledger's at that index.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flotilla_host::{ApplyError, PeerTable, RestoreError, SnapshotJob, StateMachine};
use flotilla_raft::codec::{Decoder, put_bytes, put_u64};
use flotilla_raft::{ConfState, Decode, DecodeError, Encode, Entry, EntryKind, LogIndex, NodeId};

pub use super::ledger::Ledger;

/// Locks the ledger (a poisoned lock is a test failure already reported).
pub(crate) fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}

/// Locks a member's chain (a poisoned lock is a test failure already
/// reported).
pub(crate) fn lock_chain<M>(chain: &Mutex<Chain<M>>) -> std::sync::MutexGuard<'_, Chain<M>> {
    chain.lock().unwrap_or_else(|p| p.into_inner())
}

/// One member's copy of the application, `M` the app's machine.
#[derive(Debug)]
pub struct Chain<M> {
    member: u64,
    applied: LogIndex,
    digest: u64,
    /// The configuration as of `applied`, from the conf changes applied.
    conf: ConfState,
    /// Members removed so far (an id is never used again).
    removed: BTreeSet<NodeId>,
    /// A conf change was applied or a snapshot restored: the machine
    /// holds a member table (before that, the transport keeps the one
    /// the member was started with, as a joining server's does).
    table_known: bool,
    ledger: Arc<Mutex<Ledger>>,
    /// The application's machine.
    pub inner: M,
}

impl<M> Chain<M> {
    /// An empty chain of `member` over `inner`, recording into `ledger`,
    /// whose bootstrap configuration it starts from.
    pub fn new(member: u64, ledger: Arc<Mutex<Ledger>>, inner: M) -> Chain<M> {
        let conf = lock(&ledger).initial.clone();
        Chain {
            inner,
            member,
            applied: LogIndex(0),
            digest: 0,
            conf,
            removed: BTreeSet::new(),
            table_known: false,
            ledger,
        }
    }

    /// The last index applied (or restored from a snapshot).
    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    /// Applies the conf change `data` at `index` to the member table, and
    /// records it in the ledger (which checks every member agrees).
    fn apply_conf_change(&mut self, ledger: &mut Ledger, index: LogIndex, data: &Bytes) {
        self.table_known = true;
        let Some(next) = Ledger::next_conf(&self.conf, data) else {
            return;
        };
        let gone = self.conf.members().into_iter();
        let gone: Vec<NodeId> = gone.filter(|id| !next.members().contains(id)).collect();
        self.removed.extend(gone);
        self.conf = next;
        ledger.record_conf(self.member, index, &self.conf);
        if self.removed.contains(&NodeId(self.member)) {
            ledger.removed_at.entry(self.member).or_insert(index);
        }
    }
}

/// The digest after applying `data` at `index` on top of `digest`.
fn chain(digest: u64, index: LogIndex, data: &[u8]) -> u64 {
    let mut h = digest ^ index.get().wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
    }
    h
}

impl<M: StateMachine> StateMachine for Chain<M> {
    /// The application's answer.
    type Output = M::Output;

    fn apply(&mut self, e: &Entry) -> Result<M::Output, ApplyError> {
        let ledger = Arc::clone(&self.ledger);
        let mut ledger = lock(&ledger);
        if e.index != self.applied.next() {
            let what = format!(
                "member {} applied index {} after {}",
                self.member, e.index, self.applied
            );
            ledger.violate(what);
        }
        // Conf changes are chained too: members that agree on the digest
        // agree on the configuration at every index.
        let data: &[u8] = match e.kind {
            EntryKind::Command | EntryKind::ConfChange => &e.data,
            _ => &[],
        };
        self.digest = chain(self.digest, e.index, data);
        self.applied = e.index;
        let (term, digest) = (e.term, self.digest);
        match ledger.entries.get(&e.index) {
            Some((t, d, g)) if (*t, d.as_ref(), *g) != (term, data, digest) => {
                let what = format!(
                    "member {} applied at {} term {term}, another member term {t} (different entry or history)",
                    self.member, e.index
                );
                ledger.violate(what);
            }
            Some(_) => {}
            None => {
                let record = (term, Bytes::copy_from_slice(data), digest);
                ledger.entries.insert(e.index, record);
            }
        }
        if e.kind == EntryKind::ConfChange {
            self.apply_conf_change(&mut ledger, e.index, &e.data);
        }
        drop(ledger);
        let out = self.inner.apply(e)?;
        if e.kind == EntryKind::ConfChange {
            self.check_inner_table();
        }
        Ok(out)
    }

    fn snapshot(&self) -> Bytes {
        let mut out = self.header();
        put_bytes(&mut out, &self.inner.snapshot());
        Bytes::from(out)
    }

    /// The chain's part now, the application's from its own job.
    fn snapshot_job(&self) -> SnapshotJob {
        let header = self.header();
        let inner = self.inner.snapshot_job();
        Box::new(move || {
            let mut out = header;
            put_bytes(&mut out, &inner());
            Bytes::from(out)
        })
    }

    fn restore(&mut self, data: &Bytes) -> Result<(), RestoreError> {
        let snap = decode_snapshot(data).map_err(|e| RestoreError(Box::new(e)))?;
        let mut ledger = lock(&self.ledger);
        if ledger
            .entries
            .get(&snap.index)
            .is_some_and(|(_, _, g)| *g != snap.digest)
        {
            let what = format!(
                "member {} restored a snapshot at {} whose digest is not the log's",
                self.member, snap.index
            );
            ledger.violate(what);
        }
        if ledger.conf_at(snap.index) != &snap.conf {
            let what = format!(
                "member {} restored a snapshot at {} with configuration {:?}, the log's is {:?}",
                self.member,
                snap.index,
                snap.conf,
                ledger.conf_at(snap.index)
            );
            ledger.violate(what);
        }
        drop(ledger);
        self.applied = snap.index;
        self.digest = snap.digest;
        self.table_known = snap.table_known;
        self.conf = snap.conf;
        self.removed = snap.removed;
        self.inner.restore(&snap.inner)?;
        self.check_inner_table();
        Ok(())
    }

    /// Every member of the configuration, at an address named after it.
    fn peer_table(&self) -> Option<PeerTable> {
        if !self.table_known {
            return None;
        }
        let addrs = self.conf.members().into_iter();
        Some(PeerTable {
            addrs: addrs.map(|id| (id, format!("sim-{id}"))).collect(),
            removed: self.removed.clone(),
        })
    }
}

impl<M: StateMachine> Chain<M> {
    /// Checks the application's own member table, if it keeps one,
    /// against the configuration: its members (each with an address) are
    /// the configuration's, outgoing voters of a joint configuration
    /// included, and it names as removed the ids removed that are no
    /// longer members.
    fn check_inner_table(&self) {
        let Some(table) = self.inner.peer_table() else {
            return;
        };
        let members = self.conf.members();
        let listed: Vec<NodeId> = table.addrs.keys().copied().collect();
        let removed: BTreeSet<NodeId> = self
            .removed
            .iter()
            .filter(|id| !members.contains(id))
            .copied()
            .collect();
        if listed != members || table.removed != removed {
            let what = format!(
                "member {} at {}: the machine's member table lists {listed:?} (removed {:?}), \
                 the configuration is {:?} (removed {removed:?})",
                self.member, self.applied, table.removed, self.conf
            );
            lock(&self.ledger).violate(what);
        }
    }
}

impl<M> Chain<M> {
    /// The chain's own part of a snapshot.
    fn header(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        put_u64(&mut out, self.applied.get());
        put_u64(&mut out, self.digest);
        put_u64(&mut out, u64::from(self.table_known));
        self.conf.encode(&mut out);
        put_u64(&mut out, self.removed.len() as u64);
        for id in &self.removed {
            put_u64(&mut out, id.get());
        }
        out
    }
}

/// A chain's snapshot, decoded.
struct ChainSnapshot {
    inner: Bytes,
    index: LogIndex,
    digest: u64,
    table_known: bool,
    conf: ConfState,
    removed: BTreeSet<NodeId>,
}

fn decode_snapshot(data: &Bytes) -> Result<ChainSnapshot, DecodeError> {
    let mut d = Decoder::new(data.clone());
    let index = LogIndex(d.u64("snapshot index")?);
    let digest = d.u64("snapshot digest")?;
    let table_known = d.u64("snapshot table flag")? != 0;
    let conf = ConfState::decode(&mut d)?;
    let n = d.count("removed members")?;
    let removed = (0..n)
        .map(|_| d.u64("removed member").map(NodeId))
        .collect::<Result<_, _>>()?;
    let inner = d.bytes("application snapshot")?;
    d.finish("chain snapshot")?;
    Ok(ChainSnapshot {
        inner,
        index,
        digest,
        table_known,
        conf,
        removed,
    })
}

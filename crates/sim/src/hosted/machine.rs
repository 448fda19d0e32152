//! The replicated application the hosted simulation runs: a digest chain
//! over the applied commands, which records every entry it applies in a
//! ledger that all members share, so that any two members that apply
//! different entries at one index, skip an index, or restore a snapshot
//! that does not match the log are caught the moment they do.
//!
//! A snapshot holds `(last applied index, digest)`; restoring one checks
//! the digest against the ledger's at that index.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flotilla_host::{ApplyError, RestoreError, StateMachine};
use flotilla_raft::codec::{Decoder, put_u64};
use flotilla_raft::{Entry, EntryKind, LogIndex, Term};

/// What every member applied, index by index, as the first to apply it
/// recorded; and the first disagreement seen.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Per index: the term and data of the entry, and the digest after it.
    pub entries: BTreeMap<LogIndex, (Term, Bytes, u64)>,
    /// The first rule broken, if any.
    pub violation: Option<String>,
}

impl Ledger {
    fn violate(&mut self, what: String) {
        self.violation.get_or_insert(what);
    }
}

/// Locks the ledger (a poisoned lock is a test failure already reported).
pub(crate) fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}

/// One member's copy of the application.
#[derive(Debug)]
pub struct Chain {
    member: u64,
    applied: LogIndex,
    digest: u64,
    ledger: Arc<Mutex<Ledger>>,
}

impl Chain {
    /// An empty chain of `member`, recording into `ledger`.
    pub fn new(member: u64, ledger: Arc<Mutex<Ledger>>) -> Chain {
        Chain {
            member,
            applied: LogIndex(0),
            digest: 0,
            ledger,
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

impl StateMachine for Chain {
    /// The index the command was applied at.
    type Output = LogIndex;

    fn apply(&mut self, e: &Entry) -> Result<LogIndex, ApplyError> {
        let mut ledger = lock(&self.ledger);
        if e.index != self.applied.next() {
            let what = format!(
                "member {} applied index {} after {}",
                self.member, e.index, self.applied
            );
            ledger.violate(what);
        }
        let data: &[u8] = if e.kind == EntryKind::Command {
            &e.data
        } else {
            &[]
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
        Ok(e.index)
    }

    fn snapshot(&self) -> Bytes {
        let mut out = Vec::with_capacity(16);
        put_u64(&mut out, self.applied.get());
        put_u64(&mut out, self.digest);
        Bytes::from(out)
    }

    fn restore(&mut self, data: &Bytes) -> Result<(), RestoreError> {
        let mut d = Decoder::new(data.clone());
        let decoded = d
            .u64("snapshot index")
            .and_then(|i| Ok((LogIndex(i), d.u64("snapshot digest")?)));
        let (index, digest) = decoded.map_err(|e| RestoreError(Box::new(e)))?;
        let mut ledger = lock(&self.ledger);
        match ledger.entries.get(&index) {
            Some((_, _, g)) if *g != digest => {
                let what = format!(
                    "member {} restored a snapshot at {index} whose digest is not the log's",
                    self.member
                );
                ledger.violate(what);
            }
            _ => {}
        }
        self.applied = index;
        self.digest = digest;
        Ok(())
    }
}

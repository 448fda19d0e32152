//! The key space: the current value of every key with etcd's revisions, and
//! the operations on it. A store made [`Store::with_history`] also keeps
//! every change since its last compaction (etcd's MVCC, `history.rs`), so
//! reads at older revisions and watch replays are served; a plain store
//! (the course's KV) keeps none, as if compacted at every write.
//!
//! Invariants:
//! - `revision` is the number of write operations (a transaction with
//!   writes counts once) applied since the store was created; it never goes
//!   back;
//! - every stored key has `0 < create_rev <= mod_rev <= revision` and
//!   `version >= 1`; an absent key has no entry (version 0, as etcd);
//! - a delete of an absent key, a delete-range that matches no key, and a
//!   transaction that writes nothing, leave `revision` unchanged; a
//!   delete-range that removes several keys is one write (one revision);
//! - asking for the write's [`Event`]s ([`Store::apply_recording`]) changes
//!   nothing in the store: it only copies pairs out;
//! - with history, every change is recorded at its write's revision, and
//!   `compacted <= revision`; reads at a revision below `compacted` or
//!   above `revision` are refused ([`Store::check_state`]).

use std::collections::BTreeSet;
use std::ops::Bound;

use bytes::Bytes;

use crate::auth::Auth;
use crate::check::Refusal;
use crate::chunked::ChunkMap;
use crate::command::{AlarmKind, CmpOp, Compare, CompareSpan, KeyValue, Op, Response, Target, Txn};
use crate::event::Event;
use crate::history::{History, Replay};
use crate::lease::Leases;

/// Where a write's events go, when someone asked for them.
type Sink<'a> = Option<&'a mut Vec<Event>>;

/// One key's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) value: Bytes,
    pub(crate) create_rev: u64,
    pub(crate) mod_rev: u64,
    pub(crate) version: u64,
    pub(crate) lease: i64,
}

/// The store. See the module docs for its invariants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Store {
    pub(crate) kvs: ChunkMap<Bytes, Slot>,
    pub(crate) revision: u64,
    pub(crate) history: Option<History>,
    pub(crate) leases: Leases,
    /// The alarms raised, by member.
    pub(crate) alarms: BTreeSet<(u64, AlarmKind)>,
    /// The added members that have started ([`Op::MemberStarted`]).
    pub(crate) started: BTreeSet<u64>,
    /// Users, roles and whether auth is on.
    pub(crate) auth: Auth,
}

pub(crate) fn pair(key: &Bytes, s: &Slot) -> KeyValue {
    KeyValue {
        key: key.clone(),
        value: s.value.clone(),
        create_rev: s.create_rev,
        mod_rev: s.mod_rev,
        version: s.version,
        lease: s.lease,
    }
}

impl Store {
    /// An empty store at revision 0.
    pub fn new() -> Store {
        Store::default()
    }

    /// An empty store at revision 0 that keeps its history (MVCC).
    pub fn with_history() -> Store {
        Store {
            history: Some(History::default()),
            ..Store::default()
        }
    }

    /// Whether the store keeps history.
    pub fn keeps_history(&self) -> bool {
        self.history.is_some()
    }

    /// Starts keeping history from the current revision on (a store
    /// restored from a snapshot without history): the current pairs are
    /// the history, compacted at the current revision.
    pub fn keep_history(&mut self) {
        if self.history.is_some() {
            return;
        }
        let mut base: Vec<(&Bytes, &Slot)> = self.kvs.iter().collect();
        // In revision order, as written (stable: keys of one write keep
        // key order), so each write's keys get their sub-revisions.
        base.sort_by_key(|(_, s)| s.mod_rev);
        let mut h = History::from_changes(self.revision, []);
        for (k, s) in base {
            h.record(k, s.mod_rev, Some(s.clone()));
        }
        self.history = Some(h);
    }

    /// The store revision.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The revision of the last compaction: reads at revisions below it
    /// are refused. A store without history is compacted at its current
    /// revision.
    pub fn compacted(&self) -> u64 {
        self.history.as_ref().map_or(self.revision, |h| h.compacted)
    }

    /// Checks what `op` needs of the store's state, nested in a
    /// transaction too, as etcd does before it applies or reads: the
    /// revision a range or a compaction names, and that a key rewritten
    /// with its own value exists. A transaction is checked against the
    /// state before it, as a whole.
    pub fn check_state(&self, op: &Op) -> Result<(), Refusal> {
        // First: etcd's corrupt applier refuses a write whatever else
        // is wrong with it.
        self.check_corrupt(op)?;
        self.check_auth(op)?;
        self.check_revisions(op)?;
        self.check_leases(op)?;
        self.check_space(op)
    }

    /// A user's operation is refused unless it may run it; an auth change,
    /// unless the auth store's state allows it.
    fn check_auth(&self, op: &Op) -> Result<(), Refusal> {
        match op {
            Op::AsUser { op: asked, .. } => {
                self.check_caller(op)?;
                // What the user asks must also suit the auth store's state.
                self.check_auth(asked)
            }
            Op::Auth(a) => self.auth.check(a).map_err(Refusal::Auth),
            _ => Ok(()),
        }
    }

    /// The permission check alone of an operation on behalf of a user
    /// (none for any other): what a retried request must still pass.
    pub fn check_caller(&self, op: &Op) -> Result<(), Refusal> {
        match op {
            Op::AsUser { user, op } => self
                .auth
                .permits(user, op, &self.leases)
                .map_err(Refusal::Auth),
            _ => Ok(()),
        }
    }

    /// The auth store.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// While a CORRUPT alarm is raised (by any member), writes are
    /// refused ([`Op::refused_when_corrupt`]).
    fn check_corrupt(&self, op: &Op) -> Result<(), Refusal> {
        let corrupt = self.alarms.iter().any(|(_, k)| *k == AlarmKind::Corrupt);
        if corrupt && op.refused_when_corrupt() {
            Err(Refusal::Corrupt)
        } else {
            Ok(())
        }
    }

    /// While a NOSPACE alarm is raised, what adds data is refused, as
    /// etcd's capped applier refuses it: a put, a transaction with a put
    /// in either branch, a lease grant.
    fn check_space(&self, op: &Op) -> Result<(), Refusal> {
        let capped = self.alarms.iter().any(|(_, k)| *k == AlarmKind::NoSpace);
        if capped && op.adds_data() {
            Err(Refusal::NoSpace)
        } else {
            Ok(())
        }
    }

    /// Whether member `member` recorded its start ([`Op::MemberStarted`]).
    pub fn started(&self, member: u64) -> bool {
        self.started.contains(&member)
    }

    /// The alarms raised: each member's, by member.
    pub fn alarms(&self) -> impl Iterator<Item = (u64, AlarmKind)> + '_ {
        self.alarms.iter().copied()
    }

    /// About how many bytes the store's data takes: its history's changes
    /// (swept or not: a sweep frees them) or, without history, its pairs.
    /// What `--quota-backend-bytes` measures. Not part of the replicated
    /// state: replicas that swept different amounts differ.
    pub fn size_bytes(&self) -> u64 {
        match &self.history {
            Some(h) => h.bytes,
            None => self
                .kvs
                .iter()
                .map(|(k, s)| (k.len() + s.value.len()) as u64 + 64)
                .sum(),
        }
    }

    /// The revision and key checks of [`Store::check_state`], on both
    /// branches of a transaction.
    fn check_revisions(&self, op: &Op) -> Result<(), Refusal> {
        let compacted = self.compacted();
        match op {
            Op::Range { revision: 0, .. } => Ok(()),
            Op::Range { revision, .. } if *revision > self.revision => {
                Err(Refusal::FutureRevision {
                    requested: *revision,
                    current: self.revision,
                })
            }
            Op::Range { revision, .. } if *revision < compacted => Err(Refusal::Compacted {
                requested: *revision,
                compacted,
            }),
            Op::Compact { revision } if *revision > self.revision => Err(Refusal::FutureRevision {
                requested: *revision,
                current: self.revision,
            }),
            // etcd refuses a compaction at or below the last one.
            Op::Compact { revision } if *revision <= compacted || self.history.is_none() => {
                Err(Refusal::Compacted {
                    requested: *revision,
                    compacted,
                })
            }
            Op::Rewrite { key, .. } if self.kvs.get(key).is_none() => Err(Refusal::KeyNotFound),
            Op::AsUser { op, .. } => self.check_revisions(op),
            Op::Txn(t) => t
                .success
                .iter()
                .chain(&t.failure)
                .try_for_each(|op| self.check_revisions(op)),
            _ => Ok(()),
        }
    }

    /// The lease checks of [`Store::check_state`]: a put's lease exists,
    /// a granted one does not yet, a revoked one does. In a transaction
    /// only the branch that will run is checked, as etcd does.
    fn check_leases(&self, op: &Op) -> Result<(), Refusal> {
        let exists = |id: i64| {
            if id == 0 || self.leases.contains(id) {
                Ok(())
            } else {
                Err(Refusal::LeaseNotFound { id })
            }
        };
        match op {
            Op::Put { lease, .. }
            | Op::Rewrite {
                lease: Some(lease), ..
            } => exists(*lease),
            Op::LeaseGrant { id, .. } if self.leases.contains(*id) => {
                Err(Refusal::LeaseExists { id: *id })
            }
            Op::LeaseRevoke { id } if !self.leases.contains(*id) => {
                Err(Refusal::LeaseNotFound { id: *id })
            }
            Op::Txn(t) => {
                let succeeded = t.compares.iter().all(|c| self.holds(c));
                let branch = if succeeded { &t.success } else { &t.failure };
                branch.iter().try_for_each(|op| self.check_leases(op))
            }
            Op::AsUser { op, .. } => self.check_leases(op),
            _ => Ok(()),
        }
    }

    /// The leases.
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// Forgets up to about `budget` changes that the last compaction made
    /// obsolete; returns whether some remain. Writes do this a little at
    /// a time; a host may call it when idle.
    pub fn sweep(&mut self, budget: usize) -> bool {
        self.history.as_mut().is_some_and(|h| h.sweep(budget))
    }

    /// Sets how many obsolete changes each applied operation forgets at
    /// most (256 by default; 0: only [`Store::sweep`] forgets). Not part
    /// of the replicated state: replicas may differ.
    pub fn set_sweep_per_apply(&mut self, budget: usize) {
        if let Some(h) = &mut self.history {
            h.sweep_per_apply = budget;
        }
    }

    /// A checksum of the key space's history up to `revision` (0: the
    /// current one), and the compaction it starts from: etcd's HashKV,
    /// equal on replicas that applied the same log. A store without
    /// history hashes its current pairs (only at its revision).
    pub fn hash_kv(&self, revision: u64) -> Result<(u32, u64), Refusal> {
        let revision = if revision == 0 {
            self.revision
        } else {
            revision
        };
        self.check_state(&Op::range_at(Bytes::new(), None, 0, revision))?;
        let hash = match &self.history {
            Some(h) => h.hash(revision),
            None => self.kvs.iter().fold(0, |crc, (k, s)| {
                let rev = crate::history::Rev {
                    main: s.mod_rev,
                    sub: 0,
                };
                crate::history::hash_change(crc, rev, k, Some(s))
            }),
        };
        Ok((hash, self.compacted()))
    }

    /// The number of changes the history holds (swept or not): what its
    /// memory grows with.
    pub fn history_len(&self) -> usize {
        self.history.as_ref().map_or(0, |h| h.changes.len())
    }

    /// The watch events of the changes to keys in `[start, end)` (`end:
    /// None`: to the last key) from revision `from` through `to`, whole
    /// revisions at a time until about `budget` changes were read.
    /// Refused if `from` is below the compaction (or the store keeps no
    /// history and `from` is not after its revision).
    pub fn replay(
        &self,
        from: u64,
        to: u64,
        start: &Bytes,
        end: Option<&Bytes>,
        budget: usize,
    ) -> Result<Replay, Refusal> {
        let compacted = self.compacted();
        let to = to.min(self.revision);
        if from > to {
            return Ok(Replay {
                events: Vec::new(),
                next: from,
            });
        }
        let history = match &self.history {
            Some(h) if from >= compacted => h,
            _ => {
                return Err(Refusal::Compacted {
                    requested: from,
                    compacted,
                });
            }
        };
        let Some((lo, hi)) = bounds(start, end) else {
            return Ok(Replay {
                events: Vec::new(),
                next: to + 1,
            });
        };
        Ok(history.replay(from, to, lo.as_ref(), hi.as_ref(), budget))
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.kvs.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.kvs.is_empty()
    }

    /// A key's pair, if present.
    pub fn get(&self, key: &[u8]) -> Option<KeyValue> {
        self.kvs.get_key_value(key).map(|(k, s)| pair(k, s))
    }

    /// Applies `op` and returns its answer; writes take revision
    /// `self.revision + 1`.
    pub fn apply(&mut self, op: &Op) -> Response {
        self.apply_recording(op, None)
    }

    /// [`Store::apply`], and if `events` is given, appends to it the
    /// changes `op` made, in the order it made them (etcd's watch events;
    /// all at the new revision).
    pub fn apply_recording(&mut self, op: &Op, events: Option<&mut Vec<Event>>) -> Response {
        let rev = self.revision + 1;
        let mut wrote = false;
        let r = self.apply_at(op, rev, &mut wrote, events);
        if wrote {
            self.revision = rev;
        }
        if let Some(h) = &mut self.history {
            h.sweep(h.sweep_per_apply);
        }
        r
    }

    /// Answers a read-only `op` without changing anything.
    ///
    /// # Panics
    /// If `op` writes (a bug in the caller, which checks
    /// [`Op::is_read_only`]).
    pub fn read(&self, op: &Op) -> Response {
        assert!(op.is_read_only(), "Store::read given a write: {op:?}");
        StoreView(self).read(op)
    }

    fn apply_at(&mut self, op: &Op, rev: u64, wrote: &mut bool, ev: Sink<'_>) -> Response {
        match op {
            Op::Get { .. } | Op::Range { .. } => StoreView(self).read(op),
            Op::Put { key, value, lease } => {
                self.write(key, rev, ev, Some(*lease), |_| value.clone());
                *wrote = true;
                Response::Written
            }
            Op::Append { key, value } => {
                self.write(key, rev, ev, None, |old| {
                    let mut v = Vec::with_capacity(old.len() + value.len());
                    v.extend_from_slice(old);
                    v.extend_from_slice(value);
                    Bytes::from(v)
                });
                *wrote = true;
                Response::Written
            }
            Op::Delete { key } => {
                let existed = self.remove(key, rev, ev).is_some();
                *wrote |= existed;
                Response::Deleted(existed)
            }
            Op::Rewrite { key, value, lease } => {
                // The caller checked that the key exists (`check_state`).
                self.write(key, rev, ev, *lease, |old| {
                    value.clone().unwrap_or_else(|| old.clone())
                });
                *wrote = true;
                Response::Written
            }
            Op::Compact { .. }
            | Op::LeaseGrant { .. }
            | Op::LeaseRevoke { .. }
            | Op::LeaseCheckpoint { .. }
            | Op::Alarm { .. }
            | Op::MemberStarted { .. } => self.apply_meta(op, rev, wrote, ev),
            Op::DeleteRange {
                start,
                end,
                prev_kv,
            } => {
                let r = self.delete_range(start, end.as_ref(), *prev_kv, rev, ev);
                *wrote |= matches!(r, Response::DeletedRange { deleted, .. } if deleted > 0);
                r
            }
            Op::Txn(t) => self.txn(t, rev, wrote, ev),
            // The caller checked the user's permission (`check_state`).
            Op::AsUser { op, .. } => self.apply_at(op, rev, wrote, ev),
            Op::Auth(a) => {
                // The caller checked the change (`check_state`).
                self.auth.apply(a);
                Response::Authed
            }
        }
    }

    /// Applies what is not a key's write: a compaction, the lease
    /// operations (a revoke deletes the lease's keys, at `rev`), alarms.
    fn apply_meta(&mut self, op: &Op, rev: u64, wrote: &mut bool, ev: Sink<'_>) -> Response {
        match op {
            Op::Compact { revision } => {
                // The caller checked the revision (`check_state`).
                if let Some(h) = &mut self.history {
                    h.compact(*revision);
                }
                Response::Compacted
            }
            Op::LeaseGrant { id, ttl } => {
                // The caller checked that the lease is new (`check_state`).
                self.leases.grant(*id, *ttl);
                Response::Leased
            }
            Op::LeaseRevoke { id } => {
                let keys = self.leases.remove(*id).map(|l| l.keys).unwrap_or_default();
                let mut ev = ev;
                for k in &keys {
                    self.remove(k, rev, ev.as_deref_mut());
                }
                *wrote |= !keys.is_empty();
                Response::Leased
            }
            Op::LeaseCheckpoint { checkpoints } => {
                self.leases.checkpoint(checkpoints);
                Response::Leased
            }
            Op::Alarm {
                raise,
                member,
                kind,
            } => {
                if *raise {
                    self.alarms.insert((*member, *kind));
                } else {
                    self.alarms.remove(&(*member, *kind));
                }
                Response::Alarmed
            }
            Op::MemberStarted { member } => {
                self.started.insert(*member);
                Response::Started
            }
            _ => unreachable!("apply_meta given {op:?}"),
        }
    }

    /// Removes the keys in `[start, end)`, answering how many there were
    /// and, if `prev_kv`, their pairs.
    fn delete_range(
        &mut self,
        start: &Bytes,
        end: Option<&Bytes>,
        prev_kv: bool,
        rev: u64,
        mut ev: Sink<'_>,
    ) -> Response {
        let keys: Vec<Bytes> = match bounds(start, end) {
            Some(b) => self
                .kvs
                .range(b.0.as_ref(), b.1.as_ref())
                .map(|(k, _)| k.clone())
                .collect(),
            None => Vec::new(),
        };
        let mut prev_kvs = Vec::new();
        for k in &keys {
            let Some(s) = self.remove(k, rev, ev.as_deref_mut()) else {
                continue;
            };
            if prev_kv {
                prev_kvs.push(pair(k, &s));
            }
        }
        Response::DeletedRange {
            deleted: keys.len() as u64,
            prev_kvs,
        }
    }

    /// Removes `key` at revision `rev` (recording the change and its
    /// event, taking it off its lease); returns its slot if it existed.
    fn remove(&mut self, key: &Bytes, rev: u64, ev: Sink<'_>) -> Option<Slot> {
        let old = self.kvs.remove(key)?;
        self.leases.detach(key, old.lease);
        if let Some(h) = &mut self.history {
            h.record(key, rev, None);
        }
        if let Some(ev) = ev {
            ev.push(Event::deleted(key, rev, pair(key, &old)));
        }
        Some(old)
    }

    /// Writes `key` at revision `rev` with the value `value` makes of its
    /// old one (empty if new), attached to `lease` (`None`: the one it
    /// has, none if new).
    fn write(
        &mut self,
        key: &Bytes,
        rev: u64,
        ev: Sink<'_>,
        lease: Option<i64>,
        value: impl FnOnce(&Bytes) -> Bytes,
    ) {
        match self.kvs.get_mut(key) {
            Some(s) => {
                let prev = ev.is_some().then(|| pair(key, s));
                s.value = value(&s.value);
                s.mod_rev = rev;
                s.version += 1;
                let lease = lease.unwrap_or(s.lease);
                self.leases.reattach(key, s.lease, lease);
                s.lease = lease;
                if let Some(h) = &mut self.history {
                    h.record(key, rev, Some(s.clone()));
                }
                if let Some(ev) = ev {
                    ev.push(Event::put(pair(key, s), prev));
                }
            }
            None => {
                let slot = Slot {
                    value: value(&Bytes::new()),
                    create_rev: rev,
                    mod_rev: rev,
                    version: 1,
                    lease: lease.unwrap_or(0),
                };
                self.leases.reattach(key, 0, slot.lease);
                if let Some(ev) = ev {
                    ev.push(Event::put(pair(key, &slot), None));
                }
                if let Some(h) = &mut self.history {
                    h.record(key, rev, Some(slot.clone()));
                }
                self.kvs.insert(key.clone(), slot);
            }
        }
    }

    fn txn(&mut self, t: &Txn, rev: u64, wrote: &mut bool, mut ev: Sink<'_>) -> Response {
        let succeeded = t.compares.iter().all(|c| self.holds(c));
        let branch = if succeeded { &t.success } else { &t.failure };
        let responses = branch
            .iter()
            .map(|op| self.apply_at(op, rev, wrote, ev.as_deref_mut()))
            .collect();
        Response::Txn {
            succeeded,
            responses,
        }
    }

    /// Whether a comparison holds now: for a range, on every key in it
    /// (etcd: on none, as for an absent key).
    pub fn holds(&self, c: &Compare) -> bool {
        let CompareSpan::Range(end) = &c.span else {
            return Self::holds_on(c, self.kvs.get(&c.key));
        };
        let Some((lo, hi)) = bounds(&c.key, end.as_ref()) else {
            return Self::holds_on(c, None);
        };
        let mut slots = self.kvs.range(lo.as_ref(), hi.as_ref()).peekable();
        if slots.peek().is_none() {
            return Self::holds_on(c, None);
        }
        slots.all(|(_, s)| Self::holds_on(c, Some(s)))
    }

    /// Whether a comparison holds on one key's slot (`None`: absent).
    fn holds_on(c: &Compare, slot: Option<&Slot>) -> bool {
        let ord = match (&c.target, slot) {
            // etcd: a value comparison on an absent key is false.
            (Target::Value(_), None) => return false,
            (Target::Value(v), Some(s)) => s.value.as_ref().cmp(v.as_ref()),
            (Target::Version(n), s) => s.map_or(0, |s| s.version).cmp(n),
            (Target::CreateRev(n), s) => s.map_or(0, |s| s.create_rev).cmp(n),
            (Target::ModRev(n), s) => s.map_or(0, |s| s.mod_rev).cmp(n),
            (Target::Lease(n), s) => s.map_or(0, |s| s.lease).cmp(n),
        };
        match c.op {
            CmpOp::Equal => ord.is_eq(),
            CmpOp::NotEqual => ord.is_ne(),
            CmpOp::Less => ord.is_lt(),
            CmpOp::Greater => ord.is_gt(),
        }
    }
}

/// The map bounds of `[start, end)` (`end: None`: unbounded), or `None`
/// if the range is empty (`end <= start`).
fn bounds(start: &Bytes, end: Option<&Bytes>) -> Option<(Bound<Bytes>, Bound<Bytes>)> {
    let upper = match end {
        Some(e) if e <= start => return None,
        Some(e) => Bound::Excluded(e.clone()),
        None => Bound::Unbounded,
    };
    Some((Bound::Included(start.clone()), upper))
}

/// Read access shared by [`Store::read`] and reads inside a transaction.
struct StoreView<'a>(&'a Store);

impl StoreView<'_> {
    fn read(&self, op: &Op) -> Response {
        match op {
            Op::Get { key } => Response::Get(self.0.get(key)),
            Op::Range {
                start,
                end,
                limit,
                revision,
            } => self.range(start, end.as_ref(), *limit, *revision),
            Op::Txn(t) => {
                let succeeded = t.compares.iter().all(|c| self.0.holds(c));
                let branch = if succeeded { &t.success } else { &t.failure };
                let responses = branch.iter().map(|op| self.read(op)).collect();
                Response::Txn {
                    succeeded,
                    responses,
                }
            }
            Op::AsUser { op, .. } => self.read(op),
            Op::Put { .. }
            | Op::Auth(_)
            | Op::Append { .. }
            | Op::Delete { .. }
            | Op::DeleteRange { .. }
            | Op::Rewrite { .. }
            | Op::Compact { .. }
            | Op::LeaseGrant { .. }
            | Op::LeaseRevoke { .. }
            | Op::LeaseCheckpoint { .. }
            | Op::Alarm { .. }
            | Op::MemberStarted { .. } => unreachable!("StoreView::read given a write"),
        }
    }

    /// The pairs of `[start, end)` at `revision` (0: the current one),
    /// which the caller checked ([`Store::check_state`]).
    fn range(&self, start: &Bytes, end: Option<&Bytes>, limit: u64, revision: u64) -> Response {
        let Some(b) = bounds(start, end) else {
            return Response::Range {
                kvs: Vec::new(),
                count: 0,
            };
        };
        if revision != 0
            && revision < self.0.revision
            && let Some(h) = &self.0.history
        {
            let (kvs, count) = h.range_at(b.0.as_ref(), b.1.as_ref(), revision, limit);
            return Response::Range { kvs, count };
        }
        let iter = self.0.kvs.range(b.0.as_ref(), b.1.as_ref());
        let mut kvs = Vec::new();
        let mut count = 0;
        for (k, s) in iter {
            count += 1;
            if limit == 0 || (kvs.len() as u64) < limit {
                kvs.push(pair(k, s));
            }
        }
        Response::Range { kvs, count }
    }
}

#[cfg(test)]
mod tests;

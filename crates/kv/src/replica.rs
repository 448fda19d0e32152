//! The replica state machine: the [`Store`] and the [`Sessions`] table, fed
//! committed Raft entries in log order. It knows nothing of who proposed an
//! entry or who waits for its answer (that is `server.rs`), nor of which
//! group it belongs to: a sharded store runs many replicas side by side.
//!
//! Invariants:
//! - entries are applied exactly once each, at `applied + 1`;
//! - a command that fails the checks of `check.rs` is answered with
//!   [`Outcome::Refused`] and changes neither the store nor its revision;
//! - the replicated clock `clock_ms` is the largest leader stamp applied;
//! - `snapshot()` then `restore()` gives a replica equal to the original
//!   (store, sessions, applied index and term, clock): restarting from a
//!   snapshot plus the log after it gives the same state as the whole log.

use bytes::Bytes;
use flotilla_raft::{Entry, EntryKind, LogIndex, Term};
use thiserror::Error;

use crate::check::check_op;
use crate::codec::CodecError;
use crate::command::{Command, Op, Outcome};
use crate::event::Event;
use crate::session::{Admission, SessionLimits, Sessions};
use crate::store::Store;

/// The answer to one applied request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The entry's index.
    pub index: LogIndex,
    /// The entry's term (with the index, it identifies the entry).
    pub term: Term,
    /// The client that sent the request.
    pub client: u64,
    /// The request's number.
    pub seq: u64,
    /// Its outcome (taken from the session table for a duplicate).
    pub outcome: Outcome,
}

/// Why an entry was not applied normally.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ApplyError {
    /// The driver skipped or repeated an entry: a bug in the driver.
    #[error("entry {got} applied out of order: expected {expected}")]
    OutOfOrder {
        /// The index expected.
        expected: LogIndex,
        /// The index given.
        got: LogIndex,
    },
    /// The entry's payload is not a KV command this build can read (a
    /// newer build's, or bytes that are no command). The index still
    /// counts as applied; whether to skip it or stop is the caller's call.
    #[error("entry {index} skipped: {source}")]
    BadCommand {
        /// The entry.
        index: LogIndex,
        /// What was wrong with it.
        source: CodecError,
    },
}

/// The KV state machine of one Raft group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replica {
    pub(crate) store: Store,
    pub(crate) sessions: Sessions,
    pub(crate) applied: LogIndex,
    pub(crate) applied_term: Term,
    pub(crate) clock_ms: u64,
    /// See [`Replica::etcd`]: the numbering is not decided yet (no
    /// command applied, nothing restored).
    pub(crate) numbering_pending: bool,
}

impl Replica {
    /// An empty replica (nothing applied).
    pub fn new(limits: SessionLimits) -> Replica {
        Replica {
            sessions: Sessions::new(limits),
            ..Replica::default()
        }
    }

    /// An empty replica whose store keeps its history (etcd's MVCC): reads
    /// at older revisions and watch replays, until compacted.
    pub fn with_history(limits: SessionLimits) -> Replica {
        Replica {
            store: Store::with_history(),
            ..Replica::new(limits)
        }
    }

    /// A replica whose store keeps history and numbers revisions as etcd
    /// does: revision 1 is the empty store, the first write is revision
    /// 2. etcd's clients count on it: its election recipe waits for keys
    /// created at or before "my revision - 1", where 0 means "no bound",
    /// so a first write at revision 1 would wait for itself.
    ///
    /// The numbering comes from the log, so every replica agrees: a log
    /// written by an earlier build numbered from 0, and its first command
    /// (format 1) takes the store back to revision 0 before it applies,
    /// so that log replays with the numbering it had. What this build
    /// writes (format 2) keeps etcd's.
    pub fn etcd(limits: SessionLimits) -> Replica {
        let mut r = Replica::with_history(limits);
        r.store.revision = 1;
        r.numbering_pending = true;
        r
    }

    /// The store, to forget what a compaction made obsolete when idle
    /// ([`Store::sweep`]); nothing a client sees changes.
    pub fn sweep(&mut self, budget: usize) -> bool {
        self.store.sweep(budget)
    }

    /// See [`Store::set_sweep_per_apply`].
    pub fn set_sweep_per_apply(&mut self, budget: usize) {
        self.store.set_sweep_per_apply(budget);
    }

    /// The last index applied (or restored).
    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    /// The term of the last entry applied.
    pub fn applied_term(&self) -> Term {
        self.applied_term
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The session table.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The replicated clock, in ms.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Applies the committed entry `e`, which must be at `applied + 1`.
    /// Returns the answer of the request it carried (`None` for a no-op or
    /// a membership change).
    pub fn apply(&mut self, e: &Entry) -> Result<Option<Applied>, ApplyError> {
        self.apply_recording(e, None)
    }

    /// [`Replica::apply`], and if `events` is given, appends to it the
    /// changes the entry's write made to the store (none for a read, a
    /// duplicate, a refused request or an entry that is not a command).
    pub fn apply_recording(
        &mut self,
        e: &Entry,
        events: Option<&mut Vec<Event>>,
    ) -> Result<Option<Applied>, ApplyError> {
        let expected = self.applied.next();
        if e.index != expected {
            return Err(ApplyError::OutOfOrder {
                expected,
                got: e.index,
            });
        }
        self.applied = e.index;
        self.applied_term = e.term;
        if e.kind != EntryKind::Command {
            return Ok(None);
        }
        let (cmd, format) =
            Command::decode_with_format(&e.data).map_err(|source| ApplyError::BadCommand {
                index: e.index,
                source,
            })?;
        if std::mem::take(&mut self.numbering_pending) && format < 2 {
            // The first command of an earlier build's log: nothing was
            // applied yet, so only the starting revision changes.
            self.store.revision = 0;
        }
        self.clock_ms = self.clock_ms.max(cmd.stamp_ms);
        self.sessions.expire(self.clock_ms);
        let r = cmd.request;
        let outcome = self.answer(&r, events);
        Ok(Some(Applied {
            index: e.index,
            term: e.term,
            client: r.client,
            seq: r.seq,
            outcome,
        }))
    }

    /// The outcome of request `r`: applied (recording its changes in
    /// `events`, if given), refused, or answered from its session.
    fn answer(&mut self, r: &crate::Request, events: Option<&mut Vec<Event>>) -> Outcome {
        match self.sessions.admit(r.client, r.seq, r.resumed) {
            // A server's resend of its own command (a forwarded proposal
            // whose placement came back after the entry applied) gets the
            // first answer: the caller was checked when it applied, and
            // a re-check could refuse what took effect (an auth enable
            // retried as its caller, who is no user, is then refused).
            Admission::Duplicate(o) if crate::minted_by_server(r.client) => o,
            // A recorded answer goes only to a caller that may make the
            // request now: a client's session id is its own to choose, so
            // another user may name one.
            Admission::Duplicate(o) => match self.store.check_caller(&r.op) {
                Ok(()) => o,
                Err(refusal) => Outcome::Refused(refusal),
            },
            Admission::Expired => Outcome::SessionExpired,
            Admission::Apply => {
                // A command that fails the checks is answered, not applied,
                // alike on every replica (see `check.rs`).
                let checked = check_op(&r.op).and_then(|()| self.store.check_state(&r.op));
                let outcome = match checked {
                    Err(refusal) => Outcome::Refused(refusal),
                    Ok(()) => {
                        let response = self.store.apply_recording(&r.op, events);
                        Outcome::Ok {
                            revision: self.store.revision(),
                            response,
                        }
                    }
                };
                self.sessions
                    .record(r.client, r.seq, outcome.clone(), self.clock_ms);
                outcome
            }
        }
    }

    /// Answers a read-only operation from the current state (the caller
    /// decides whether that state is recent enough).
    pub fn read(&self, op: &Op) -> Outcome {
        if let Err(refusal) = self.store.check_state(op) {
            return Outcome::Refused(refusal);
        }
        Outcome::Ok {
            revision: self.store.revision(),
            response: self.store.read(op),
        }
    }

    /// The answer already recorded for request `seq` of `client`, if it is
    /// the last one applied.
    pub fn cached(&self, client: u64, seq: u64) -> Option<Outcome> {
        match self.sessions.admit(client, seq, true) {
            Admission::Duplicate(o) => Some(o),
            Admission::Apply | Admission::Expired => None,
        }
    }

    /// Whether a snapshot is due: the persisted Raft log is `raft_bytes`
    /// long and `max_raft_state` is the limit (`None`: never snapshot).
    /// It is due at half the limit, so that the log stays below the limit
    /// while entries keep coming during compaction, and a follower that
    /// lags by about the limit is caught up with a snapshot.
    pub fn snapshot_due(&self, raft_bytes: u64, max_raft_state: Option<u64>) -> bool {
        max_raft_state.is_some_and(|max| raft_bytes >= max / 2)
    }

    /// The state as a snapshot, at `applied()`. See `snapshot.rs` for the
    /// format.
    pub fn snapshot(&self) -> Bytes {
        crate::snapshot::encode(self)
    }

    /// `prefix` followed by [`Replica::snapshot`], encoded in one buffer.
    pub fn snapshot_behind(&self, prefix: &[u8]) -> Bytes {
        crate::snapshot::encode_behind(self, prefix)
    }

    /// Replaces the state with the snapshot `data`; on error the replica is
    /// left unchanged. A replica that keeps history and restores a
    /// snapshot without one starts it at the snapshot's revision.
    pub fn restore(&mut self, data: &Bytes) -> Result<(), crate::SnapshotError> {
        let limits = self.sessions.limits;
        let mut r = crate::snapshot::decode(data, limits)?;
        r.sessions.limits = limits;
        // The replica's own kind decides whether history is kept.
        if self.store.keeps_history() {
            r.store.keep_history();
        } else {
            r.store.history = None;
        }
        *self = r;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{ReadConsistency, Request, Response};

    fn entry(index: u64, client: u64, seq: u64, op: Op) -> Entry {
        let c = Command {
            stamp_ms: index * 10,
            request: Request {
                client,
                seq,
                read: ReadConsistency::Linearizable,
                resumed: seq > 1,
                op,
            },
        };
        Entry {
            term: Term(1),
            index: LogIndex(index),
            kind: EntryKind::Command,
            data: c.encode(),
        }
    }

    #[test]
    fn a_retried_request_is_applied_once() {
        let mut r = Replica::new(SessionLimits::default());
        let a = r.apply(&entry(1, 5, 1, Op::append("k", "x"))).unwrap();
        let b = r.apply(&entry(2, 5, 1, Op::append("k", "x"))).unwrap();
        assert_eq!(a.unwrap().outcome, b.unwrap().outcome);
        assert_eq!(r.store().get(b"k").unwrap().value.as_ref(), b"x");
        let old = r.apply(&entry(3, 5, 0, Op::append("k", "y"))).unwrap();
        assert_eq!(old.unwrap().outcome, Outcome::SessionExpired);
        assert_eq!(r.store().revision(), 1);
    }

    /// A session's recorded answer goes to no other user: with auth on,
    /// a user that names another's session and seq is checked as if the
    /// request were new.
    /// A replica whose entries 1 and 2 (session 9, seqs 1 and 2) made
    /// user root with role root, then `more` as entries 3, 4, ...
    fn with_root(more: Vec<crate::auth::AuthOp>) -> Replica {
        use crate::auth::{AuthOp, ROOT};
        let mut r = Replica::new(SessionLimits::default());
        let root = [
            AuthOp::UserAdd {
                name: ROOT.into(),
                password: None,
            },
            AuthOp::UserGrantRole {
                user: ROOT.into(),
                role: ROOT.into(),
            },
        ];
        for (i, a) in root.into_iter().chain(more).enumerate() {
            r.apply(&entry(i as u64 + 1, 9, i as u64 + 1, Op::Auth(a)))
                .unwrap();
        }
        r
    }

    #[test]
    fn a_recorded_answer_goes_only_to_a_caller_that_may_ask() {
        use crate::auth::{AuthOp, ROOT};
        let mut r = with_root(vec![
            AuthOp::UserAdd {
                name: "eve".into(),
                password: None,
            },
            AuthOp::Enable {
                token_key: bytes::Bytes::from_static(b"k"),
            },
        ]);
        let as_user = |user: &str, op| Op::AsUser {
            user: user.into(),
            op: Box::new(op),
        };
        r.apply(&entry(5, 5, 1, as_user(ROOT, Op::put("secret", "s"))))
            .unwrap();
        let read = |user| as_user(user, Op::prefix("secret", 0));
        let root = r.apply(&entry(6, 5, 2, read(ROOT))).unwrap().unwrap();
        assert!(matches!(root.outcome, Outcome::Ok { .. }));
        let eve = r.apply(&entry(7, 5, 2, read("eve"))).unwrap().unwrap();
        let denied = crate::Refusal::Auth(crate::AuthError::PermissionDenied);
        assert_eq!(eve.outcome, Outcome::Refused(denied));
        let again = r.apply(&entry(8, 5, 2, read(ROOT))).unwrap().unwrap();
        assert_eq!(
            again.outcome, root.outcome,
            "root's retry still gets its answer"
        );
    }

    /// A server's resend of its own plain request gets the first answer
    /// even where the caller's check would now refuse it: an auth enable
    /// asked by no user (auth was off) and resent once auth is on. A
    /// client's session that repeats it is checked as new (see above).
    #[test]
    fn a_server_s_resend_gets_the_answer_it_first_had() {
        use crate::auth::AuthOp;
        let mut r = with_root(Vec::new());
        let enable = Op::AsUser {
            user: String::new(),
            op: Box::new(Op::Auth(AuthOp::Enable {
                token_key: bytes::Bytes::from_static(b"k"),
            })),
        };
        let minted = crate::SERVER_MINTED | 7;
        let first = r.apply(&entry(3, minted, 1, enable.clone())).unwrap();
        let first = first.unwrap().outcome;
        assert!(matches!(first, Outcome::Ok { .. }), "{first:?}");
        assert!(r.store().auth().enabled());
        let resent = r.apply(&entry(4, minted, 1, enable.clone())).unwrap();
        assert_eq!(resent.unwrap().outcome, first);
        // Session 9's seq 2 (the grant) named by a client as no user.
        let client = r.apply(&entry(5, 9, 2, enable)).unwrap();
        let empty = crate::Refusal::Auth(crate::AuthError::UserEmpty);
        assert_eq!(client.unwrap().outcome, Outcome::Refused(empty));
    }

    #[test]
    fn minted_ids_are_those_with_the_top_bit() {
        assert!(crate::minted_by_server(1 << 63));
        assert!(crate::minted_by_server(u64::MAX));
        assert!(!crate::minted_by_server(1 << 62));
        assert!(!crate::minted_by_server(1));
        assert!(!crate::minted_by_server(0));
    }

    #[test]
    fn idle_sessions_expire_on_the_clock_carried_by_the_log() {
        let limits = SessionLimits {
            ttl_ms: 15,
            max_sessions: 10,
        };
        let mut r = Replica::new(limits);
        // Entry i is stamped 10 * i ms: client 5 is last active at 10 ms.
        r.apply(&entry(1, 5, 1, Op::put("a", "1"))).unwrap();
        r.apply(&entry(2, 6, 1, Op::put("b", "1"))).unwrap();
        assert_eq!(r.sessions().last_seq(5), Some(1), "idle 10 ms < ttl");
        r.apply(&entry(3, 6, 2, Op::put("b", "2"))).unwrap();
        assert_eq!(r.sessions().last_seq(5), None, "idle 20 ms > ttl");
        assert_eq!(r.clock_ms(), 30);
        // Its retry is refused rather than applied a second time.
        let retry = r.apply(&entry(4, 5, 2, Op::append("a", "x"))).unwrap();
        assert_eq!(retry.unwrap().outcome, Outcome::SessionExpired);
        assert_eq!(r.store().get(b"a").unwrap().value.as_ref(), b"1");
    }

    #[test]
    fn out_of_order_and_garbage_entries_are_reported() {
        let mut r = Replica::new(SessionLimits::default());
        let err = r.apply(&entry(2, 1, 1, Op::get("k"))).unwrap_err();
        assert!(matches!(err, ApplyError::OutOfOrder { .. }));
        let mut bad = entry(1, 1, 1, Op::get("k"));
        bad.data = Bytes::from_static(b"\x01\xff");
        assert!(matches!(r.apply(&bad), Err(ApplyError::BadCommand { .. })));
        assert_eq!(
            r.applied(),
            LogIndex(1),
            "a bad entry still counts as applied"
        );
        let noop = Entry {
            term: Term(2),
            index: LogIndex(2),
            kind: EntryKind::Noop,
            data: Bytes::new(),
        };
        assert_eq!(r.apply(&noop), Ok(None));
        assert_eq!(r.applied_term(), Term(2));
    }

    /// Issue 19: `put ""` reached the log and stopped every member.
    #[test]
    fn an_empty_key_is_refused_alike_everywhere_without_a_revision() {
        let mut r = Replica::new(SessionLimits::default());
        r.apply(&entry(1, 1, 1, Op::put("k", "v"))).unwrap();
        let mut copy = r.clone();
        let bad = entry(2, 2, 1, Op::put("", "v"));
        let a = r.apply(&bad).unwrap().unwrap();
        let b = copy.apply(&bad).unwrap().unwrap();
        let refused = Outcome::Refused(crate::check::Refusal::EmptyKey {
            role: crate::check::KeyRole::Write,
        });
        assert_eq!(a.outcome, refused);
        assert_eq!(b, a, "the same answer on every replica");
        assert_eq!(r, copy, "every replica ends in the same state");
        assert_eq!(r.store().revision(), 1);
        assert_eq!(r.applied(), LogIndex(2));
        assert_eq!(r.cached(2, 1), Some(refused), "a retry gets the refusal");
        let next = r.apply(&entry(3, 1, 2, Op::put("k", "w"))).unwrap();
        assert!(matches!(
            next.unwrap().outcome,
            Outcome::Ok { revision: 2, .. }
        ));
    }

    #[test]
    fn reads_see_the_applied_state() {
        let mut r = Replica::new(SessionLimits::default());
        r.apply(&entry(1, 1, 1, Op::put("k", "v"))).unwrap();
        let Outcome::Ok { revision, response } = r.read(&Op::get("k")) else {
            panic!("read failed")
        };
        assert_eq!(revision, 1);
        assert_eq!(response.value().map(|v| v.as_ref()), Some(&b"v"[..]));
        assert_eq!(
            r.cached(1, 1),
            Some(Outcome::Ok {
                revision: 1,
                response: Response::Written
            })
        );
    }
}

//! The changes one write made to the key space, as etcd's watch reports
//! them: a put (the key's pair after the write) or a delete (the key and
//! the revision of the delete), each with the key's pair before the write
//! if it existed.
//!
//! Invariants: the events of one write all carry that write's revision
//! (`kv.mod_rev`); they are listed in the order the write made them (a
//! transaction that changes a key twice lists both changes); a write that
//! changed nothing lists none. Recording them is optional
//! ([`crate::Store::apply_recording`]) and never changes the store.

use bytes::Bytes;

use crate::command::KeyValue;

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or changed.
    Put,
    /// The key was removed.
    Delete,
}

/// One change of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// For a put, the key's pair after it; for a delete, the key with
    /// `mod_rev` the delete's revision, an empty value and zero
    /// `create_rev` and `version` (as etcd).
    pub kv: KeyValue,
    /// The key's pair before the change, if the key existed.
    pub prev: Option<KeyValue>,
}

impl Event {
    pub(crate) fn put(kv: KeyValue, prev: Option<KeyValue>) -> Event {
        Event {
            kind: EventKind::Put,
            kv,
            prev,
        }
    }

    pub(crate) fn deleted(key: &Bytes, rev: u64, prev: KeyValue) -> Event {
        Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key.clone(),
                value: Bytes::new(),
                create_rev: 0,
                mod_rev: rev,
                version: 0,
                lease: 0,
            },
            prev: Some(prev),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Compare, Op, Txn};
    use crate::store::Store;

    /// (kind, key, value, create, mod, version, prev value and mod_rev)
    type Seen = (
        EventKind,
        &'static str,
        &'static str,
        u64,
        u64,
        u64,
        Option<(&'static str, u64)>,
    );

    fn record(s: &mut Store, op: &Op) -> Vec<Event> {
        let mut ev = Vec::new();
        let mut plain = s.clone();
        s.apply_recording(op, Some(&mut ev));
        plain.apply(op);
        assert_eq!(*s, plain, "recording changed what the write did");
        ev
    }

    fn check(got: &[Event], want: &[Seen]) {
        let got: Vec<_> = got
            .iter()
            .map(|e| {
                (
                    e.kind,
                    e.kv.key.clone(),
                    e.kv.value.clone(),
                    e.kv.create_rev,
                    e.kv.mod_rev,
                    e.kv.version,
                    e.prev.as_ref().map(|p| (p.value.clone(), p.mod_rev)),
                )
            })
            .collect();
        let want: Vec<_> = want
            .iter()
            .map(|w| {
                (
                    w.0,
                    Bytes::from(w.1),
                    Bytes::from(w.2),
                    w.3,
                    w.4,
                    w.5,
                    w.6.map(|(v, r)| (Bytes::from(v), r)),
                )
            })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn put_and_append_report_the_pair_after_and_before() {
        let mut s = Store::new();
        let e = record(&mut s, &Op::put("a", "1"));
        check(&e, &[(EventKind::Put, "a", "1", 1, 1, 1, None)]);
        let e = record(&mut s, &Op::append("a", "2"));
        check(&e, &[(EventKind::Put, "a", "12", 1, 2, 2, Some(("1", 1)))]);
        let e = record(&mut s, &Op::append("b", "x"));
        check(&e, &[(EventKind::Put, "b", "x", 3, 3, 1, None)]);
    }

    #[test]
    fn deletes_report_the_delete_revision_and_the_old_pair() {
        let mut s = Store::new();
        for k in ["a", "b", "c", "d"] {
            s.apply(&Op::put(k, "v"));
        }
        let e = record(&mut s, &Op::delete("a"));
        check(&e, &[(EventKind::Delete, "a", "", 0, 5, 0, Some(("v", 1)))]);
        assert!(record(&mut s, &Op::delete("a")).is_empty(), "absent key");
        let e = record(
            &mut s,
            &Op::delete_range("b", Some(Bytes::from("d")), false),
        );
        check(
            &e,
            &[
                (EventKind::Delete, "b", "", 0, 6, 0, Some(("v", 2))),
                (EventKind::Delete, "c", "", 0, 6, 0, Some(("v", 3))),
            ],
        );
        assert!(record(&mut s, &Op::delete_prefix("zz", true)).is_empty());
    }

    #[test]
    fn a_txn_reports_its_branch_s_writes_at_one_revision() {
        let mut s = Store::new();
        s.apply(&Op::put("k", "1"));
        let t = Op::Txn(Txn {
            compares: vec![Compare::exists("k")],
            success: vec![
                Op::put("k", "2"),
                Op::get("k"),
                Op::put("k", "3"),
                Op::delete("k"),
                Op::put("j", "x"),
            ],
            failure: vec![Op::put("never", "x")],
        });
        let e = record(&mut s, &t);
        check(
            &e,
            &[
                (EventKind::Put, "k", "2", 1, 2, 2, Some(("1", 1))),
                (EventKind::Put, "k", "3", 1, 2, 3, Some(("2", 2))),
                (EventKind::Delete, "k", "", 0, 2, 0, Some(("3", 2))),
                (EventKind::Put, "j", "x", 2, 2, 1, None),
            ],
        );
        let failed = Op::Txn(Txn {
            compares: vec![Compare::exists("k")],
            success: vec![Op::put("k", "again")],
            failure: vec![Op::get("j")],
        });
        assert!(record(&mut s, &failed).is_empty(), "reads only");
    }
}

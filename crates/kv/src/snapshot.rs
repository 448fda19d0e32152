//! The snapshot format of a [`Replica`]: the store and the session table,
//! versioned and checksummed.
//!
//! ```text
//! "FKVS" | version: u8 | crc32c(body): u32 LE | body
//! body (version 4) = applied index, applied term, clock ms, revision,
//!        keys,
//!        #leases, (id, ttl, remaining)*  by id
//!        #alarms, (member, kind)*  in order
//!        #started, member*  in order
//!        auth
//!        #sessions, (client, last seq, last active ms, outcome)*  by client
//! keys = 0, #keys, (key, value, create rev, mod rev, version, lease)*  in key order
//!      | 1, compacted revision, #changes, change*  in revision order
//! change = revision, sub, key, 0                                       a delete
//!        | revision, sub, key, 1, value, create rev, version, lease    a put
//! ```
//!
//! A store that keeps history (MVCC) writes its changes not forgotten by
//! its compaction (`history.rs`); its current pairs are each key's last
//! change, so they are not written twice. The keys attached to each lease
//! are not written either: they are the keys whose pair names the lease.
//! `auth` is the auth store: enabled, auth revision, token key, the users
//! (name, password hash or none, since, roles) and the roles (name,
//! permissions) in name order (`codec/auth.rs`). Version 3 is version 4
//! without it (auth off, no users, no roles).
//! Version 2 is version 3 without leases (no lease field in pairs, the
//! outcomes' pairs included, and no lease table); version 1 is version 2
//! without the `keys` tag (always the plain form). This build reads all
//! four.
//!
//! Integers in the body are varints (see `codec.rs`), so a small store makes
//! a small snapshot (the course's 3B size test allows 500 bytes).
//!
//! Restoring is a gateway: a snapshot comes from disk or from a peer. It is
//! refused with a [`SnapshotError`] saying what was wrong if the magic,
//! version or checksum do not match, if the body is malformed, or if it
//! breaks the store's invariants (keys in order and non-empty, revisions
//! within the store revision, versions at least 1).

use bytes::Bytes;
use flotilla_raft::codec::{DecodeError, Decoder, put_bytes, put_u64};
use flotilla_raft::{LogIndex, Term};
use thiserror::Error;

use crate::codec::{PairFormat, get_kv, get_outcome, put_outcome};
use crate::history::{Change, History, Rev};
use crate::lease::Leases;
use crate::replica::Replica;
use crate::session::{Session, SessionLimits, Sessions};
use crate::store::{Slot, Store};

/// The first bytes of every KV snapshot.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"FKVS";
/// The snapshot format this build writes and reads.
pub const SNAPSHOT_VERSION: u8 = 4;
/// The oldest snapshot format this build reads.
pub const SNAPSHOT_VERSION_MIN: u8 = 1;
const HEADER_LEN: usize = 9;

/// Why a snapshot was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SnapshotError {
    /// Shorter than the header.
    #[error("KV snapshot is {len} bytes, shorter than its {HEADER_LEN}-byte header")]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// Not a KV snapshot.
    #[error("not a KV snapshot: magic {found:02x?}, expected {SNAPSHOT_MAGIC:02x?}")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// Written by a format this build does not read.
    #[error(
        "KV snapshot format version {found}; this build reads versions {SNAPSHOT_VERSION_MIN} to {SNAPSHOT_VERSION}"
    )]
    Version {
        /// The version byte.
        found: u8,
    },
    /// The body does not match its checksum: the snapshot is corrupt.
    #[error(
        "KV snapshot is corrupt: crc32c {computed:#010x} of the body, header says {stored:#010x}"
    )]
    Checksum {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the body.
        computed: u32,
    },
    /// The body is malformed (despite a matching checksum).
    #[error("malformed KV snapshot body: {0}")]
    Malformed(#[from] DecodeError),
    /// The body breaks an invariant of the store.
    #[error("inconsistent KV snapshot: {0}")]
    Inconsistent(String),
}

/// Encodes `r` (see the module docs for the format).
pub(crate) fn encode(r: &Replica) -> Bytes {
    encode_behind(r, &[])
}

/// `prefix` followed by `encode(r)`, in one buffer: what a host that puts
/// its own table before the state writes, without a second copy of a
/// state of gigabytes (at 1M keys x 10 revisions that copy made the peak
/// of a snapshot three times the state's size).
pub(crate) fn encode_behind(r: &Replica, prefix: &[u8]) -> Bytes {
    // Sized up front and encoded in place behind the header, so a snapshot
    // of a large store is neither copied on every doubling of its buffer
    // nor once more behind the header: at 10^5 keys and more those copies
    // and their page faults were most of the encoding's cost.
    let mut out = Vec::with_capacity(prefix.len() + encoded_len_estimate(r));
    out.extend_from_slice(prefix);
    let start = prefix.len();
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.push(SNAPSHOT_VERSION);
    out.extend_from_slice(&[0; 4]);
    put_u64(&mut out, r.applied.get());
    put_u64(&mut out, r.applied_term.get());
    put_u64(&mut out, r.clock_ms);
    put_u64(&mut out, r.store.revision);
    match &r.store.history {
        None => {
            out.push(0);
            put_u64(&mut out, r.store.kvs.len() as u64);
            for (k, s) in r.store.kvs.iter() {
                put_bytes(&mut out, k);
                put_bytes(&mut out, &s.value);
                put_u64(&mut out, s.create_rev);
                put_u64(&mut out, s.mod_rev);
                put_u64(&mut out, s.version);
                put_u64(&mut out, s.lease as u64);
            }
        }
        Some(h) => {
            out.push(1);
            put_history(&mut out, h);
        }
    }
    put_u64(&mut out, r.store.leases.len() as u64);
    for (id, l) in r.store.leases.iter() {
        put_u64(&mut out, id as u64);
        put_u64(&mut out, l.ttl as u64);
        put_u64(&mut out, l.remaining as u64);
    }
    put_u64(&mut out, r.store.alarms.len() as u64);
    for (member, kind) in &r.store.alarms {
        put_u64(&mut out, *member);
        out.push(crate::codec::alarm_tag(*kind));
    }
    put_u64(&mut out, r.store.started.len() as u64);
    for member in &r.store.started {
        put_u64(&mut out, *member);
    }
    crate::codec::put_auth(&mut out, &r.store.auth);
    put_u64(&mut out, r.sessions.map.len() as u64);
    for (c, s) in r.sessions.map.iter() {
        put_u64(&mut out, *c);
        put_u64(&mut out, s.last_seq);
        put_u64(&mut out, s.last_active_ms);
        put_outcome(&mut out, &s.reply);
    }
    let crc = crc32c::crc32c(&out[start + HEADER_LEN..]);
    out[start + HEADER_LEN - 4..start + HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    Bytes::from(out)
}

fn put_history(out: &mut Vec<u8>, h: &History) {
    put_u64(out, h.compacted);
    // Counted, then walked again: a list of the changes would cost 24
    // bytes each for the length of the encoding.
    put_u64(out, h.live().count() as u64);
    for (rev, change) in h.live() {
        put_u64(out, rev.main);
        put_u64(out, u64::from(rev.sub));
        put_bytes(out, &change.key);
        match &change.slot {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                put_bytes(out, &s.value);
                put_u64(out, s.create_rev);
                put_u64(out, s.version);
                put_u64(out, s.lease as u64);
            }
        }
    }
}

/// About the size of `encode(r)`: exact for the keys and values, an upper
/// bound for their numbers, a guess for the sessions' replies.
fn encoded_len_estimate(r: &Replica) -> usize {
    const NUMBERS: usize = 5 * 10;
    let kvs: usize = match &r.store.history {
        None => r
            .store
            .kvs
            .iter()
            .map(|(k, s)| k.len() + s.value.len() + NUMBERS)
            .sum(),
        Some(h) => h
            .changes
            .iter()
            .map(|(_, c)| c.key.len() + c.slot.as_ref().map_or(0, |s| s.value.len()) + NUMBERS)
            .sum(),
    };
    HEADER_LEN + 7 * 10 + kvs + r.store.leases.len() * 30 + r.sessions.map.len() * 64
}

fn check_header(data: &Bytes) -> Result<Bytes, SnapshotError> {
    if data.len() < HEADER_LEN {
        return Err(SnapshotError::TooShort { len: data.len() });
    }
    let mut found = [0u8; 4];
    found.copy_from_slice(&data[..4]);
    if found != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic { found });
    }
    if !(SNAPSHOT_VERSION_MIN..=SNAPSHOT_VERSION).contains(&data[4]) {
        return Err(SnapshotError::Version { found: data[4] });
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&data[5..9]);
    let stored = u32::from_le_bytes(crc);
    let body = data.slice(HEADER_LEN..);
    let computed = crc32c::crc32c(&body);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    Ok(body)
}

fn decode_store(d: &mut Decoder, revision: u64, f: PairFormat) -> Result<Store, SnapshotError> {
    let mut store = Store {
        revision,
        ..Store::default()
    };
    let n = d.count("snapshot keys")?;
    for _ in 0..n {
        let kv = get_kv(d, f)?;
        let ok = !kv.key.is_empty()
            && kv.version >= 1
            && 0 < kv.create_rev
            && kv.create_rev <= kv.mod_rev
            && kv.mod_rev <= revision;
        if !ok {
            return Err(SnapshotError::Inconsistent(format!(
                "key {:?} has create {} mod {} version {} at store revision {revision}",
                kv.key, kv.create_rev, kv.mod_rev, kv.version
            )));
        }
        if store
            .kvs
            .last_key_value()
            .is_some_and(|(k, _)| *k >= kv.key)
        {
            return Err(SnapshotError::Inconsistent(format!(
                "key {:?} is out of order",
                kv.key
            )));
        }
        let slot = Slot {
            value: kv.value,
            create_rev: kv.create_rev,
            mod_rev: kv.mod_rev,
            version: kv.version,
            lease: kv.lease,
        };
        store.kvs.insert(kv.key, slot);
    }
    Ok(store)
}

fn decode_history(d: &mut Decoder, revision: u64, f: PairFormat) -> Result<Store, SnapshotError> {
    let compacted = d.u64("snapshot compaction")?;
    if compacted > revision {
        return Err(SnapshotError::Inconsistent(format!(
            "compacted at {compacted}, after the store revision {revision}"
        )));
    }
    let n = d.count("snapshot changes")?;
    let mut changes = Vec::with_capacity(n.min(1 << 20));
    let mut last: Option<Rev> = None;
    for _ in 0..n {
        let main = d.u64("change revision")?;
        let sub = d.u64("change sub-revision")?;
        let rev = Rev {
            main,
            sub: u32::try_from(sub).map_err(|_| {
                SnapshotError::Inconsistent(format!("change {main}.{sub}: sub-revision too large"))
            })?,
        };
        let key = d.bytes("change key")?;
        let slot = if d.bool("change kind")? {
            let value = d.bytes("change value")?;
            let create_rev = d.u64("change create revision")?;
            let version = d.u64("change version")?;
            let lease = if f.lease {
                d.u64("change lease")? as i64
            } else {
                0
            };
            if version == 0 || create_rev == 0 || create_rev > main {
                return Err(SnapshotError::Inconsistent(format!(
                    "key {key:?} at {main} has create {create_rev} version {version}"
                )));
            }
            Some(Slot {
                value,
                create_rev,
                mod_rev: main,
                version,
                lease,
            })
        } else {
            None
        };
        if key.is_empty() || main > revision || main == 0 || last.is_some_and(|l| l >= rev) {
            return Err(SnapshotError::Inconsistent(format!(
                "change {main}.{sub} of key {key:?}: out of order, empty or after revision {revision}"
            )));
        }
        last = Some(rev);
        changes.push((rev, Change { key, slot }));
    }
    let mut kvs = std::collections::BTreeMap::new();
    for (_, c) in &changes {
        match &c.slot {
            Some(s) => kvs.insert(c.key.clone(), s.clone()),
            None => kvs.remove(&c.key),
        };
    }
    Ok(Store {
        kvs: kvs.into_iter().collect(),
        revision,
        history: Some(History::from_changes(compacted, changes)),
        leases: Leases::default(),
        alarms: Default::default(),
        started: Default::default(),
        auth: Default::default(),
    })
}

/// Reads the lease table into `store`, attaching each leased key to its
/// lease; a key whose lease is not in the table is refused.
fn decode_leases(d: &mut Decoder, store: &mut Store) -> Result<(), SnapshotError> {
    let n = d.count("snapshot leases")?;
    let mut last = None;
    for _ in 0..n {
        let id = d.u64("lease id")? as i64;
        let ttl = d.u64("lease ttl")? as i64;
        let remaining = d.u64("lease remaining")? as i64;
        if id == 0 || ttl < 0 || remaining < 0 || last.is_some_and(|l| l >= id) {
            return Err(SnapshotError::Inconsistent(format!(
                "lease {id} (ttl {ttl}, remaining {remaining}): zero, negative or out of order"
            )));
        }
        last = Some(id);
        store.leases.grant(id, ttl);
        store.leases.checkpoint(&[(id, remaining)]);
    }
    for (k, s) in store.kvs.iter() {
        if s.lease == 0 {
            continue;
        }
        if !store.leases.contains(s.lease) {
            return Err(SnapshotError::Inconsistent(format!(
                "key {k:?} is attached to lease {}, which is not in the snapshot",
                s.lease
            )));
        }
        store.leases.reattach(k, 0, s.lease);
    }
    Ok(())
}

fn decode_sessions(
    d: &mut Decoder,
    limits: SessionLimits,
    f: PairFormat,
) -> Result<Sessions, SnapshotError> {
    let mut sessions = Sessions::new(limits);
    let n = d.count("snapshot sessions")?;
    for _ in 0..n {
        let client = d.u64("session client")?;
        let session = Session {
            last_seq: d.u64("session seq")?,
            last_active_ms: d.u64("session activity")?,
            reply: get_outcome(d, f)?,
        };
        if sessions.map.insert(client, session).is_some() {
            return Err(SnapshotError::Inconsistent(format!(
                "client {client} has two sessions"
            )));
        }
    }
    sessions.reindex();
    Ok(sessions)
}

/// Decodes a snapshot made by [`encode`].
pub(crate) fn decode(data: &Bytes, limits: SessionLimits) -> Result<Replica, SnapshotError> {
    let body = check_header(data)?;
    let mut d = Decoder::new(body);
    let applied = LogIndex(d.u64("snapshot applied index")?);
    let applied_term = Term(d.u64("snapshot applied term")?);
    let clock_ms = d.u64("snapshot clock")?;
    let revision = d.u64("snapshot revision")?;
    let with_history = data[4] >= 2 && d.bool("snapshot history flag")?;
    let f = PairFormat {
        lease: data[4] >= 3,
    };
    let mut store = if with_history {
        decode_history(&mut d, revision, f)?
    } else {
        decode_store(&mut d, revision, f)?
    };
    if f.lease {
        decode_leases(&mut d, &mut store)?;
        let n = d.count("snapshot alarms")?;
        for _ in 0..n {
            let member = d.u64("alarm member")?;
            let kind = crate::codec::alarm_kind(&mut d)?;
            store.alarms.insert((member, kind));
        }
        let n = d.count("snapshot started members")?;
        for _ in 0..n {
            store.started.insert(d.u64("started member")?);
        }
    }
    if data[4] >= 4 {
        store.auth = crate::codec::get_auth(&mut d)?;
    }
    let sessions = decode_sessions(&mut d, limits, f)?;
    d.finish("KV snapshot")?;
    Ok(Replica {
        store,
        sessions,
        applied,
        applied_term,
        clock_ms,
        // The snapshot's revision is the numbering (`Replica::etcd`).
        numbering_pending: false,
    })
}

#[cfg(test)]
mod tests {
    use flotilla_raft::{Entry, EntryKind};

    use super::*;
    use crate::command::{Command, Op, ReadConsistency, Request};

    fn replica_with_data() -> Replica {
        let mut r = Replica::new(SessionLimits::default());
        let ops = [
            Op::put("a", "1"),
            Op::append("b", "xy"),
            Op::delete("a"),
            Op::put("c", "3"),
        ];
        for (i, op) in ops.into_iter().enumerate() {
            let i = i as u64 + 1;
            let cmd = Command {
                stamp_ms: 100 * i,
                request: Request {
                    client: i % 2 + 1,
                    seq: i.div_ceil(2),
                    read: ReadConsistency::Linearizable,
                    resumed: false,
                    op,
                },
            };
            let e = Entry {
                term: Term(2),
                index: LogIndex(i),
                kind: EntryKind::Command,
                data: cmd.encode(),
            };
            r.apply(&e).unwrap();
        }
        r
    }

    #[test]
    fn snapshot_round_trips_the_whole_state() {
        let r = replica_with_data();
        let mut back = Replica::new(SessionLimits::default());
        back.restore(&r.snapshot()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.store().revision(), 4);
        assert_eq!(back.applied(), LogIndex(4));
    }

    #[test]
    fn a_snapshot_behind_a_prefix_is_the_prefix_then_the_snapshot() {
        let r = replica_with_data();
        let behind = r.snapshot_behind(b"table");
        assert_eq!(&behind[..5], b"table");
        assert_eq!(behind.slice(5..), r.snapshot());
        let mut back = Replica::new(SessionLimits::default());
        back.restore(&behind.slice(5..)).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn corrupt_snapshots_are_refused_with_a_clear_error() {
        let snap = replica_with_data().snapshot();
        let mut r = Replica::new(SessionLimits::default());
        let before = r.clone();
        let mut flipped = snap.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        let err = r.restore(&Bytes::from(flipped)).unwrap_err();
        assert!(matches!(err, SnapshotError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert_eq!(r, before, "a refused snapshot changes nothing");
        let mut v = snap.to_vec();
        v[4] = 5;
        assert_eq!(
            r.restore(&Bytes::from(v)),
            Err(SnapshotError::Version { found: 5 })
        );
        assert!(matches!(
            r.restore(&Bytes::from_static(b"FKV")),
            Err(SnapshotError::TooShort { len: 3 })
        ));
        assert!(matches!(
            r.restore(&Bytes::from_static(b"XXXX\x01\0\0\0\0")),
            Err(SnapshotError::BadMagic { .. })
        ));
    }

    /// (revision, sub, key, put as (create, version)), or a delete.
    type TestChange<'a> = (u64, u64, &'a str, Option<(u64, u64)>);

    /// A version 2 snapshot at revision 5 with history compacted at
    /// `compacted` holding `changes`.
    fn history_snapshot(compacted: u64, changes: &[TestChange<'_>]) -> Bytes {
        let mut body = Vec::new();
        for v in [1u64, 1, 0, 5] {
            put_u64(&mut body, v);
        }
        body.push(1);
        put_u64(&mut body, compacted);
        put_u64(&mut body, changes.len() as u64);
        for (main, sub, key, put) in changes {
            put_u64(&mut body, *main);
            put_u64(&mut body, *sub);
            put_bytes(&mut body, key.as_bytes());
            match put {
                None => body.push(0),
                Some((create, version)) => {
                    body.push(1);
                    put_bytes(&mut body, b"v");
                    put_u64(&mut body, *create);
                    put_u64(&mut body, *version);
                }
            }
        }
        put_u64(&mut body, 0);
        let mut data = SNAPSHOT_MAGIC.to_vec();
        data.push(2);
        data.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        data.extend_from_slice(&body);
        Bytes::from(data)
    }

    #[test]
    fn a_history_that_breaks_the_store_s_invariants_is_refused() {
        let good = history_snapshot(2, &[(1, 0, "a", Some((1, 1))), (3, 0, "a", None)]);
        let mut r = Replica::with_history(SessionLimits::default());
        r.restore(&good).unwrap();
        assert_eq!((r.store().revision(), r.store().compacted()), (5, 2));
        assert!(r.store().get(b"a").is_none(), "deleted at 3");
        let bad: [(&str, Bytes); 8] = [
            ("compacted past the revision", history_snapshot(6, &[])),
            (
                "version 0",
                history_snapshot(0, &[(1, 0, "a", Some((1, 0)))]),
            ),
            (
                "created at 0",
                history_snapshot(0, &[(1, 0, "a", Some((0, 1)))]),
            ),
            (
                "created after the change",
                history_snapshot(0, &[(1, 0, "a", Some((2, 1)))]),
            ),
            (
                "an empty key",
                history_snapshot(0, &[(1, 0, "", Some((1, 1)))]),
            ),
            (
                "a change past the revision",
                history_snapshot(0, &[(6, 0, "a", Some((6, 1)))]),
            ),
            (
                "a change at revision 0",
                history_snapshot(0, &[(0, 0, "a", None)]),
            ),
            (
                "changes out of order",
                history_snapshot(0, &[(2, 0, "a", Some((1, 2))), (1, 0, "a", Some((1, 1)))]),
            ),
        ];
        for (what, data) in bad {
            let err = r.clone().restore(&data).unwrap_err();
            assert!(
                matches!(err, SnapshotError::Inconsistent(_)),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn a_checksummed_but_inconsistent_body_is_refused() {
        let mut body = Vec::new();
        for v in [1u64, 1, 0, 1, 1] {
            put_u64(&mut body, v);
        }
        put_bytes(&mut body, b"k");
        put_bytes(&mut body, b"v");
        for v in [1u64, 5, 1, 0] {
            put_u64(&mut body, v);
        }
        // Version 1: no keys tag.
        let mut data = SNAPSHOT_MAGIC.to_vec();
        data.push(1);
        data.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        data.extend_from_slice(&body);
        let err = Replica::default().restore(&Bytes::from(data)).unwrap_err();
        assert!(matches!(err, SnapshotError::Inconsistent(_)), "{err}");
    }

    #[test]
    fn a_lease_with_a_zero_id_or_negative_times_is_refused() {
        for (id, ttl, remaining) in [(0, 5, 0), (1, -1, 0), (1, 5, -1)] {
            let mut r = Replica::default();
            let lease = crate::lease::Lease {
                ttl,
                remaining,
                ..Default::default()
            };
            r.store.leases.map.insert(id, lease);
            let err = Replica::default().restore(&r.snapshot()).unwrap_err();
            assert!(matches!(err, SnapshotError::Inconsistent(_)), "{err}");
        }
    }

    #[test]
    fn a_key_on_a_lease_the_snapshot_lacks_is_refused() {
        for mut r in [
            Replica::default(),
            Replica::with_history(SessionLimits::default()),
        ] {
            r.store.apply(&Op::LeaseGrant { id: 5, ttl: 9 });
            r.store.apply(&Op::put_leased("k", "v", 5));
            let mut back = r.clone();
            back.restore(&r.snapshot()).unwrap();
            assert_eq!(back.store.leases.get(5).unwrap().keys().count(), 1);
            r.store.leases.remove(5);
            let err = back.restore(&r.snapshot()).unwrap_err();
            assert!(err.to_string().contains("lease 5, which is not"), "{err}");
        }
    }
}

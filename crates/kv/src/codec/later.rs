//! The encoding of the operations that came after the first release:
//! compaction (tag 8), rewrites (9, and 11 with a value or a lease),
//! the lease operations (12 to 14), alarms (15) and member starts (16);
//! auth's (17 and 18) are in `auth.rs`.
//! Lease ids and TTLs are `i64`s written as the `u64` of the same bits.

use flotilla_raft::codec::{DecodeError, Decoder, put_bytes, put_u64};

use super::{R, bad_tag, key, opt, put_opt};
use crate::command::{AlarmKind, Op};

/// Appends the ops that came after the first release (tags 8 to 14):
/// compaction, rewrites, and the lease operations.
pub(super) fn put_later_op(out: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Compact { revision } => {
            out.push(8);
            put_u64(out, *revision);
        }
        // A rewrite keeping the value and dropping the lease keeps the
        // encoding it had before leases.
        Op::Rewrite {
            key,
            value: None,
            lease: Some(0),
        } => {
            out.push(9);
            put_bytes(out, key);
        }
        Op::Rewrite { key, value, lease } => {
            out.push(11);
            put_bytes(out, key);
            put_opt(out, value.as_ref());
            match lease {
                None => out.push(0),
                Some(l) => {
                    out.push(1);
                    put_u64(out, *l as u64);
                }
            }
        }
        Op::LeaseGrant { id, ttl } => {
            out.push(12);
            put_u64(out, *id as u64);
            put_u64(out, *ttl as u64);
        }
        Op::LeaseRevoke { id } => {
            out.push(13);
            put_u64(out, *id as u64);
        }
        Op::LeaseCheckpoint { checkpoints } => {
            out.push(14);
            put_u64(out, checkpoints.len() as u64);
            for (id, remaining) in checkpoints {
                put_u64(out, *id as u64);
                put_u64(out, *remaining as u64);
            }
        }
        Op::Alarm {
            raise,
            member,
            kind,
        } => {
            out.push(15);
            out.push(u8::from(*raise));
            put_u64(out, *member);
            out.push(alarm_tag(*kind));
        }
        Op::MemberStarted { member } => {
            out.push(16);
            put_u64(out, *member);
        }
        Op::Auth(_) | Op::AsUser { .. } => super::auth::put_auth_op(out, op),
        Op::Get { .. }
        | Op::Put { .. }
        | Op::Append { .. }
        | Op::Delete { .. }
        | Op::Range { .. }
        | Op::Txn(_)
        | Op::DeleteRange { .. } => unreachable!("put_later_op given {op:?}"),
    }
}

/// Reads an op of tags 11 to 16 (see [`put_later_op`]).
pub(super) fn lease_op(d: &mut Decoder, tag: u8) -> R<Op> {
    Ok(match tag {
        11 => Op::Rewrite {
            key: key(d, "rewrite key")?,
            value: opt(d, "rewrite value")?,
            lease: if d.bool("rewrite lease flag")? {
                Some(d.u64("rewrite lease")? as i64)
            } else {
                None
            },
        },
        12 => Op::LeaseGrant {
            id: d.u64("lease id")? as i64,
            ttl: d.u64("lease ttl")? as i64,
        },
        13 => Op::LeaseRevoke {
            id: d.u64("lease id")? as i64,
        },
        14 => {
            let n = d.count("lease checkpoints")?;
            let checkpoints = (0..n)
                .map(|_| Ok((d.u64("lease id")? as i64, d.u64("lease remaining")? as i64)))
                .collect::<R<Vec<_>>>()?;
            Op::LeaseCheckpoint { checkpoints }
        }
        15 => Op::Alarm {
            raise: d.bool("alarm action")?,
            member: d.u64("alarm member")?,
            kind: alarm_kind(d)?,
        },
        16 => Op::MemberStarted {
            member: d.u64("started member")?,
        },
        t => return Err(bad_tag(d, "op", t)),
    })
}

/// An alarm kind's tag (etcd's `AlarmType` numbers).
pub(crate) fn alarm_tag(kind: AlarmKind) -> u8 {
    match kind {
        AlarmKind::NoSpace => 1,
        AlarmKind::Corrupt => 2,
    }
}

/// Reads what [`alarm_tag`] wrote.
pub(crate) fn alarm_kind(d: &mut Decoder) -> Result<AlarmKind, DecodeError> {
    match d.u8("alarm kind")? {
        1 => Ok(AlarmKind::NoSpace),
        2 => Ok(AlarmKind::Corrupt),
        t => Err(DecodeError::BadTag {
            what: "alarm kind",
            tag: u64::from(t),
            offset: d.offset() - 1,
        }),
    }
}

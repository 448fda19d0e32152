//! The encoding of the operations that came after the first release:
//! compaction (tag 8), rewrites (9, and 11 with a value or a lease),
//! and the lease operations (12 to 14). Lease ids and TTLs are `i64`s
//! written as the `u64` of the same bits.

use flotilla_raft::codec::{Decoder, put_bytes, put_u64};

use super::{R, bad_tag, key, opt, put_opt};
use crate::command::Op;

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
        _ => unreachable!("put_later_op given {op:?}"),
    }
}

/// Reads an op of tags 11 to 14 (see [`put_later_op`]).
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
        t => return Err(bad_tag(d, "op", t)),
    })
}

//! Backups: what `Maintenance.Snapshot` streams (`etcdctl snapshot save`
//! and `flotilla snapshot save` write it to a file), what `flotilla
//! snapshot status` reads, and what `flotilla snapshot restore` builds a
//! new cluster's data directories from.
//!
//! ```text
//! "FLOTILLA-BACKUP-1\n" | len(body): u64 LE | crc32c(body): u32 LE | body
//!   | zeros up to a multiple of 512 bytes | SHA-256 of all that: 32 bytes
//! body = the KV state machine's snapshot (member table, then the KV
//!        replica's own snapshot, itself versioned and checksummed)
//! ```
//!
//! The padding and the SHA-256 trailer are etcd's: `etcdctl snapshot
//! save` refuses a stream whose length is not 32 more than a multiple of
//! 512 (where etcd's ends with the SHA-256 of its database).
//!
//! A restore is etcd's: the backup's keys, history, leases and sessions
//! become a new cluster with the members named on the command line (the
//! backup's member table is dropped), starting from a Raft snapshot at
//! the backup's applied index, so every member restored from one file
//! starts identical. It refuses a data directory that is not empty, and a
//! file whose checksum, format or contents do not check out, saying
//! which.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use flotilla_host::StateMachine;
use flotilla_host::kv_app::encode_snapshot;
use flotilla_host::kv_app::members::Members;
use flotilla_raft::{ConfState, HardState, NodeId, Snapshot, SnapshotMeta};

/// The first bytes of a backup file.
pub const MAGIC: &[u8] = b"FLOTILLA-BACKUP-1\n";

/// Why a backup could not be read or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Not a Flotilla backup (an etcd bbolt file, say).
    #[error(
        "not a Flotilla backup: it does not start with {:?}",
        String::from_utf8_lossy(MAGIC)
    )]
    NotABackup,
    /// Shorter or longer than its header says.
    #[error("the backup is truncated or padded: {found} bytes, where a {body}-byte body makes {}", padded(*body) + TRAILER)]
    Truncated {
        /// Its length.
        found: usize,
        /// The body length its header gives.
        body: usize,
    },
    /// The SHA-256 trailer does not match.
    #[error("the backup is corrupt: its SHA-256 trailer does not match its contents")]
    Sha256,
    /// The body does not match its checksum.
    #[error(
        "the backup is corrupt: crc32c {computed:#010x} of its {len} bytes, header says {stored:#010x}"
    )]
    Checksum {
        /// The checksum in the header.
        stored: u32,
        /// The body's.
        computed: u32,
        /// The body's length.
        len: usize,
    },
    /// The state machine's snapshot inside is refused.
    #[error("the backup's state cannot be restored: {0}")]
    State(String),
    /// The data directory is in use.
    #[error("data directory {0} is not empty: restore into a new one")]
    NotEmpty(PathBuf),
    /// Creating the data directory or its log failed.
    #[error("writing the restored data directory {dir}: {reason}")]
    Write {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        reason: String,
    },
}

/// The length of the header: magic, body length, checksum.
const HEADER: usize = MAGIC.len() + 8 + 4;
/// The length of the SHA-256 trailer.
const TRAILER: usize = 32;

/// The padded length of a backup whose body is `body` bytes long, before
/// its trailer.
fn padded(body: usize) -> usize {
    (HEADER + body).div_ceil(512) * 512
}

/// Wraps the state machine's snapshot as a backup file.
pub fn encode(machine_snapshot: &[u8]) -> Bytes {
    use sha2::Digest;
    let len = padded(machine_snapshot.len());
    let mut out = Vec::with_capacity(len + TRAILER);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(machine_snapshot.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(machine_snapshot).to_le_bytes());
    out.extend_from_slice(machine_snapshot);
    out.resize(len, 0);
    let sha = sha2::Sha256::digest(&out);
    out.extend_from_slice(&sha);
    Bytes::from(out)
}

/// The state machine's snapshot inside a backup file, checked.
pub fn decode(file: &Bytes) -> Result<Bytes, BackupError> {
    use sha2::Digest;
    if !file.starts_with(MAGIC) || file.len() < HEADER + TRAILER {
        return Err(BackupError::NotABackup);
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&file[MAGIC.len()..MAGIC.len() + 8]);
    let len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
    if len > file.len() || padded(len) + TRAILER != file.len() {
        return Err(BackupError::Truncated {
            found: file.len(),
            body: len,
        });
    }
    let (head, sha) = file.split_at(file.len() - TRAILER);
    if sha2::Sha256::digest(head).as_slice() != sha {
        return Err(BackupError::Sha256);
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&file[HEADER - 4..HEADER]);
    let body = file.slice(HEADER..HEADER + len);
    let (stored, computed) = (u32::from_le_bytes(crc), crc32c::crc32c(&body));
    if stored != computed {
        return Err(BackupError::Checksum {
            stored,
            computed,
            len: body.len(),
        });
    }
    Ok(body)
}

/// What a backup holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupStatus {
    /// HashKV of the store at its revision.
    pub hash: u32,
    /// The store revision.
    pub revision: u64,
    /// How many keys.
    pub keys: usize,
    /// The backup's size in bytes.
    pub size: usize,
    /// The log index and term it was taken at.
    pub index: u64,
    /// The term.
    pub term: u64,
}

/// The machine a backup restores, and what it holds.
fn machine_of(file: &Bytes) -> Result<(crate::KvMachine, BackupStatus), BackupError> {
    let body = decode(file)?;
    let empty = BTreeMap::new();
    let mut m = crate::KvMachine::new(&empty, std::sync::Arc::default());
    m.restore(&body)
        .map_err(|e| BackupError::State(e.to_string()))?;
    let store = m.replica.store();
    let (hash, _) = store
        .hash_kv(0)
        .map_err(|e| BackupError::State(e.to_string()))?;
    let status = BackupStatus {
        hash,
        revision: store.revision(),
        keys: store.len(),
        size: file.len(),
        index: m.replica.applied().get(),
        term: m.replica.applied_term().get(),
    };
    Ok((m, status))
}

/// Reads a backup file's status.
pub fn status(file: &Bytes) -> Result<BackupStatus, BackupError> {
    machine_of(file).map(|(_, s)| s)
}

/// Builds member `id`'s data directory of a new cluster founded by
/// `peers` (with `token`, if any) from a backup; see the module docs.
pub fn restore(
    file: &Bytes,
    data_dir: &Path,
    id: NodeId,
    peers: &BTreeMap<NodeId, String>,
    token: Option<&str>,
) -> Result<BackupStatus, BackupError> {
    let (m, status) = machine_of(file)?;
    if std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(BackupError::NotEmpty(data_dir.to_path_buf()));
    }
    let write = |reason: String| BackupError::Write {
        dir: data_dir.to_path_buf(),
        reason,
    };
    let members = Members::bootstrap(peers);
    let data = encode_snapshot(&members, &m.replica);
    let (_, mut group) = crate::server::open_storage_at(data_dir, id, token, peers)
        .map_err(|e| write(format!("{e:#}")))?;
    crate::join::save(data_dir, peers).map_err(|e| write(e.to_string()))?;
    let meta = SnapshotMeta {
        index: m.replica.applied(),
        term: m.replica.applied_term(),
        conf_state: ConfState::with_voters(peers.keys().copied()),
    };
    let hard = HardState {
        term: meta.term,
        vote: None,
        commit: meta.index,
    };
    group
        .save_snapshot(&Snapshot { meta, data })
        .map_err(|e| write(e.to_string()))?;
    group
        .save_hard_state(&hard)
        .map_err(|e| write(e.to_string()))?;
    group.wal().sync().map_err(|e| write(e.to_string()))?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_is_sector_aligned_with_a_trailer_and_round_trips() {
        for body in [&b""[..], b"x", &[7u8; 1000]] {
            let file = encode(body);
            assert_eq!(file.len() % 512, 32, "etcdctl checks this");
            assert_eq!(decode(&file).unwrap(), Bytes::copy_from_slice(body));
        }
    }

    #[test]
    fn damaged_backups_are_refused_saying_how() {
        let file = encode(b"state");
        let cut = file.slice(..file.len() - 1);
        assert!(matches!(decode(&cut), Err(BackupError::Truncated { .. })));
        let mut flipped = file.to_vec();
        flipped[HEADER] ^= 1;
        assert!(matches!(
            decode(&Bytes::from(flipped)),
            Err(BackupError::Sha256)
        ));
        let mut crc = file.to_vec();
        crc[HEADER - 1] ^= 1;
        let len = crc.len();
        use sha2::Digest;
        let sha = sha2::Sha256::digest(&crc[..len - TRAILER]);
        crc[len - TRAILER..].copy_from_slice(&sha);
        let err = decode(&Bytes::from(crc)).unwrap_err();
        assert!(err.to_string().contains("crc32c"), "{err}");
        let other = Bytes::from_static(b"bolt db, say");
        assert!(matches!(decode(&other), Err(BackupError::NotABackup)));
        let long = Bytes::from(vec![b'x'; 4096]);
        assert!(matches!(decode(&long), Err(BackupError::NotABackup)));
        let magic_only = Bytes::from_static(MAGIC);
        assert!(matches!(decode(&magic_only), Err(BackupError::NotABackup)));
        // A header and nothing else, and one whose length is absurd.
        let mut bare = MAGIC.to_vec();
        bare.resize(HEADER + TRAILER, 0);
        assert!(matches!(
            decode(&Bytes::from(bare.clone())),
            Err(BackupError::Truncated { .. })
        ));
        bare[MAGIC.len()..MAGIC.len() + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode(&Bytes::from(bare)),
            Err(BackupError::Truncated { .. })
        ));
        let mut m = crate::KvMachine::new(&BTreeMap::new(), std::sync::Arc::default());
        let err = m.restore(&decode(&encode(b"not a machine")).unwrap());
        assert!(err.is_err());
        assert!(matches!(
            status(&encode(b"junk")),
            Err(BackupError::State(_))
        ));
    }
}

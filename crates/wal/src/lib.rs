//! Durable Raft storage: a segmented write-ahead log that many Raft groups
//! share, with group commit, snapshot files and crash-proof recovery.
//!
//! [`Wal::open`] recovers a directory and returns the engine; [`Wal::group`]
//! returns a [`GroupHandle`], which implements [`flotilla_raft::Storage`]
//! (the single-group server uses `GroupId(1)`). Writes only fill memory;
//! [`Wal::sync`] (or `Storage::sync`) hands everything to the OS and runs
//! one `fdatasync` for every group's records since the last one.
//!
//! # Driving it
//!
//! A single-threaded driver calls [`flotilla_raft::persist`] on the handle
//! per Ready, as with any `Storage`. A multi-threaded (tokio) runtime that
//! wants group commit across groups splits the work:
//!
//! ```text
//!  group tasks (async)                       writer thread (std)
//!  ───────────────────                       ───────────────────
//!  ready = node.ready()
//!  lsn = handle.write(ready.writes())?  ──►  loop {
//!  queue (ready, lsn) for the writer           wait for work
//!                                              durable = wal.sync()?   // one fdatasync
//!  on notice `durable >= lsn`:          ◄──    notify tasks waiting on lsn <= durable
//!    send persisted messages, advance        }
//! ```
//!
//! [`GroupHandle::write`] and the other write methods lock only memory and
//! never wait for the disk, so they are cheap to call on an async task
//! (except when the buffer passed `Options::buffer_bytes_max`, where the
//! caller hands it to the OS). [`Wal::sync`] and [`Wal::sync_to`] block in
//! `fdatasync`: call them from a dedicated thread or `spawn_blocking`,
//! never on a runtime worker. `Wal` is `Clone + Send + Sync` (clones share
//! the engine); a `GroupHandle` is `Send`, one per group at a time.
//! [`GroupHandle::durable_index`] tells which entries of the current log
//! are on disk; [`Wal::durable_lsn`] tells which writes are.
//!
//! # Tests
//!
//! [`MemFs`] is an in-memory [`Fs`] that simulates power loss at any point
//! (lost unsynced data, torn writes, zero-filled sectors); the crate's
//! tests crash the WAL after every write and sync and check that recovery
//! yields exactly a prefix of the calls that includes everything synced.
//!
#![doc = include_str!("../docs/durability.md")]
#![deny(missing_docs)]

mod engine;
mod error;
pub mod format;
pub mod fs;
mod group;
mod handle;
mod ids;
mod memfs;
pub mod record;
mod recover;
pub mod snapfile;
mod state;
mod stream;

pub use engine::{LOCK_FILE, Options, Stats, Wal, segment_name};
pub use error::{Corruption, WalError};
pub use fs::{Fs, FsFile, FsLock, LockError, StdFs};
pub use handle::GroupHandle;
pub use ids::{GroupId, Lsn};
pub use memfs::{Image, MemFs};
pub use recover::RecoveryReport;
pub use stream::Sink;

//! What etcd's lock and election services share: etcd's client recipes
//! (`clientv3/concurrency`), run inside the server.
//!
//! A contender for NAME writes `NAME/<lease in hex>`, attached to its
//! lease, in a transaction that creates it only if absent; its create
//! revision is its place in the queue (and, for a lock, the fencing
//! token). It holds the lock, or leads the election, once every key of
//! the queue created before it is gone ([`wait_deletes`]): deleted by its
//! owner or by the expiry of the owner's lease. Waiting reads this
//! member's applied state, never a stale picture of the queue: a deletion
//! applied here is committed, and keys created later never block.
//!
//! A contender whose call ends before it gets through the queue (the
//! client went away) leaves the queue: its key is deleted
//! ([`LeaveOnDrop`]), as etcd's server does.
//!
//! As in etcd, whose lock and election servers run the client recipes
//! over an in-process client: a contender without a lease gets a session
//! lease of its own ([`session_lease`]: 60 seconds, never kept alive, so
//! what it holds ends with it), and the request-level refusals its
//! writes meet reach the caller as the client's plain errors, gRPC code
//! UNKNOWN with the server's message ([`client_error`]).

use bytes::Bytes;
use flotilla_kv::{CmpOp, Compare, CompareSpan, KeyValue, Op, Response, Store, Target, Txn};
use tonic::Status;

use crate::core::Core;
use crate::error::EtcdError;
use flotilla_runtime::lock;

/// The time-to-live of the lease a contender without one is given
/// (etcd's `concurrency` session default).
pub const SESSION_TTL_SECS: i64 = 60;

/// The lease a contender's key is attached to: its own, or for 0 a new
/// one of [`SESSION_TTL_SECS`] that nothing keeps alive, as etcd's
/// orphaned session.
pub async fn session_lease(core: &Core, lease: i64) -> Result<i64, Status> {
    if lease != 0 {
        return Ok(lease);
    }
    let (_, _, id) = crate::lease_service::grant(core, 0, SESSION_TTL_SECS).await?;
    Ok(id)
}

/// A refusal as etcd's lock and election servers pass it on from their
/// in-process client: code UNKNOWN, the message kept. Errors of
/// availability (no leader, a timeout, a member stopping) keep their
/// code, so that clients retry them elsewhere.
pub fn client_error(status: Status) -> Status {
    use tonic::Code;
    match status.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::ResourceExhausted
        | Code::DataLoss => Status::unknown(status.message()),
        _ => status,
    }
}

/// The queue's prefix of `name`.
pub fn prefix(name: &[u8]) -> Bytes {
    let mut p = name.to_vec();
    p.push(b'/');
    Bytes::from(p)
}

/// While auth is on, refuses a caller that may not read (and, with
/// `write`, write) every key of lock or election `name`: the recipe reads
/// and writes them for the caller, as etcd's runs them through a client
/// with the caller's token.
pub fn require_name<T>(
    core: &Core,
    request: &tonic::Request<T>,
    name: &[u8],
    write: bool,
) -> Result<(), Status> {
    let caller = core.caller(request)?;
    let keys = prefix(name);
    core.require_permitted(&caller, &Op::prefix(keys.clone(), 0))?;
    if write {
        core.require_permitted(&caller, &Op::delete_prefix(keys, false))?;
    }
    Ok(())
}

/// While auth is on, refuses a caller that may not write `key` (a lock's
/// or a leader's key it releases or proclaims on).
pub fn require_key<T>(core: &Core, request: &tonic::Request<T>, key: &Bytes) -> Result<(), Status> {
    let caller = core.caller(request)?;
    core.require_permitted(&caller, &Op::delete(key.clone()))
}

/// A contender's key: the prefix, then its lease in lowercase hex
/// (etcd's `%x`).
pub fn contender_key(name: &[u8], lease: i64) -> Bytes {
    let mut k = prefix(name).to_vec();
    k.extend_from_slice(format!("{lease:x}").as_bytes());
    Bytes::from(k)
}

/// The pairs under `prefix` in `store`: a queue.
fn queue(store: &Store, prefix: &Bytes) -> Vec<KeyValue> {
    match store.read(&Op::prefix(prefix.clone(), 0)) {
        Response::Range { kvs, .. } => kvs,
        _ => Vec::new(),
    }
}

/// The first-created pair under `prefix` (the lock holder, the election
/// leader) in this member's applied state, with the revision it was read
/// at.
pub fn first_created(core: &Core, prefix: &Bytes) -> (u64, Option<KeyValue>) {
    let sm = lock(&core.sm);
    let store = sm.replica.store();
    let first = queue(store, prefix)
        .into_iter()
        .min_by_key(|kv| kv.create_rev);
    (store.revision(), first)
}

/// Whether `key` exists here with create revision `rev`.
pub fn holds(core: &Core, key: &Bytes, rev: u64) -> bool {
    lock(&core.sm)
        .replica
        .store()
        .get(key)
        .is_some_and(|kv| kv.create_rev == rev)
}

/// Waits until no key under `prefix` created at or before `max_create`
/// remains in this member's applied state.
pub async fn wait_deletes(core: &Core, prefix: &Bytes, max_create: u64) -> Result<(), Status> {
    loop {
        // Subscribed under the machine's lock with the read: no change
        // can fall between them.
        let (mut sub, blocked) = {
            let sm = lock(&core.sm);
            let sub = sm.watch.subscribe();
            let blocked = queue(sm.replica.store(), prefix)
                .iter()
                .any(|kv| kv.create_rev <= max_create);
            (sub, blocked)
        };
        if !blocked {
            return Ok(());
        }
        // Any change (or a lag, or a restore) is a reason to look again.
        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = sub.rx.recv().await {
            return Err(EtcdError::Stopped.into());
        }
    }
}

/// `if key absent { put key value (lease) } else { get key }`: joins the
/// queue. The key's create revision (its place) and whether it was
/// already there.
pub async fn join(
    core: &Core,
    key: &Bytes,
    value: &Bytes,
    lease: i64,
) -> Result<(u64, Option<KeyValue>), Status> {
    let txn = Op::Txn(Txn {
        compares: vec![create_rev_is(key, 0)],
        success: vec![Op::put_leased(key.clone(), value.clone(), lease)],
        failure: vec![Op::get(key.clone())],
    });
    let (_, revision, response) = core.write(txn).await?;
    match response {
        Response::Txn {
            succeeded: true, ..
        } => Ok((revision, None)),
        Response::Txn { responses, .. } => match responses.into_iter().next() {
            Some(Response::Get(Some(kv))) => Ok((kv.create_rev, Some(kv))),
            // Deleted between the compare and now cannot happen (one
            // transaction); answer as for a lost session.
            _ => Err(EtcdError::RecipeSessionExpired.into()),
        },
        _ => Err(EtcdError::Internal("a transaction answered as something else".into()).into()),
    }
}

/// The compare "`key`'s create revision is `rev`".
pub fn create_rev_is(key: &Bytes, rev: u64) -> Compare {
    Compare {
        key: key.clone(),
        op: CmpOp::Equal,
        target: Target::CreateRev(rev),
        span: CompareSpan::Key,
    }
}

/// Deletes a contender's key when dropped, unless [`LeaveOnDrop::keep`]
/// was called: the call that queued it ended before it got through.
pub struct LeaveOnDrop {
    core: Core,
    key: Option<Bytes>,
}

impl LeaveOnDrop {
    /// Guards `key`.
    pub fn new(core: &Core, key: Bytes) -> LeaveOnDrop {
        LeaveOnDrop {
            core: core.clone(),
            key: Some(key),
        }
    }

    /// The call got through: the key stays.
    pub fn keep(mut self) {
        self.key = None;
    }
}

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let core = self.core.clone();
            tokio::spawn(async move {
                if let Err(e) = core.write(Op::delete(key)).await {
                    tracing::debug!(error = %e, "leaving a lock or election queue");
                }
            });
        }
    }
}

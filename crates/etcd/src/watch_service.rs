//! etcd's `Watch` service: one bidirectional stream carries many watches,
//! each a key range with filters, fed from the [`WatchHub`].
//!
//! A watch with start revision 0 sees every change after the store's
//! revision `R` at its creation; a later start skips the revisions before
//! it; an earlier one (etcd's unsynced watch) is first replayed from the
//! store's history, a few hundred changes at a time between the stream's
//! other work, and then joins the live changes with no gap and no
//! duplicate. A start below the last compaction is answered `created`
//! then `canceled` as compacted (`compact_revision` the compaction), as
//! etcd answers. Each member serves the changes it applied itself, as
//! etcd's members do.
//!
//! Invariants (per stream):
//! - at most [`WATCHES_PER_STREAM_MAX`] watches, and [`OUT_BUFFER`]
//!   responses waiting for the client;
//! - one hub subscription serves all the stream's watches; it exists only
//!   while the stream has a watch, and is taken under the state machine's
//!   lock with the revision a new watch starts after, so no change is
//!   missed or sent twice;
//! - a watch's changes of one revision go in one response, in the order
//!   they were applied (with `fragment`, in consecutive responses of at
//!   most [`FRAGMENT_BYTES`] each, all but the last marked `fragment`);
//!   every response carries etcd's header;
//! - a watch is either live (fed from the hub, every revision from its
//!   `from` on) or replaying (fed from the history, from its `from`
//!   through `last`, the last revision the stream took from the hub); it
//!   turns live once its replay passes `last`, so every revision reaches
//!   it exactly once;
//! - a progress response at revision `P` follows every change up to `P`,
//!   and goes only to live watches;
//! - a stream that falls behind the hub, and a snapshot restore, turn all
//!   its watches to replaying from where each stood: nothing is skipped,
//!   and a watch is canceled as compacted only if the history it needs
//!   was compacted.

use std::sync::Arc;
use std::time::Duration;

use flotilla_kv::Op;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::watch_server::Watch;
use flotilla_proto::mvccpb;
use flotilla_tls::PeerIdentity;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::core::Core;
use super::watch::{Batch, Selector, Subscription};
use super::watch_set::{OneWatch, Watches};
use flotilla_runtime::lock;

/// How long a watch with `progress_notify` may stay silent before it gets
/// an empty progress response (etcd's default).
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// What etcd says of a revision older than its history.
pub const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

/// What etcd says of a watch id already in use on the stream.
pub const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// The watch id of progress responses for the whole stream (etcd 3.4).
const STREAM_PROGRESS_ID: i64 = -1;

/// A watch created with `fragment` gets a revision's events split into
/// responses of about this many bytes (etcd splits at its
/// `--max-request-bytes`, 1.5 MiB by default).
pub const FRAGMENT_BYTES: usize = 3 << 19;

/// About how many changes a replay step reads from the history, under
/// the state machine's lock: small enough that applying waits little,
/// large enough that a replay of a million changes takes few steps.
const REPLAY_STEP: usize = 512;

/// Responses buffered per stream before the stream waits for the client.
/// Each may hold a whole revision's events (up to a few MiB with prev_kv),
/// so a client that stops reading pins at most this many of them; the
/// changes after that wait in the hub, shared by all streams, until the
/// stream falls behind it and is canceled.
const OUT_BUFFER: usize = 32;

/// Most watches on one stream; a create beyond it is answered created
/// and canceled. Each watch costs its selector and a share of every
/// applied revision's filtering, so a stream may not grow without end
/// (etcd sets no limit; its clients multiplex one stream per context,
/// with far fewer watches).
pub const WATCHES_PER_STREAM_MAX: usize = 10_000;

/// Why a create beyond [`WATCHES_PER_STREAM_MAX`] is canceled.
fn too_many_watches() -> String {
    format!(
        "flotilla: a watch stream holds at most {WATCHES_PER_STREAM_MAX} watches; cancel some or open another stream"
    )
}

/// The `etcdserverpb.Watch` service of one node.
#[derive(Clone)]
pub struct WatchService {
    core: Core,
    closing: watch::Receiver<bool>,
}

impl WatchService {
    /// The service over `core`; its streams end when `closing` turns true.
    pub fn new(core: Core, closing: watch::Receiver<bool>) -> WatchService {
        WatchService { core, closing }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(OUT_BUFFER);
        let stream = WatchStream {
            md: request.metadata().clone(),
            peer: request.extensions().get::<PeerIdentity>().cloned(),
            auth_revision: lock(&self.core.sm).replica.store().auth().revision(),
            core: self.core.clone(),
            out: tx,
            watches: Watches::default(),
            next_id: 0,
            sub: None,
            last: 0,
        };
        tokio::spawn(stream.run(request.into_inner(), self.closing.clone()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The client went away: the stream ends.
struct Gone;

/// The state of one `Watch` stream; see the module docs. It ends with
/// the client's stream (or connection: the server's HTTP/2 keepalive
/// ends a dead one) or the server.
struct WatchStream {
    core: Core,
    /// The stream's metadata and TLS identity: who asks ([`crate::auth`]).
    md: MetadataMap,
    peer: Option<PeerIdentity>,
    /// The auth revision the watches' permissions were last checked at.
    auth_revision: u64,
    /// Bound: [`OUT_BUFFER`] responses.
    out: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    /// Bound: [`WATCHES_PER_STREAM_MAX`].
    watches: Watches,
    next_id: i64,
    sub: Option<Subscription>,
    /// The last revision received from the hub.
    last: u64,
}

/// The next batch of the subscription, or never if there is none.
async fn next_batch(sub: &mut Option<Subscription>) -> Result<Arc<Batch>, RecvError> {
    match sub {
        Some(s) => s.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves once the server is closing.
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

impl WatchStream {
    async fn run(
        mut self,
        mut inbound: Streaming<pb::WatchRequest>,
        mut closing: watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
        ticker.tick().await;
        loop {
            let step = tokio::select! {
                req = inbound.message() => match req {
                    Ok(Some(r)) => self.handle(r).await,
                    Ok(None) | Err(_) => Err(Gone),
                },
                batch = next_batch(&mut self.sub) => self.on_batch(batch).await,
                () = std::future::ready(()), if self.replaying() => self.replay_step().await,
                _ = ticker.tick() => self.progress_tick().await,
                _ = closed(&mut closing) => Err(Gone),
                _ = self.out.closed() => Err(Gone),
            };
            if step.is_err() {
                return;
            }
        }
    }

    async fn handle(&mut self, r: pb::WatchRequest) -> Result<(), Gone> {
        use pb::watch_request::RequestUnion;
        match r.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(RequestUnion::CancelRequest(c)) => {
                // etcd answers nothing for an id it does not know.
                if self.watches.remove(c.watch_id).is_some() {
                    self.drop_idle_subscription();
                    let rev = self.current_after_drain().await?;
                    self.send(self.response(rev, c.watch_id, |r| r.canceled = true))
                        .await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                let rev = self.current_after_drain().await?;
                // etcd answers only once every watch is synced: a
                // progress at `rev` would claim changes not sent yet.
                if self.replaying() {
                    return Ok(());
                }
                self.send(self.response(rev, STREAM_PROGRESS_ID, |_| {}))
                    .await
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, c: pb::WatchCreateRequest) -> Result<(), Gone> {
        let read = watched(&c);
        if let Some(reason) = refusal(&c).or_else(|| self.denied(&read)) {
            let current = lock(&self.core.sm).replica.store().revision();
            return self
                .send(self.response(current, STREAM_PROGRESS_ID, |r| {
                    r.created = true;
                    r.canceled = true;
                    r.cancel_reason = reason;
                }))
                .await;
        }
        let id = self.id_for(&c);
        let (current, compacted) = {
            let sm = lock(&self.core.sm);
            let store = sm.replica.store();
            let current = store.revision();
            if self.sub.is_none() && !self.watches.contains_key(&id) {
                self.sub = Some(sm.watch.subscribe());
                self.last = current;
            }
            (current, store.compacted())
        };
        if self.watches.contains_key(&id) {
            return self
                .send(self.response(current, STREAM_PROGRESS_ID, |r| {
                    r.created = true;
                    r.canceled = true;
                    r.cancel_reason = DUPLICATE_ID.to_string();
                }))
                .await;
        }
        if self.watches.len() >= WATCHES_PER_STREAM_MAX {
            return self
                .send(self.response(current, id, |r| {
                    r.created = true;
                    r.canceled = true;
                    r.cancel_reason = too_many_watches();
                }))
                .await;
        }
        if c.watch_id == 0 {
            self.next_id += 1;
        }
        self.send(self.response(current, id, |r| r.created = true))
            .await?;
        let start = c.start_revision.max(0) as u64;
        if start != 0 && start < compacted {
            self.drop_idle_subscription();
            return self
                .send(self.response(current, id, |r| compacted_at(r, compacted)))
                .await;
        }
        // Revisions up to `last` are behind the hub's position: read from
        // the history. Later ones are still to come from the hub.
        let replaying = start != 0 && start <= self.last;
        let watch = OneWatch {
            sel: Selector::new(&c),
            from: if start == 0 { current + 1 } else { start },
            progress_notify: c.progress_notify,
            fragment: c.fragment,
            quiet: true,
            replaying,
            read,
        };
        self.watches.insert(id, watch);
        Ok(())
    }

    /// Why the stream's caller may not read `read`, as the cancel reason
    /// etcd gives, if it may not.
    fn denied(&self, read: &Op) -> Option<String> {
        let checked = self
            .core
            .caller_of(&self.md, self.peer.as_ref())
            .and_then(|caller| self.core.require_permitted(&caller, read));
        checked.err().map(|s| s.message().to_string())
    }

    /// After a change of the auth store, cancels the watches whose caller
    /// may no longer read what they watch: a revoked permission holds
    /// from the next event on.
    async fn recheck_auth(&mut self) -> Result<(), Gone> {
        let (now, current) = {
            let sm = lock(&self.core.sm);
            let store = sm.replica.store();
            (store.auth().revision(), store.revision())
        };
        if now == self.auth_revision {
            return Ok(());
        }
        self.auth_revision = now;
        let denied: Vec<(i64, String)> = self
            .watches
            .iter()
            .filter_map(|(id, w)| self.denied(&w.read).map(|why| (*id, why)))
            .collect();
        for (id, why) in denied {
            self.watches.remove(id);
            self.send(self.response(current, id, |r| {
                r.canceled = true;
                r.cancel_reason = why;
            }))
            .await?;
        }
        self.drop_idle_subscription();
        Ok(())
    }

    /// The id a create asks for, else the next free one.
    fn id_for(&mut self, c: &pb::WatchCreateRequest) -> i64 {
        if c.watch_id != 0 {
            return c.watch_id;
        }
        while self.watches.contains_key(&self.next_id) {
            self.next_id += 1;
        }
        self.next_id
    }

    async fn on_batch(&mut self, batch: Result<Arc<Batch>, RecvError>) -> Result<(), Gone> {
        match batch {
            Ok(b) => self.deliver(&b).await,
            Err(RecvError::Lagged(missed)) => {
                // What it missed is in the history: every watch reads it
                // from there, and turns live again once caught up.
                tracing::debug!(missed, "a watch stream fell behind; replaying");
                let current = lock(&self.core.sm).replica.store().revision();
                self.resync(current);
                Ok(())
            }
            // The hub lives as long as the state machine, which outlives
            // the server; if it went, so did the node.
            Err(RecvError::Closed) => Err(Gone),
        }
    }

    async fn deliver(&mut self, batch: &Batch) -> Result<(), Gone> {
        match batch {
            // Already read from the history, after a resync.
            Batch::Events { revision, .. } if *revision <= self.last => Ok(()),
            Batch::Events { revision, events } => {
                self.recheck_auth().await?;
                self.last = *revision;
                let out = self.watches.deliveries(*revision, events);
                for (id, fragment, events) in out {
                    self.send_events(*revision, id, fragment, events).await?;
                }
                Ok(())
            }
            // A restored snapshot: the revisions it jumped over are in its
            // history (if not compacted).
            Batch::Reset { revision } => {
                self.resync(*revision);
                Ok(())
            }
        }
    }

    /// Turns every watch to replaying from where it stood, and moves
    /// `last` to `current`: the revisions between are read from the
    /// history instead of the hub.
    fn resync(&mut self, current: u64) {
        for w in self.watches.values_mut() {
            if !w.replaying {
                w.from = w.from.max(self.last + 1);
                w.replaying = true;
            }
        }
        self.last = self.last.max(current);
    }

    fn replaying(&self) -> bool {
        self.watches.values().any(|w| w.replaying)
    }

    /// Reads the next few hundred changes of the first replaying watch
    /// from the history and sends them, one response per revision; the
    /// watch turns live once it passes `last`, or is canceled as
    /// compacted if the history it needs is gone.
    async fn replay_step(&mut self) -> Result<(), Gone> {
        let Some((&id, w)) = self.watches.iter().find(|(_, w)| w.replaying) else {
            return Ok(());
        };
        let (start, end) = w.sel.keys.bounds();
        let read = lock(&self.core.sm).replica.store().replay(
            w.from,
            self.last,
            &start,
            end.as_ref(),
            REPLAY_STEP,
        );
        let replay = match read {
            Ok(r) => r,
            Err(refusal) => {
                let compacted = match refusal {
                    flotilla_kv::Refusal::Compacted { compacted, .. } => compacted,
                    _ => self.last + 1,
                };
                self.watches.remove(id);
                self.drop_idle_subscription();
                return self
                    .send(self.response(self.last, id, |r| compacted_at(r, compacted)))
                    .await;
            }
        };
        let (sel, fragment) = (w.sel.clone(), w.fragment);
        let mut sent = false;
        // The replay lists events in revision order: one response each.
        for same_rev in replay.events.chunk_by(|a, b| a.kv.mod_rev == b.kv.mod_rev) {
            let events = sel.select(same_rev);
            if !events.is_empty() {
                sent = true;
                let revision = same_rev[0].kv.mod_rev;
                self.send_events(revision, id, fragment, events).await?;
            }
        }
        if let Some(w) = self.watches.get_mut(id) {
            w.quiet &= !sent;
            w.from = replay.next;
            w.replaying = w.from <= self.last;
        }
        Ok(())
    }

    async fn progress_tick(&mut self) -> Result<(), Gone> {
        if !self.watches.values().any(|w| w.progress_notify) {
            return Ok(());
        }
        let rev = self.current_after_drain().await?;
        let quiet: Vec<i64> = self
            .watches
            .iter()
            .filter(|(_, w)| w.progress_notify && w.quiet && !w.replaying)
            .map(|(id, _)| *id)
            .collect();
        for w in self.watches.values_mut() {
            w.quiet = true;
        }
        for id in quiet {
            self.send(self.response(rev, id, |_| {})).await?;
        }
        Ok(())
    }

    /// The store's revision, once every change up to it has been sent.
    async fn current_after_drain(&mut self) -> Result<u64, Gone> {
        let current = lock(&self.core.sm).replica.store().revision();
        // Every batch up to `current` was published before it could be
        // read, so it is in the channel now.
        while let Some(sub) = self.sub.as_mut() {
            let batch = match sub.rx.try_recv() {
                Ok(b) => Ok(b),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
            self.on_batch(batch).await?;
        }
        Ok(current.max(self.last))
    }

    /// Without watches the stream holds no subscription, so that the
    /// state machine need not record changes for it.
    fn drop_idle_subscription(&mut self) {
        if self.watches.is_empty() {
            self.sub = None;
        }
    }

    fn response(
        &self,
        revision: u64,
        watch_id: i64,
        fill: impl FnOnce(&mut pb::WatchResponse),
    ) -> pb::WatchResponse {
        let term = self.core.node.term();
        let mut r = pb::WatchResponse {
            header: self.core.header(revision, term),
            watch_id,
            ..Default::default()
        };
        fill(&mut r);
        r
    }

    /// Sends one revision's `events` of watch `id`, split as etcd's
    /// `fragment` asks if the watch wants it.
    async fn send_events(
        &self,
        revision: u64,
        id: i64,
        fragment: bool,
        events: Vec<mvccpb::Event>,
    ) -> Result<(), Gone> {
        let r = self.response(revision, id, |r| r.events = events);
        if !fragment {
            return self.send(r).await;
        }
        for part in fragments(r, FRAGMENT_BYTES) {
            self.send(part).await?;
        }
        Ok(())
    }

    async fn send(&self, r: pb::WatchResponse) -> Result<(), Gone> {
        self.out.send(Ok(r)).await.map_err(|_| Gone)
    }
}

/// Splits `r` as etcd's `sendFragments` does: unchanged if it is under
/// `max_bytes` encoded or holds one event; else into responses of as many
/// events as fit under `max_bytes` (at least one each), every one but the
/// last marked `fragment`.
/// Why a watch is refused before it is created, as etcd answers it:
/// created and canceled at once, under watch id -1. A negative start
/// revision is answered as compacted (etcd's answer); an unknown filter
/// with [`super::validate`]'s message.
fn refusal(c: &pb::WatchCreateRequest) -> Option<String> {
    match super::validate::check_watch(c) {
        Err(e) => Some(e.to_string()),
        Ok(()) if c.start_revision < 0 => Some(COMPACTED.to_string()),
        Ok(()) => None,
    }
}

/// The read a watch makes, as an operation to check permissions on:
/// its key, its range, or every key from its key on (`"\0"`).
fn watched(c: &pb::WatchCreateRequest) -> Op {
    let key = c.key.clone();
    match c.range_end.as_ref() {
        [] => Op::get(key),
        [0] => Op::range(key, None, 0),
        _ => Op::range(key, Some(c.range_end.clone()), 0),
    }
}

fn fragments(mut r: pb::WatchResponse, max_bytes: usize) -> Vec<pb::WatchResponse> {
    use prost::Message;
    if r.encoded_len() < max_bytes || r.events.len() < 2 {
        return vec![r];
    }
    let mut events = std::mem::take(&mut r.events).into_iter().peekable();
    let empty = pb::WatchResponse {
        fragment: true,
        ..r
    };
    let mut parts = Vec::new();
    while events.peek().is_some() {
        let mut part = empty.clone();
        let mut size = part.encoded_len();
        while let Some(ev) = events.peek() {
            let ev_size = prost::length_delimiter_len(ev.encoded_len()) + 1 + ev.encoded_len();
            if !part.events.is_empty() && size + ev_size >= max_bytes {
                break;
            }
            size += ev_size;
            part.events.extend(events.next());
        }
        part.fragment = events.peek().is_some();
        parts.push(part);
    }
    parts
}

/// Marks `r` as etcd's answer to a start below the compaction at
/// `compacted` (where a client may watch from again).
fn compacted_at(r: &mut pb::WatchResponse, compacted: u64) {
    r.canceled = true;
    r.compact_revision = i64::try_from(compacted).unwrap_or(i64::MAX);
    r.cancel_reason = COMPACTED.to_string();
}

#[cfg(test)]
mod tests {
    use flotilla_proto::mvccpb;
    use prost::Message;

    use super::*;

    fn put(key: &str, value_len: usize) -> mvccpb::Event {
        mvccpb::Event {
            r#type: mvccpb::event::EventType::Put as i32,
            kv: Some(mvccpb::KeyValue {
                key: key.to_string().into(),
                value: vec![b'v'; value_len].into(),
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    fn response(events: Vec<mvccpb::Event>) -> pb::WatchResponse {
        pb::WatchResponse {
            watch_id: 7,
            events,
            ..Default::default()
        }
    }

    #[test]
    fn small_responses_and_single_events_are_not_split() {
        let small = response(vec![put("a", 10), put("b", 10)]);
        assert_eq!(fragments(small.clone(), 1000), vec![small]);
        let one_big = response(vec![put("a", 5000)]);
        assert_eq!(fragments(one_big.clone(), 1000), vec![one_big]);
    }

    #[test]
    fn a_large_response_is_split_in_order_under_the_limit() {
        let events: Vec<_> = (0..10).map(|i| put(&format!("k{i}"), 300)).collect();
        let parts = fragments(response(events.clone()), 1000);
        assert!(parts.len() > 1, "{} parts", parts.len());
        let (last, rest) = parts.split_last().unwrap();
        assert!(
            rest.iter().all(|p| p.fragment),
            "all but the last are fragments"
        );
        assert!(!last.fragment);
        for p in &parts {
            assert_eq!(p.watch_id, 7);
            assert!(!p.events.is_empty());
            assert!(
                p.encoded_len() < 1000 || p.events.len() == 1,
                "{}",
                p.encoded_len()
            );
        }
        let rejoined: Vec<_> = parts.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(rejoined, events);
    }
}

//! The watch hub: how the changes the Raft state machine applies reach
//! etcd's `Watch` streams ([`super::watch_service`]), and which of them a
//! watch wants.
//!
//! The hub carries what is applied from now on; what was applied before a
//! watch was registered it reads from the store's history
//! ([`super::watch_service`] replays it). Invariants:
//! - the state machine records events only while a subscription exists
//!   ([`WatchHub::active`]); with none, the write path does no extra work;
//! - [`KvMachine::apply`](super::KvMachine) publishes each entry's events
//!   while it holds the machine's lock, and a subscriber reads the store
//!   revision `R` and calls [`WatchHub::subscribe`] under that same lock
//!   (the hub lives in the machine): the subscription
//!   then receives every batch after `R` exactly once, and none before;
//! - batches arrive in increasing revision order, one per revision;
//! - the channel is bounded: a subscriber that falls behind learns it
//!   (`Lagged`) and must not skip events silently;
//!   a snapshot restore that jumps the revision publishes
//!   [`Batch::Reset`]; either way the stream reads what it missed from
//!   the store's history.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use flotilla_kv::{Event, EventKind};
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::mvccpb;
use tokio::sync::broadcast;

use super::convert::{self, key_value};
pub use flotilla_host::kv_app::Batch;
use flotilla_host::kv_app::Publish;
use flotilla_runtime::owned::detach;

/// How many batches a subscriber may be behind before it is canceled.
pub const HUB_CAPACITY: usize = 4096;

/// The fan-out point between the state machine and the watch streams.
/// Bound: a batch (one applied entry's changes, at most the request
/// size limit) is freed once every subscriber has received it, and a
/// subscriber [`HUB_CAPACITY`] batches behind loses the oldest and is
/// canceled, so at most that many wait; per subscriber, only its
/// position.
#[derive(Debug)]
pub struct WatchHub {
    tx: broadcast::Sender<Arc<Batch>>,
    subscribers: Arc<AtomicUsize>,
}

impl Default for WatchHub {
    fn default() -> WatchHub {
        WatchHub::new(HUB_CAPACITY)
    }
}

/// A live subscription: batches after the revision it was taken at.
#[derive(Debug)]
pub struct Subscription {
    /// The batches.
    pub rx: broadcast::Receiver<Arc<Batch>>,
    subscribers: Arc<AtomicUsize>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl WatchHub {
    /// A hub whose subscribers may lag `capacity` batches behind.
    pub fn new(capacity: usize) -> WatchHub {
        let (tx, _) = broadcast::channel(capacity);
        WatchHub {
            tx,
            subscribers: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Subscribes. The caller holds the state machine's lock (the hub
    /// lives in it), which is what makes the subscription start exactly
    /// after the store's current revision.
    pub fn subscribe(&self) -> Subscription {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscription {
            rx: self.tx.subscribe(),
            subscribers: Arc::clone(&self.subscribers),
        }
    }
}

impl Publish for WatchHub {
    /// Whether anyone subscribes (so events must be recorded).
    fn active(&self) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 0
    }

    /// Publishes one batch (called by the state machine, under its lock).
    fn publish(&self, batch: Batch) {
        // No receiver: every subscription ended meanwhile; nothing to do.
        let _ = self.tx.send(Arc::new(batch));
    }
}

/// The keys a watch covers, with etcd's `range_end` rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRange {
    /// One key (empty `range_end`).
    One(Bytes),
    /// Every key from this one on (`range_end` "\0").
    From(Bytes),
    /// `[start, end)`.
    Between(Bytes, Bytes),
}

impl KeyRange {
    /// The range of a create request's `key` and `range_end`. The keys
    /// are copied out of the request ([`flotilla_runtime::owned`]): a watch
    /// lives far longer than its stream's receive buffer should.
    pub fn new(key: &Bytes, range_end: &Bytes) -> KeyRange {
        let key = detach(key);
        match convert::range_end(range_end) {
            None => KeyRange::One(key),
            Some(None) => KeyRange::From(key),
            Some(Some(end)) => KeyRange::Between(key, detach(&end)),
        }
    }

    /// The range as the store's `[start, end)` (`end: None`: to the last
    /// key).
    pub fn bounds(&self) -> (Bytes, Option<Bytes>) {
        match self {
            KeyRange::One(k) => (k.clone(), Some(super::validate::successor(k))),
            KeyRange::From(k) => (k.clone(), None),
            KeyRange::Between(a, b) => (a.clone(), Some(b.clone())),
        }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::One(k) => key == k.as_ref(),
            KeyRange::From(k) => key >= k.as_ref(),
            KeyRange::Between(s, e) => key >= s.as_ref() && key < e.as_ref(),
        }
    }
}

/// What one watch selects from each batch.
#[derive(Clone, Debug)]
pub struct Selector {
    /// The keys.
    pub keys: KeyRange,
    /// Drop put events (etcd's NOPUT filter).
    pub no_put: bool,
    /// Drop delete events (NODELETE).
    pub no_delete: bool,
    /// Include each event's previous pair.
    pub prev_kv: bool,
}

impl Selector {
    /// The selector of a create request.
    pub fn new(r: &pb::WatchCreateRequest) -> Selector {
        use pb::watch_create_request::FilterType;
        let has = |f: FilterType| r.filters.contains(&(f as i32));
        Selector {
            keys: KeyRange::new(&r.key, &r.range_end),
            no_put: has(FilterType::Noput),
            no_delete: has(FilterType::Nodelete),
            prev_kv: r.prev_kv,
        }
    }

    /// The events of `events` this watch wants, in etcd's form.
    pub fn select(&self, events: &[Event]) -> Vec<mvccpb::Event> {
        events.iter().filter_map(|e| self.select_one(e)).collect()
    }

    /// `e` in etcd's form, if this watch wants it.
    pub fn select_one(&self, e: &Event) -> Option<mvccpb::Event> {
        let kind_wanted = match e.kind {
            EventKind::Put => !self.no_put,
            EventKind::Delete => !self.no_delete,
        };
        (kind_wanted && self.keys.contains(&e.kv.key)).then(|| self.to_pb(e))
    }

    fn to_pb(&self, e: &Event) -> mvccpb::Event {
        let kind = match e.kind {
            EventKind::Put => mvccpb::event::EventType::Put,
            EventKind::Delete => mvccpb::event::EventType::Delete,
        };
        mvccpb::Event {
            r#type: kind as i32,
            kv: Some(key_value(&e.kv, false)),
            prev_kv: match &e.prev {
                Some(p) if self.prev_kv => Some(key_value(p, false)),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_kv::{Op, Store};
    use pb::watch_create_request::FilterType;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn key_ranges_follow_etcd_s_range_end() {
        let one = KeyRange::new(&b("foo"), &b(""));
        assert!(one.contains(b"foo") && !one.contains(b"foo1") && !one.contains(b"fo"));
        let from = KeyRange::new(&b("foo"), &b("\0"));
        assert!(from.contains(b"foo") && from.contains(b"zzz") && !from.contains(b"fon"));
        let all = KeyRange::new(&b(""), &b("\0"));
        assert!(all.contains(b"") && all.contains(b"\xff"));
        let prefix = KeyRange::new(&b("foo"), &b("fop"));
        assert!(prefix.contains(b"foo1") && !prefix.contains(b"fop"));
    }

    fn events(ops: &[Op]) -> Vec<Event> {
        let mut s = Store::new();
        s.apply(&Op::put("foo1", "old"));
        let mut ev = Vec::new();
        for op in ops {
            s.apply_recording(op, Some(&mut ev));
        }
        ev
    }

    fn create(filters: &[FilterType], prev_kv: bool) -> pb::WatchCreateRequest {
        pb::WatchCreateRequest {
            key: b("foo"),
            range_end: b("fop"),
            filters: filters.iter().map(|f| *f as i32).collect(),
            prev_kv,
            ..Default::default()
        }
    }

    fn summary(got: &[mvccpb::Event]) -> Vec<(i32, Bytes, bool)> {
        got.iter()
            .map(|e| {
                let kv = e.kv.clone().unwrap_or_default();
                (e.r#type, kv.key, e.prev_kv.is_some())
            })
            .collect()
    }

    #[test]
    fn selectors_filter_keys_kinds_and_prev_kv() {
        let ev = events(&[
            Op::put("foo1", "a"),
            Op::put("bar", "x"),
            Op::delete("foo1"),
            Op::put("foo2", "b"),
        ]);
        let (put, del) = (0, 1);
        let all = Selector::new(&create(&[], false)).select(&ev);
        assert_eq!(
            summary(&all),
            [
                (put, b("foo1"), false),
                (del, b("foo1"), false),
                (put, b("foo2"), false)
            ]
        );
        let with_prev = Selector::new(&create(&[], true)).select(&ev);
        assert_eq!(
            summary(&with_prev),
            [
                (put, b("foo1"), true),
                (del, b("foo1"), true),
                (put, b("foo2"), false)
            ]
        );
        let prev = with_prev[1].prev_kv.clone().unwrap_or_default();
        assert_eq!(prev.value, b("a"));
        let no_put = Selector::new(&create(&[FilterType::Noput], false)).select(&ev);
        assert_eq!(summary(&no_put), [(del, b("foo1"), false)]);
        let no_del = Selector::new(&create(&[FilterType::Nodelete], false)).select(&ev);
        assert_eq!(no_del.len(), 2);
    }

    #[test]
    fn the_hub_counts_subscribers_and_reports_lag() {
        let hub = WatchHub::new(2);
        assert!(!hub.active());
        let mut sub = hub.subscribe();
        assert!(hub.active());
        for revision in 1..=3 {
            hub.publish(Batch::Events {
                revision,
                events: Vec::new(),
            });
        }
        assert!(matches!(
            sub.rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(1))
        ));
        drop(sub);
        assert!(!hub.active());
    }
}

//! The watches of one `Watch` stream ([`super::watch_service`]), indexed
//! by key, so that an applied revision costs the stream work for the
//! watches its events concern, not for every watch it holds.
//!
//! A stream may hold thousands of watches, most on single keys (etcd's
//! clients watch one key per recipe, lease or informer object). Scanning
//! all of them for every applied revision made 10,000 watchers cut a
//! cluster's write rate almost in half (`bench/compare-watch.sh`); etcd
//! keeps single-key watchers in a map and ranges in an interval tree for
//! the same reason.
//!
//! Invariants: `by_key` holds exactly the ids of the watches on one key,
//! under that key, with no empty list; `ranges` exactly the ids of the
//! other watches. Both change only through [`Watches::insert`] and
//! [`Watches::remove`]; a watch's key range never changes after insertion
//! ([`Watches::get_mut`] hands out the rest of it).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Deref;

use bytes::Bytes;
use flotilla_kv::{Event, Op};
use flotilla_proto::mvccpb;

use super::watch::{KeyRange, Selector};

/// One watch of a stream.
pub(crate) struct OneWatch {
    pub(crate) sel: Selector,
    /// The first revision it reports.
    pub(crate) from: u64,
    pub(crate) progress_notify: bool,
    /// Large responses are split (etcd's `fragment`).
    pub(crate) fragment: bool,
    /// Nothing was sent for it since the last progress tick.
    pub(crate) quiet: bool,
    /// Fed from the history, not the hub, until `from` passes the
    /// stream's `last`.
    pub(crate) replaying: bool,
    /// The read its caller must be allowed, while auth is on.
    pub(crate) read: Op,
}

/// A live watch's share of one revision: its id, whether it fragments,
/// and its events in the order they were applied.
pub(crate) type Delivery = (i64, bool, Vec<mvccpb::Event>);

/// The watches of a stream by id, with the key index; see the module
/// docs. Reading goes through [`Deref`] to the map by id.
#[derive(Default)]
pub(crate) struct Watches {
    all: BTreeMap<i64, OneWatch>,
    by_key: HashMap<Bytes, Vec<i64>>,
    ranges: BTreeSet<i64>,
}

impl Deref for Watches {
    type Target = BTreeMap<i64, OneWatch>;

    fn deref(&self) -> &BTreeMap<i64, OneWatch> {
        &self.all
    }
}

impl Watches {
    /// Adds watch `id` (not held yet: the stream refuses duplicates
    /// before it gets here).
    pub(crate) fn insert(&mut self, id: i64, w: OneWatch) {
        match &w.sel.keys {
            KeyRange::One(k) => self.by_key.entry(k.clone()).or_default().push(id),
            _ => {
                self.ranges.insert(id);
            }
        }
        self.all.insert(id, w);
    }

    /// Removes watch `id`, if held.
    pub(crate) fn remove(&mut self, id: i64) -> Option<OneWatch> {
        let w = self.all.remove(&id)?;
        match &w.sel.keys {
            KeyRange::One(k) => {
                if let Some(ids) = self.by_key.get_mut(k) {
                    ids.retain(|&i| i != id);
                    if ids.is_empty() {
                        self.by_key.remove(k);
                    }
                }
            }
            _ => {
                self.ranges.remove(&id);
            }
        }
        Some(w)
    }

    /// Watch `id`, to change anything but its keys.
    pub(crate) fn get_mut(&mut self, id: i64) -> Option<&mut OneWatch> {
        self.all.get_mut(&id)
    }

    /// Every watch, to change anything but its keys.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut OneWatch> {
        self.all.values_mut()
    }

    /// What the live watches that report `revision` take of its `events`,
    /// by watch id; each of them is marked not quiet.
    pub(crate) fn deliveries(&mut self, revision: u64, events: &[Event]) -> Vec<Delivery> {
        let mut taken: BTreeMap<i64, Vec<mvccpb::Event>> = BTreeMap::new();
        for e in events {
            let exact = self.by_key.get(&e.kv.key).into_iter().flatten();
            for &id in exact.chain(&self.ranges) {
                let Some(w) = self.all.get(&id) else { continue };
                if w.replaying || w.from > revision {
                    continue;
                }
                if let Some(pe) = w.sel.select_one(e) {
                    taken.entry(id).or_default().push(pe);
                }
            }
        }
        taken
            .into_iter()
            .filter_map(|(id, events)| {
                let w = self.all.get_mut(&id)?;
                w.quiet = false;
                Some((id, w.fragment, events))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_kv::Store;
    use flotilla_proto::etcdserverpb as pb;

    fn watch(key: &str, range_end: &str, from: u64) -> OneWatch {
        let c = pb::WatchCreateRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            range_end: Bytes::copy_from_slice(range_end.as_bytes()),
            ..Default::default()
        };
        OneWatch {
            sel: Selector::new(&c),
            from,
            progress_notify: false,
            fragment: false,
            quiet: true,
            replaying: false,
            read: Op::get(Bytes::copy_from_slice(key.as_bytes())),
        }
    }

    /// The events of puts of `keys`, in order.
    fn events(keys: &[&str]) -> Vec<Event> {
        let mut store = Store::new();
        let mut out = Vec::new();
        for k in keys {
            let key = Bytes::copy_from_slice(k.as_bytes());
            store.apply_recording(&Op::put(key, "v"), Some(&mut out));
        }
        out
    }

    fn keys_of(d: &Delivery) -> Vec<String> {
        d.2.iter()
            .map(|e| String::from_utf8_lossy(&e.kv.as_ref().unwrap().key).into_owned())
            .collect()
    }

    #[test]
    fn each_watch_gets_its_keys_events_in_order_by_id() {
        let mut ws = Watches::default();
        ws.insert(3, watch("b", "", 0));
        ws.insert(1, watch("a", "", 0));
        ws.insert(2, watch("a", "c", 0));
        ws.insert(4, watch("z", "", 0));
        ws.insert(5, watch("a", "", 0));
        let got = ws.deliveries(1, &events(&["b", "a", "x"]));
        let ids: Vec<i64> = got.iter().map(|d| d.0).collect();
        assert_eq!(ids, [1, 2, 3, 5]);
        assert_eq!(keys_of(&got[1]), ["b", "a"]);
        assert_eq!(keys_of(&got[0]), ["a"]);
        assert!(!ws[&1].quiet && !ws[&2].quiet && ws[&4].quiet);
    }

    #[test]
    fn replaying_and_later_watches_get_nothing_live() {
        let mut ws = Watches::default();
        ws.insert(1, watch("a", "", 2));
        ws.insert(2, watch("a", "\0", 0));
        ws.get_mut(2).unwrap().replaying = true;
        assert!(ws.deliveries(1, &events(&["a"])).is_empty());
        assert_eq!(ws.deliveries(2, &events(&["a"])).len(), 1);
    }

    #[test]
    fn every_watch_can_be_turned_to_replaying() {
        let mut ws = Watches::default();
        ws.insert(1, watch("a", "", 0));
        ws.insert(2, watch("a", "b", 0));
        ws.values_mut().for_each(|w| w.replaying = true);
        assert!(ws.values().all(|w| w.replaying));
        assert!(ws.deliveries(1, &events(&["a"])).is_empty());
    }

    #[test]
    fn removal_keeps_the_index_exact() {
        let mut ws = Watches::default();
        ws.insert(1, watch("a", "", 0));
        ws.insert(2, watch("a", "", 0));
        ws.insert(3, watch("a", "b", 0));
        assert!(ws.remove(1).is_some() && ws.remove(1).is_none());
        assert_eq!(ws.by_key[&Bytes::from_static(b"a")], [2]);
        ws.remove(2);
        ws.remove(3);
        assert!(ws.by_key.is_empty() && ws.ranges.is_empty() && ws.is_empty());
        assert!(ws.deliveries(1, &events(&["a"])).is_empty());
    }
}

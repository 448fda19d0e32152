//! An ordered map whose clone is cheap: the keys are kept in chunks of at
//! most [`CHUNK_MAX`] entries, each behind an `Arc`, so cloning the map
//! clones one pointer per chunk, and a later write copies only the chunk
//! it touches (copy-on-write). The Raft driver clones the replica to hand a
//! snapshot to a background encoder; with a plain `BTreeMap` that clone
//! was on the Raft task and took 50–100 ms at a few hundred thousand keys.
//!
//! Invariants:
//! - `first` holds the keys below the lowest key of `rest`; each chunk of
//!   `rest` is stored under a key (its *floor*) that is at most its own
//!   smallest key, and holds every key from its floor up to the next
//!   chunk's floor;
//! - chunks of `rest` are never empty, and `first` is empty only if the
//!   whole map is;
//! - no chunk holds more than `CHUNK_MAX` entries;
//! - `len` is the number of entries.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

/// The most entries in one chunk: a write after a clone copies at most
/// this many, and a clone copies one `Arc` per this many.
pub(crate) const CHUNK_MAX: usize = 512;

type Chunk<K, V> = Arc<BTreeMap<K, V>>;

/// The map. See the module docs.
#[derive(Clone)]
pub(crate) struct ChunkMap<K, V> {
    first: Chunk<K, V>,
    rest: BTreeMap<K, Chunk<K, V>>,
    len: usize,
}

impl<K, V> Default for ChunkMap<K, V> {
    fn default() -> Self {
        ChunkMap {
            first: Arc::new(BTreeMap::new()),
            rest: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<K: Ord + Clone, V: Clone> ChunkMap<K, V> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunk that holds (or would hold) `key`.
    fn chunk<Q: Ord + ?Sized>(&self, key: &Q) -> &BTreeMap<K, V>
    where
        K: Borrow<Q>,
    {
        match self
            .rest
            .range((Bound::Unbounded, Bound::Included(key)))
            .next_back()
        {
            Some((_, c)) => c,
            None => &self.first,
        }
    }

    fn chunk_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> &mut Chunk<K, V>
    where
        K: Borrow<Q>,
    {
        match self
            .rest
            .range_mut((Bound::Unbounded, Bound::Included(key)))
            .next_back()
        {
            Some((_, c)) => c,
            None => &mut self.first,
        }
    }

    pub(crate) fn get_key_value<Q: Ord + ?Sized>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
    {
        self.chunk(key).get_key_value(key)
    }

    pub(crate) fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.chunk(key).get(key)
    }

    /// The value of `key`, for writing: its chunk is copied first if a
    /// clone of the map shares it. A missing key copies nothing.
    pub(crate) fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        let chunk = self.chunk_mut(key);
        // A chunk no clone shares is searched once; a shared one is first
        // checked for the key, so a miss does not copy it.
        if Arc::get_mut(chunk).is_none() && !chunk.contains_key(key) {
            return None;
        }
        Arc::make_mut(chunk).get_mut(key)
    }

    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        let chunk = Arc::make_mut(self.chunk_mut(&key));
        let old = chunk.insert(key, value);
        // A full chunk gives its upper half to a new chunk, floored at that
        // half's smallest key.
        let mut split = None;
        if chunk.len() > CHUNK_MAX
            && let Some(mid) = chunk.keys().nth(chunk.len() / 2).cloned()
        {
            let upper = chunk.split_off(&mid);
            split = Some((mid, upper));
        }
        if old.is_none() {
            self.len += 1;
        }
        if let Some((mid, upper)) = split {
            self.rest.insert(mid, Arc::new(upper));
        }
        old
    }

    pub(crate) fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let chunk = self.chunk_mut(key);
        if !chunk.contains_key(key) {
            return None;
        }
        let chunk = Arc::make_mut(chunk);
        let old = chunk.remove(key);
        let emptied = chunk.is_empty();
        self.len -= 1;
        if emptied {
            self.drop_empty_chunk(key);
        }
        old
    }

    /// Restores the invariants after the chunk of `key` became empty.
    fn drop_empty_chunk<Q: Ord + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        let floor = self
            .rest
            .range((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .map(|(f, _)| f.clone());
        match floor {
            Some(f) => {
                self.rest.remove::<K>(&f);
            }
            // The next chunk's keys now lie below every other floor.
            None => {
                if let Some((_, next)) = self.rest.pop_first() {
                    self.first = next;
                }
            }
        }
    }

    pub(crate) fn first_key_value(&self) -> Option<(&K, &V)> {
        self.first.first_key_value()
    }

    pub(crate) fn last_key_value(&self) -> Option<(&K, &V)> {
        match self.rest.last_key_value() {
            Some((_, c)) => c.last_key_value(),
            None => self.first.last_key_value(),
        }
    }

    pub(crate) fn pop_first(&mut self) -> Option<(K, V)> {
        let (key, _) = self.first.first_key_value()?;
        let key = key.clone();
        self.remove(&key).map(|v| (key, v))
    }

    /// The entries in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        std::iter::once(&self.first)
            .chain(self.rest.values())
            .flat_map(|c| c.iter())
    }

    /// The entries within `(start, end)`, in key order. Like
    /// `BTreeMap::range`, it panics if `start > end`, or if they are equal
    /// and both excluded.
    pub(crate) fn range<'a, Q: Ord + ?Sized>(
        &'a self,
        start: Bound<&'a Q>,
        end: Bound<&'a Q>,
    ) -> impl Iterator<Item = (&'a K, &'a V)> + 'a
    where
        K: Borrow<Q>,
    {
        // The chunk holding `start` is the last one floored at or below it.
        let start_floor = match start {
            Bound::Unbounded => None,
            Bound::Included(k) | Bound::Excluded(k) => self
                .rest
                .range((Bound::Unbounded, Bound::Included(k)))
                .next_back()
                .map(|(f, _)| f),
        };
        let (head, tail) = match start_floor {
            None => (Some(&self.first), self.rest.range::<K, _>(..)),
            Some(f) => (None, self.rest.range::<K, _>(f..)),
        };
        let below_end = move |floor: &K| match end {
            Bound::Unbounded => true,
            Bound::Included(e) => floor.borrow() <= e,
            Bound::Excluded(e) => floor.borrow() < e,
        };
        head.into_iter()
            .chain(tail.take_while(move |(f, _)| below_end(f)).map(|(_, c)| c))
            .flat_map(move |c| c.range((start, end)))
    }
}

impl<K: Ord + Clone, V: Clone + PartialEq> PartialEq for ChunkMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<K: Ord + Clone, V: Clone + Eq> Eq for ChunkMap<K, V> {}

impl<K: Ord + Clone + fmt::Debug, V: Clone + fmt::Debug> fmt::Debug for ChunkMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord + Clone, V: Clone> FromIterator<(K, V)> for ChunkMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = ChunkMap::default();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        Insert(u16, u32),
        Remove(u16),
        PopFirst,
        Clone,
        Range(u16, u16, bool, bool),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0u16..3000, any::<u32>()).prop_map(|(k, v)| Step::Insert(k, v)),
            3 => (0u16..3000).prop_map(Step::Remove),
            1 => Just(Step::PopFirst),
            1 => Just(Step::Clone),
            2 => (0u16..3000, 0u16..3000, any::<bool>(), any::<bool>())
                .prop_map(|(a, b, i, j)| Step::Range(a.min(b), a.max(b), i, j)),
        ]
    }

    fn bound(k: &u16, included: bool) -> Bound<&u16> {
        if included {
            Bound::Included(k)
        } else {
            Bound::Excluded(k)
        }
    }

    fn check_invariants(m: &ChunkMap<u16, u32>) {
        assert!(m.first.len() <= CHUNK_MAX);
        assert!(!m.first.is_empty() || m.rest.is_empty());
        let mut prev = m.first.last_key_value().map(|(k, _)| *k);
        for (floor, c) in &m.rest {
            assert!(!c.is_empty() && c.len() <= CHUNK_MAX);
            let (lo, _) = c.first_key_value().expect("non-empty");
            assert!(floor <= lo && prev.is_none_or(|p| p < *floor));
            prev = c.last_key_value().map(|(k, _)| *k);
        }
        assert_eq!(m.len, m.iter().count());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Every operation answers as `BTreeMap` does, and a clone taken
        /// at any point keeps its contents while the original changes.
        #[test]
        fn behaves_as_a_btree_map(steps in proptest::collection::vec(step(), 1..3000)) {
            let (mut m, mut model) = (ChunkMap::default(), BTreeMap::new());
            let mut clones = Vec::new();
            for s in steps {
                match s {
                    Step::Insert(k, v) => prop_assert_eq!(m.insert(k, v), model.insert(k, v)),
                    Step::Remove(k) => prop_assert_eq!(m.remove(&k), model.remove(&k)),
                    Step::PopFirst => prop_assert_eq!(m.pop_first(), model.pop_first()),
                    Step::Clone => clones.push((m.clone(), model.clone())),
                    Step::Range(a, b, i, j) if a == b && !i && !j => {}
                    Step::Range(a, b, i, j) => {
                        let got: Vec<_> = m.range(bound(&a, i), bound(&b, j)).collect();
                        let want: Vec<_> = model.range((bound(&a, i), bound(&b, j))).collect();
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(m.len(), model.len());
            }
            check_invariants(&m);
            prop_assert!(m.iter().eq(model.iter()));
            prop_assert_eq!(m.first_key_value(), model.first_key_value());
            prop_assert_eq!(m.last_key_value(), model.last_key_value());
            for k in 0..3000u16 {
                prop_assert_eq!(m.get(&k), model.get(&k));
            }
            for (c, snapshot) in &clones {
                check_invariants(c);
                prop_assert!(c.iter().eq(snapshot.iter()));
            }
        }
    }

    #[test]
    fn a_clone_shares_chunks_until_written() {
        let mut m: ChunkMap<u32, u32> = (0..10 * CHUNK_MAX as u32).map(|k| (k, k)).collect();
        let copy = m.clone();
        assert!(Arc::ptr_eq(&m.first, &copy.first));
        if let Some(v) = m.get_mut(&0) {
            *v = 7;
        }
        assert!(
            !Arc::ptr_eq(&m.first, &copy.first),
            "the written chunk was copied"
        );
        let shared = m.rest.values().zip(copy.rest.values());
        assert!(shared.into_iter().all(|(a, b)| Arc::ptr_eq(a, b)));
        assert_eq!((m.get(&0), copy.get(&0)), (Some(&7), Some(&0)));
        assert_eq!(m.get_mut(&u32::MAX), None);
    }

    #[test]
    fn unbounded_and_byte_keyed_ranges() {
        let m: ChunkMap<Vec<u8>, ()> = (0..2000u32)
            .map(|k| (k.to_be_bytes().to_vec(), ()))
            .collect();
        assert_eq!(
            m.range::<[u8]>(Bound::Unbounded, Bound::Unbounded).count(),
            2000
        );
        let from: &[u8] = &1500u32.to_be_bytes();
        assert_eq!(
            m.range(Bound::Included(from), Bound::Unbounded).count(),
            500
        );
        assert_eq!(
            m.range(Bound::Unbounded, Bound::Excluded(from)).count(),
            1500
        );
    }
}

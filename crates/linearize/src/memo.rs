//! The search's memo: the set of (linearized operations, model state) pairs
//! already explored, as in Lowe's and Porcupine's algorithm.
//!
//! A pair is a bitset of `words` u64 words plus an interned state id. Pairs
//! live back to back in one arena (no allocation per entry) and an
//! open-addressing table of entry indices finds them; the caller supplies the
//! hash, which it maintains incrementally (Zobrist hashing of the bitset).
//! Invariants: the table is a power of two and at most half full, so probing
//! always ends at an empty slot; entries are never removed.

/// Bitset-and-state pairs seen by one search.
pub(crate) struct Memo {
    words: usize,
    /// `words` bitset words then the state id, per entry.
    arena: Vec<u64>,
    /// Each entry's full hash, to skip most arena comparisons.
    hashes: Vec<u64>,
    /// Entry index + 1, or 0 for an empty slot.
    slots: Vec<u32>,
}

const EMPTY: u32 = 0;

impl Memo {
    /// A memo for bitsets of `words` words.
    pub(crate) fn new(words: usize) -> Self {
        Self {
            words,
            arena: Vec::new(),
            hashes: Vec::new(),
            slots: vec![EMPTY; 1024],
        }
    }

    fn slot_of(hash: u64, mask: usize) -> usize {
        // The low bits of a Zobrist xor are already uniform, but a state id
        // mixed in by the caller may not be: fold the high half in.
        ((hash ^ (hash >> 32)) as usize) & mask
    }

    /// Inserts (`bits`, `state`) with its `hash`; returns false if it was
    /// already there.
    pub(crate) fn insert(&mut self, hash: u64, bits: &[u64], state: u32) -> bool {
        debug_assert_eq!(bits.len(), self.words);
        let mask = self.slots.len() - 1;
        let mut i = Self::slot_of(hash, mask);
        loop {
            let slot = self.slots[i];
            if slot == EMPTY {
                break;
            }
            let e = (slot - 1) as usize;
            if self.hashes[e] == hash {
                let at = e * (self.words + 1);
                let entry = &self.arena[at..at + self.words + 1];
                if entry[self.words] == u64::from(state) && entry[..self.words] == *bits {
                    return false;
                }
            }
            i = (i + 1) & mask;
        }
        let index = u32::try_from(self.hashes.len() + 1).expect("fewer than 2^32 memo entries");
        self.slots[i] = index;
        self.hashes.push(hash);
        self.arena.extend_from_slice(bits);
        self.arena.push(u64::from(state));
        if self.hashes.len() * 2 > self.slots.len() {
            self.grow();
        }
        true
    }

    fn grow(&mut self) {
        let mut slots = vec![EMPTY; self.slots.len() * 2];
        let mask = slots.len() - 1;
        for (e, &hash) in self.hashes.iter().enumerate() {
            let mut i = Self::slot_of(hash, mask);
            while slots[i] != EMPTY {
                i = (i + 1) & mask;
            }
            slots[i] = (e + 1) as u32;
        }
        self.slots = slots;
    }

    /// The number of pairs stored.
    pub(crate) fn len(&self) -> usize {
        self.hashes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_pairs_again_across_growth_and_tells_states_apart() {
        let mut m = Memo::new(2);
        for i in 0..5000u64 {
            // A deliberately poor hash: many collisions must still work.
            assert!(m.insert(i % 7, &[i, !i], 1));
        }
        for i in 0..5000u64 {
            assert!(!m.insert(i % 7, &[i, !i], 1));
        }
        assert!(m.insert(3, &[3, !3], 2));
        assert_eq!(m.len(), 5001);
    }
}

//! Sorting with bounded memory (an external sort).
//!
//! [`SortBuffer`] collects `(partition, key, value)` records up to a memory
//! budget; past it, it sorts what it holds by `(partition, key)` and spills a
//! run file. With a combiner it folds values of equal keys as they arrive
//! (a hash table), so word count keeps one entry per distinct word.
//! [`Merger`] merges sorted run files into one sorted stream, reading each
//! run through a small buffer, so memory stays bounded whatever the data
//! size; [`merge_down`] first merges groups of runs into bigger runs when
//! there are more than [`MERGE_FAN_IN`], to bound open files too.
//!
//! In a run file each record's key is the partition as 4 big-endian bytes
//! followed by the app's key, so byte order is `(partition, key)` order.

use std::collections::HashMap;

use foldhash::fast::FixedState;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use flotilla_mapreduce::apps::App;
use flotilla_mapreduce::partition::partition;
use flotilla_mapreduce::record;

use super::error::TaskError;

/// The most runs merged at once.
pub const MERGE_FAN_IN: usize = 64;

/// Bookkeeping bytes counted per buffered record, beyond its key and value.
const RECORD_OVERHEAD: u64 = 48;

/// Record buffer with spilling; see the module docs.
pub struct SortBuffer<'a> {
    combiner: Option<&'a dyn App>,
    n_reduce: u32,
    budget: u64,
    spill_dir: PathBuf,
    spill_prefix: String,
    /// Without a combiner: all bytes, and one index entry per record.
    arena: Vec<u8>,
    index: Vec<Entry>,
    /// With a combiner: key to (partition, folded value); the partition is
    /// hashed once per distinct key, not per occurrence. A fixed-seed fast
    /// hash: order never leaks (records are sorted before they leave).
    table: HashMap<Vec<u8>, (u32, Vec<u8>), FixedState>,
    used: u64,
    runs: Vec<PathBuf>,
}

/// A record in the arena: its key at `at`, then its value.
#[derive(Debug, Clone, Copy)]
struct Entry {
    partition: u32,
    at: usize,
    key_len: u32,
    value_len: u32,
}

impl<'a> SortBuffer<'a> {
    /// A buffer of `budget` bytes for `n_reduce` partitions, spilling to
    /// `spill_dir/<prefix>-N.run`.
    pub fn new(
        combiner: Option<&'a dyn App>,
        n_reduce: u32,
        budget: u64,
        spill_dir: &Path,
        prefix: &str,
    ) -> Self {
        SortBuffer {
            combiner: combiner.filter(|app| app.has_combiner()),
            n_reduce: n_reduce.max(1),
            budget: budget.max(1 << 16),
            spill_dir: spill_dir.to_path_buf(),
            spill_prefix: prefix.to_string(),
            arena: Vec::new(),
            index: Vec::new(),
            table: HashMap::default(),
            used: 0,
            runs: Vec::new(),
        }
    }

    /// Adds one record.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), TaskError> {
        if let Some(app) = self.combiner {
            if let Some((_, acc)) = self.table.get_mut(key) {
                let before = acc.len();
                app.combine(key, acc, value)?;
                self.used = (self.used + acc.len() as u64).saturating_sub(before as u64);
            } else {
                let p = partition(key, self.n_reduce);
                self.used += (key.len() + value.len()) as u64 + RECORD_OVERHEAD;
                self.table.insert(key.to_vec(), (p, value.to_vec()));
            }
        } else {
            let at = self.arena.len();
            self.arena.extend_from_slice(key);
            self.arena.extend_from_slice(value);
            self.index.push(Entry {
                partition: partition(key, self.n_reduce),
                at,
                key_len: key.len() as u32,
                value_len: value.len() as u32,
            });
            self.used += (key.len() + value.len()) as u64 + RECORD_OVERHEAD;
        }
        if self.used >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// The buffered records as `(partition, key, value)`, sorted.
    fn sorted(&self) -> Vec<(u32, &[u8], &[u8])> {
        let mut out: Vec<(u32, &[u8], &[u8])> = if self.combiner.is_some() {
            self.table
                .iter()
                .map(|(k, (p, v))| (*p, k.as_slice(), v.as_slice()))
                .collect()
        } else {
            let arena = &self.arena;
            self.index
                .iter()
                .map(|e| {
                    let key_end = e.at + e.key_len as usize;
                    let value = &arena[key_end..key_end + e.value_len as usize];
                    (e.partition, &arena[e.at..key_end], value)
                })
                .collect()
        };
        // Stable, so equal keys keep their emission order.
        out.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        out
    }

    /// Writes the buffered records as one sorted run and empties the buffer.
    fn spill(&mut self) -> Result<(), TaskError> {
        let path = self
            .spill_dir
            .join(format!("{}-{}.run", self.spill_prefix, self.runs.len()));
        write_run(&path, &self.sorted())?;
        self.runs.push(path);
        self.arena = Vec::new();
        self.index = Vec::new();
        self.table = HashMap::default();
        self.used = 0;
        Ok(())
    }

    /// Calls `f` on every record in `(partition, key)` order (the key without
    /// its partition prefix), folding equal keys with the combiner if any.
    pub fn finish(
        mut self,
        mut f: impl FnMut(u32, &[u8], &[u8]) -> Result<(), TaskError>,
    ) -> Result<(), TaskError> {
        if self.runs.is_empty() {
            for (partition, key, value) in self.sorted() {
                f(partition, key, value)?;
            }
            return Ok(());
        }
        if !self.index.is_empty() || !self.table.is_empty() {
            self.spill()?;
        }
        let spills = std::mem::take(&mut self.runs);
        let runs = merge_down(spills.clone(), &self.spill_dir, &self.spill_prefix)?;
        let mut merger = Merger::open(&runs)?;
        let (mut key, mut value) = (Vec::new(), Vec::new());
        let mut pending: Option<(Vec<u8>, Vec<u8>)> = None;
        while merger.next_into(&mut key, &mut value)? {
            match (&mut pending, self.combiner) {
                (Some((pk, acc)), Some(app)) if *pk == key => {
                    app.combine(&key[4..], acc, &value)?
                }
                _ => {
                    if let Some((pk, pv)) = pending.take() {
                        let (partition, k) = split_pkey(&pk);
                        f(partition, k, &pv)?;
                    }
                    pending = Some((key.clone(), value.clone()));
                }
            }
        }
        if let Some((pk, pv)) = pending {
            let (partition, k) = split_pkey(&pk);
            f(partition, k, &pv)?;
        }
        for run in spills.iter().chain(&runs) {
            let _ = std::fs::remove_file(run);
        }
        Ok(())
    }
}

/// Splits a partition-prefixed key.
fn split_pkey(pkey: &[u8]) -> (u32, &[u8]) {
    let mut p = [0u8; 4];
    p.copy_from_slice(&pkey[..4]);
    (u32::from_be_bytes(p), &pkey[4..])
}

/// Writes sorted `(partition, key, value)` records to a new run file, each
/// key prefixed with its partition (see the module docs).
fn write_run(path: &Path, records: &[(u32, &[u8], &[u8])]) -> Result<(), TaskError> {
    let file = File::create(path).map_err(TaskError::io("create", path))?;
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    let mut pkey = Vec::new();
    for (p, k, v) in records {
        pkey.clear();
        pkey.extend_from_slice(&p.to_be_bytes());
        pkey.extend_from_slice(k);
        record::write(&mut out, &pkey, v).map_err(TaskError::io("write", path))?;
    }
    out.into_inner()
        .map_err(|e| TaskError::Io {
            op: "write",
            path: path.to_path_buf(),
            source: e.into_error(),
        })
        .map(drop)
}

/// Merges runs in groups of [`MERGE_FAN_IN`] until at most that many remain.
/// The merged runs it creates are named `<prefix>-merge*` in `dir`.
pub fn merge_down(
    mut runs: Vec<PathBuf>,
    dir: &Path,
    prefix: &str,
) -> Result<Vec<PathBuf>, TaskError> {
    let mut pass = 0;
    while runs.len() > MERGE_FAN_IN {
        let mut next = Vec::new();
        for (i, group) in runs.chunks(MERGE_FAN_IN).enumerate() {
            let path = dir.join(format!("{prefix}-merge{pass}-{i}.run"));
            let mut merger = Merger::open(group)?;
            let file = File::create(&path).map_err(TaskError::io("create", &path))?;
            let mut out = BufWriter::with_capacity(256 * 1024, file);
            let (mut k, mut v) = (Vec::new(), Vec::new());
            while merger.next_into(&mut k, &mut v)? {
                record::write(&mut out, &k, &v).map_err(TaskError::io("write", &path))?;
            }
            drop(out);
            // The first pass's inputs belong to the caller (they may be
            // shared map outputs); later passes' are ours.
            if pass > 0 {
                for run in group {
                    let _ = std::fs::remove_file(run);
                }
            }
            next.push(path);
        }
        runs = next;
        pass += 1;
    }
    Ok(runs)
}

/// One open run.
struct Run {
    path: PathBuf,
    reader: record::Reader<BufReader<File>>,
    key: Vec<u8>,
    value: Vec<u8>,
    live: bool,
}

impl Run {
    fn advance(&mut self) -> Result<(), TaskError> {
        self.live = self
            .reader
            .next_into(&mut self.key, &mut self.value)
            .map_err(|source| TaskError::Record {
                path: self.path.clone(),
                source,
            })?;
        Ok(())
    }
}

/// Merges sorted run files into one sorted stream; equal keys come out in
/// run order.
pub struct Merger {
    runs: Vec<Run>,
}

impl Merger {
    /// Opens every run.
    pub fn open(paths: &[PathBuf]) -> Result<Self, TaskError> {
        let mut runs = Vec::with_capacity(paths.len());
        for path in paths {
            let file = File::open(path).map_err(TaskError::io("open", path))?;
            let mut run = Run {
                path: path.clone(),
                reader: record::Reader::new(BufReader::with_capacity(64 * 1024, file)),
                key: Vec::new(),
                value: Vec::new(),
                live: false,
            };
            run.advance()?;
            runs.push(run);
        }
        Ok(Merger { runs })
    }

    /// Bytes read so far from all runs.
    pub fn bytes_read(&self) -> u64 {
        self.runs.iter().map(|r| r.reader.offset()).sum()
    }

    /// Moves the smallest record into `key` and `value`; `false` when all
    /// runs are exhausted.
    pub fn next_into(&mut self, key: &mut Vec<u8>, value: &mut Vec<u8>) -> Result<bool, TaskError> {
        // A linear scan: fan-in is at most MERGE_FAN_IN and usually a handful.
        let mut best: Option<usize> = None;
        for (i, run) in self.runs.iter().enumerate() {
            if run.live && best.is_none_or(|b| run.key < self.runs[b].key) {
                best = Some(i);
            }
        }
        let Some(i) = best else {
            return Ok(false);
        };
        let run = &mut self.runs[i];
        std::mem::swap(key, &mut run.key);
        std::mem::swap(value, &mut run.value);
        run.advance()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn collect(buf: SortBuffer<'_>) -> Vec<(u32, String, String)> {
        let mut out = Vec::new();
        buf.finish(|p, k, v| {
            out.push((
                p,
                String::from_utf8_lossy(k).into(),
                String::from_utf8_lossy(v).into(),
            ));
            Ok(())
        })
        .unwrap();
        out
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flotilla-sort-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn spilled_and_in_memory_sorts_agree() {
        let dir = temp_dir("agree");
        let words: Vec<String> = (0..5000)
            .map(|i| format!("w{}", (i * 7919) % 1000))
            .collect();
        let mut small = SortBuffer::new(None, 3, 0, &dir, "small");
        let mut big = SortBuffer::new(None, 3, 1 << 30, &dir, "big");
        for w in &words {
            small.push(w.as_bytes(), b"1").unwrap();
            big.push(w.as_bytes(), b"1").unwrap();
        }
        assert!(small.runs.len() > 1, "the small budget spilled");
        let (a, b) = (collect(small), collect(big));
        assert_eq!(a.len(), 5000);
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| (w[0].0, &w[0].1) <= (w[1].0, &w[1].1)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_combiner_folds_across_spills() {
        let dir = temp_dir("combine");
        let wc = flotilla_mapreduce::apps::build("wc", &BTreeMap::new()).unwrap();
        let mut buf = SortBuffer::new(Some(wc.as_ref()), 2, 0, &dir, "c");
        for i in 0..3000 {
            buf.push(format!("k{}", i % 10).as_bytes(), b"1").unwrap();
        }
        let out = collect(buf);
        assert_eq!(out.len(), 10);
        assert!(out.iter().all(|(_, _, v)| v == "300"), "{out:?}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "runs removed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn many_runs_merge_in_passes() {
        let dir = temp_dir("passes");
        let mut paths = Vec::new();
        for r in 0..(MERGE_FAN_IN + 5) {
            let path = dir.join(format!("in-{r}.run"));
            let key = format!("{:04}", (r * 37) % 100);
            write_run(&path, &[(0, key.as_bytes(), b"v")]).unwrap();
            paths.push(path);
        }
        let runs = merge_down(paths, &dir, "m").unwrap();
        assert_eq!(runs.len(), 2);
        let mut merger = Merger::open(&runs).unwrap();
        let (mut k, mut v, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        while merger.next_into(&mut k, &mut v).unwrap() {
            keys.push(k.clone());
        }
        assert_eq!(keys.len(), MERGE_FAN_IN + 5);
        assert!(keys.windows(2).all(|w| w[0] <= w[1]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

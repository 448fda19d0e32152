//! WAL throughput and recovery, next to the raw cost of the same bytes.
//!
//! For 100-byte and 4 KiB entries at batches of 1, 16 and 256 entries,
//! each batch appended and synced (one `fdatasync`), it prints appends/s,
//! MB/s of payload and the time per batch, beside a raw loop that
//! `write`s the same payload bytes to a file in the same directory and
//! `fdatasync`s it, measured in the same run: batches of the three loops
//! alternate, so a change in the disk's speed hits them alike, and the
//! median time per batch is reported. A second table repeats the loops
//! without `fdatasync`, to show the WAL's CPU cost (encode, CRC32C, copy). Then it times recovery (open plus
//! `initial_state`) of a log of `WAL_BENCH_RECOVERY_MB` MiB (default 128;
//! set 1024 for the 1 GiB figure), with the page cache warm and, where
//! `dd iflag=nocache` can drop it, cold.
//!
//! Run: `cargo bench -p flotilla-wal --bench wal`. The directory is
//! `WAL_BENCH_DIR` or the system temp dir; its file system is printed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_raft::{Entry, EntryKind, LogIndex, Storage, Term};
use flotilla_wal::{GroupId, Options, Wal};

const ROUNDS: usize = 5;
const ROUND_TIME: Duration = Duration::from_millis(700);
/// Bytes one round may write: below a segment, so no rotation (and its
/// fdatasync) lands in a round measured without syncs.
const ROUND_BYTES_MAX: u64 = 48 << 20;

struct Scratch(PathBuf);

impl Scratch {
    fn new(base: &Path, tag: &str) -> Scratch {
        let path = base.join(format!("flotilla-wal-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create bench dir");
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The mount (device, type) holding `dir`, from /proc/mounts.
fn file_system(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best = ("?".to_string(), "?".to_string(), 0);
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 2 && dir.starts_with(f[1]) && f[1].len() >= best.2 {
            best = (f[0].to_string(), f[2].to_string(), f[1].len());
        }
    }
    format!("{} on {} ({})", dir.display(), best.0, best.1)
}

fn payload(size: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let v: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    Bytes::from(v)
}

/// Time per batch of `write`s of `len` bytes, without syncing.
fn raw_round(dir: &Path, len: usize) -> (Duration, u64) {
    let path = dir.join("raw.dat");
    let _ = std::fs::remove_file(&path);
    let mut f: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open raw file");
    let bytes = payload(len, 7);
    let (start, mut n) = (Instant::now(), 0u64);
    while (start.elapsed() < ROUND_TIME || n < 5) && n * (len as u64) < ROUND_BYTES_MAX {
        f.write_all(&bytes).expect("raw write");
        n += 1;
    }
    (start.elapsed() / n as u32, n)
}

/// Time per batch of WAL appends handed to the OS, without syncing.
fn wal_round(dir: &Path, size: usize, batch: usize) -> (Duration, u64) {
    let wal_dir = Scratch::new(dir, "wal");
    let wal = Wal::open(&wal_dir.0, Options::default()).expect("open WAL");
    let mut h = wal.group(GroupId(1)).expect("handle");
    let data: Vec<Bytes> = (0..batch).map(|k| payload(size, k as u64)).collect();
    let (start, mut n, mut next) = (Instant::now(), 0u64, 1u64);
    let batch_bytes = (size * batch) as u64;
    while (start.elapsed() < ROUND_TIME || n < 5) && n * batch_bytes < ROUND_BYTES_MAX {
        let entries: Vec<Entry> = data
            .iter()
            .enumerate()
            .map(|(k, d)| entry(next + k as u64, d.clone()))
            .collect();
        next += batch as u64;
        h.append(&entries).expect("append");
        wal.flush().expect("flush");
        n += 1;
    }
    (start.elapsed() / n as u32, n)
}

fn entry(index: u64, data: Bytes) -> Entry {
    Entry {
        term: Term(1),
        index: LogIndex(index),
        kind: EntryKind::Command,
        data,
    }
}

/// The bytes the WAL writes for one batch: its Entries record.
fn framed_len(size: usize, batch: usize) -> usize {
    let entries: Vec<Entry> = (0..batch as u64)
        .map(|k| entry(1 + k, payload(size, k)))
        .collect();
    let mut out = Vec::new();
    flotilla_wal::record::put_entries(&mut out, GroupId(1), &entries);
    out.len()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Appends `batch` entries of `data` at `next` and syncs.
fn wal_batch(wal: &Wal, h: &mut flotilla_wal::GroupHandle, data: &[Bytes], next: &mut u64) {
    let entries: Vec<Entry> = data
        .iter()
        .enumerate()
        .map(|(k, d)| entry(*next + k as u64, d.clone()))
        .collect();
    *next += data.len() as u64;
    h.append(&entries).expect("append");
    wal.sync().expect("sync");
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// One synced batch of each contender in turn (raw payload, raw framed
/// size, WAL), so a change in the disk's speed hits all three alike;
/// returns the median time per batch of each.
fn interleaved(dir: &Path, size: usize, batch: usize) -> [Duration; 3] {
    let open = |name: &str| {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open raw file")
    };
    let (mut raw, mut raw_framed) = (open("raw.dat"), open("raw-framed.dat"));
    let plain = payload(size * batch, 7);
    let framed = payload(framed_len(size, batch), 9);
    let wal_dir = Scratch::new(dir, "wal");
    let wal = Wal::open(&wal_dir.0, Options::default()).expect("open WAL");
    let mut h = wal.group(GroupId(1)).expect("handle");
    let data: Vec<Bytes> = (0..batch).map(|k| payload(size, k as u64)).collect();
    let mut times: [Vec<Duration>; 3] = Default::default();
    let (start, mut next) = (Instant::now(), 1u64);
    let budget = ROUND_TIME * ROUNDS as u32;
    while (start.elapsed() < budget || times[0].len() < 15)
        && (times[0].len() * framed.len()) < (256 << 20)
    {
        let write = |f: &mut File, b: &[u8]| {
            f.write_all(b).expect("raw write");
            f.sync_data().expect("raw fdatasync");
        };
        times[0].push(timed(|| write(&mut raw, &plain)));
        times[1].push(timed(|| write(&mut raw_framed, &framed)));
        times[2].push(timed(|| wal_batch(&wal, &mut h, &data, &mut next)));
    }
    let _ = std::fs::remove_file(dir.join("raw.dat"));
    let _ = std::fs::remove_file(dir.join("raw-framed.dat"));
    times.map(median)
}

fn throughput(dir: &Path) {
    println!("raw = write+fdatasync of the payload; raw+ = of as many bytes as the WAL writes");
    println!(
        "{:>5} {:>5} | {:>9} {:>8} {:>9} | {:>9} | {:>9} {:>8} {:>9} | {:>7} {:>7}",
        "entry",
        "batch",
        "raw app/s",
        "raw MB/s",
        "raw/batch",
        "raw+/bat",
        "wal app/s",
        "wal MB/s",
        "wal/batch",
        "wal/raw",
        "wal/raw+"
    );
    for size in [100usize, 4096] {
        for batch in [1usize, 16, 256] {
            let [raw, raw_framed, wal] = interleaved(dir, size, batch);
            let rate = |d: Duration| batch as f64 / d.as_secs_f64();
            let mbs = |d: Duration| (batch * size) as f64 / d.as_secs_f64() / 1e6;
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            println!(
                "{size:>5} {batch:>5} | {:>9.0} {:>8.2} {:>7.0}µs | {:>7.0}µs | {:>9.0} {:>8.2} {:>7.0}µs | {:>7.3} {:>7.3}",
                rate(raw),
                mbs(raw),
                us(raw),
                us(raw_framed),
                rate(wal),
                mbs(wal),
                us(wal),
                wal.as_secs_f64() / raw.as_secs_f64(),
                wal.as_secs_f64() / raw_framed.as_secs_f64()
            );
        }
    }
}

/// The CPU side alone: the same loops without fdatasync (raw: `write` of
/// the payload; WAL: append, encode, checksum, `write`).
fn cpu_floor(dir: &Path) {
    println!("without fdatasync (CPU and page cache only), per batch:");
    for size in [100usize, 4096] {
        for batch in [1usize, 16, 256] {
            let (mut raw, mut wal) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                raw.push(raw_round(dir, size * batch).0);
                wal.push(wal_round(dir, size, batch).0);
            }
            let (raw, wal) = (median(raw), median(wal));
            println!(
                "{size:>5} {batch:>5} | raw write {:>8.1}µs | wal append+write {:>8.1}µs | extra {:>7.1}µs",
                raw.as_secs_f64() * 1e6,
                wal.as_secs_f64() * 1e6,
                (wal.as_secs_f64() - raw.as_secs_f64()) * 1e6
            );
        }
    }
}

/// Writes a log of about `mib` MiB of `size`-byte entries, synced.
fn write_log(dir: &Path, mib: u64, size: usize) -> u64 {
    let wal = Wal::open(dir, Options::default()).expect("open WAL");
    let mut h = wal.group(GroupId(1)).expect("handle");
    let data: Vec<Bytes> = (0..256).map(|k| payload(size, k)).collect();
    let total = (mib << 20) / size as u64;
    let mut next = 1u64;
    while next <= total {
        let entries: Vec<Entry> = (0..256u64)
            .map(|k| entry(next + k, data[k as usize].clone()))
            .collect();
        h.append(&entries).expect("append");
        next += 256;
    }
    wal.sync().expect("sync");
    next - 1
}

/// Drops `dir`'s files from the page cache, if `dd` can.
fn drop_cache(dir: &Path) -> bool {
    let mut ok = true;
    for e in std::fs::read_dir(dir).expect("list").flatten() {
        let status = std::process::Command::new("dd")
            .arg(format!("if={}", e.path().display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status();
        ok &= status.is_ok_and(|s| s.success());
    }
    ok
}

fn recover_once(dir: &Path, entries: u64) -> (Duration, u64) {
    let start = Instant::now();
    let wal = Wal::open(dir, Options::default()).expect("recover");
    let state = wal
        .group(GroupId(1))
        .expect("handle")
        .initial_state()
        .expect("state");
    let took = start.elapsed();
    assert_eq!(state.entries.len() as u64, entries, "recovered every entry");
    (took, wal.recovery_report().bytes)
}

fn recovery(base: &Path) {
    let mib: u64 = std::env::var("WAL_BENCH_RECOVERY_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    for size in [4096usize, 100] {
        let dir = Scratch::new(base, "recovery");
        let entries = write_log(&dir.0, mib, size);
        let mut runs = vec![("warm", recover_once(&dir.0, entries))];
        if drop_cache(&dir.0) {
            runs.push(("cold", recover_once(&dir.0, entries)));
        }
        for (cache, (took, bytes)) in runs {
            println!(
                "recovery {cache}: {:.0} MiB log of {entries} {size}-byte entries in {:.3} s = {:.0} MB/s",
                bytes as f64 / (1 << 20) as f64,
                took.as_secs_f64(),
                bytes as f64 / took.as_secs_f64() / 1e6
            );
        }
    }
}

fn main() {
    let base = std::env::var_os("WAL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return; // `cargo test --benches` probes benches this way.
    }
    println!("directory: {}", file_system(&base));
    println!(
        "cores: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if std::env::var_os("WAL_BENCH_SKIP_THROUGHPUT").is_none() {
        throughput(&base);
        cpu_floor(&base);
    }
    recovery(&base);
}

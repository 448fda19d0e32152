//! Checks every shared history and a generated 50-client, 100,000-op,
//! 1,000-key history, printing the time of each, the jepsen-etcd total and
//! the peak memory (VmHWM). Run: `cargo bench -p flotilla-linearize --bench
//! check [-- FILTER]`; FILTER keeps only the cases whose name contains it.
//! Targets (issue 4, one core, release): each kv/c50 < 1 s, all jepsen-etcd
//! < 10 s, the generated history < 5 s.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flotilla_linearize::format::{parse_jepsen_etcd, parse_jepsen_kv};
use flotilla_linearize::{
    History, Kv, KvInput, KvOutput, Limits, Model, Operation, Register, Report, check_report,
};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/histories")
        .join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Peak resident memory of this process, from /proc (Linux only).
fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l[6..].trim().to_string())
        })
        .unwrap_or_else(|| "unavailable".to_string())
}

fn run<M: Model>(name: &str, model: &M, history: &History<M::Input, M::Output>) -> Duration {
    let start = Instant::now();
    let quick = Limits {
        shrink_steps: 0,
        ..Limits::unlimited()
    };
    let report: Report = check_report(model, history, &quick);
    let took = start.elapsed();
    let mut shrink = String::new();
    if !report.verdict.is_linearizable() {
        let start = Instant::now();
        let full = check_report(model, history, &Limits::unlimited());
        let ce = full.verdict.counterexample().expect("same verdict");
        shrink = format!(
            " (core of {}{}; with shrinking {:.3} ms)",
            ce.core.len(),
            if ce.minimal { "" } else { ", not minimal" },
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    let steps: u64 = report.partitions.iter().map(|p| p.steps).sum();
    let memo: usize = report.partitions.iter().map(|p| p.memo_entries).sum();
    let verdict = match &report.verdict {
        flotilla_linearize::Verdict::Linearizable => "linearizable".to_string(),
        flotilla_linearize::Verdict::NotLinearizable(_) => format!("not linearizable{shrink}"),
        flotilla_linearize::Verdict::Unknown(_) => "unknown".to_string(),
    };
    println!(
        "{name:<24} {:>6} ops {:>4} parts {:>10.3} ms  {steps:>10} steps {memo:>9} memo  {verdict}",
        history.len(),
        report.partitions.len(),
        took.as_secs_f64() * 1e3,
    );
    took
}

/// A deterministic xorshift PRNG: the generated history is the same on
/// every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// 50 clients run 100,000 operations on 1,000 keys against a sequential
/// store; each operation takes effect at a random point between its call
/// and its return, so the history is linearizable by construction.
fn generated(clients: u64, ops: usize, keys: u64) -> History<KvInput, KvOutput> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut store = vec![String::new(); keys as usize];
    // Per client: (call time, effect time, op, return time).
    let mut now = 0u64;
    let mut busy: Vec<Option<(u64, KvInput, u64)>> = vec![None; clients as usize];
    let mut history = History::new();
    let mut started = 0;
    while started < ops || busy.iter().any(Option::is_some) {
        now += 1;
        let c = rng.below(clients) as usize;
        match busy[c].take() {
            None if started < ops => {
                let key = rng.below(keys);
                let input = match rng.below(10) {
                    0..=4 => KvInput::get(key.to_string()),
                    5 => KvInput::put(key.to_string(), format!("p{c}.{started} ")),
                    _ => KvInput::append(key.to_string(), format!("a{c}.{started} ")),
                };
                busy[c] = Some((now, input, 0));
                started += 1;
            }
            None => {}
            Some((call, input, _)) => {
                // The op takes effect now, and returns now.
                let slot = &mut store[input.key.parse::<usize>().expect("numeric key")];
                let output = match &input.op {
                    flotilla_linearize::KvOp::Get => KvOutput::Value(slot.clone()),
                    flotilla_linearize::KvOp::Put(v) => {
                        *slot = v.clone();
                        KvOutput::Ok
                    }
                    flotilla_linearize::KvOp::Append(v) => {
                        slot.push_str(v);
                        KvOutput::Ok
                    }
                    _ => unreachable!("only get, put and append are generated"),
                };
                let op = Operation::completed(c as u64, call, now, input, output);
                history.push(op).expect("return after call");
            }
        }
    }
    history
}

fn main() {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let wanted = |name: &str| name.contains(&filter);
    println!("one core, release; limits: none");
    let mut jepsen_total = Duration::ZERO;
    let verdicts = read(&data("jepsen-etcd/VERDICTS.tsv"));
    for line in verdicts.lines().filter(|l| !l.trim().is_empty()) {
        let file = line.split('\t').next().unwrap_or_default();
        let name = format!("jepsen-etcd/{file}");
        if !wanted(&name) {
            continue;
        }
        let parsed = parse_jepsen_etcd(&read(&data(&name))).expect("valid log");
        jepsen_total += run(&name, &Register, &parsed.history);
    }
    println!(
        "jepsen-etcd total: {:.3} ms",
        jepsen_total.as_secs_f64() * 1e3
    );
    for clients in ["c01", "c10", "c50"] {
        for suffix in ["ok", "bad"] {
            let name = format!("kv/{clients}-{suffix}.txt");
            if wanted(&name) {
                let parsed = parse_jepsen_kv(&read(&data(&name))).expect("valid history");
                run(&name, &Kv, &parsed.history);
            }
        }
    }
    let name = "generated-50c-100k-1000k";
    if wanted(name) {
        let history = generated(50, 100_000, 1_000);
        run(name, &Kv, &history);
    }
    println!("peak memory (VmHWM): {}", peak_memory());
}

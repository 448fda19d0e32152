//! Property tests: histories made by running random concurrent operations
//! against a sequential store are linearizable by construction; changing
//! one read's result to a value no ordering explains makes them fail, with
//! that read in the counterexample's core.

use flotilla_linearize::format::{kv_to_jsonl, parse_jsonl_kv};
use flotilla_linearize::{
    History, Kv, KvInput, KvOp, KvOutput, Limits, Model, OpId, Operation, Register, RegisterInput,
    RegisterOutput, Verdict, check,
};
use proptest::prelude::*;

/// A small deterministic PRNG driven by the proptest seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// One client's operation in flight.
#[derive(Clone)]
struct InFlight<I, O> {
    call: u64,
    input: I,
    /// Set once the operation took effect on the store.
    output: Option<O>,
}

/// Runs `total` random operations of `clients` clients against `apply` (the
/// sequential store). Each operation takes effect at a random step between
/// its call and its return; those still in flight at the end are pending,
/// whether or not they took effect.
fn run<I: Clone, O: Clone>(
    rng: &mut Rng,
    clients: u64,
    total: usize,
    mut make: impl FnMut(&mut Rng, usize) -> I,
    mut apply: impl FnMut(&I) -> O,
) -> History<I, O> {
    let mut busy: Vec<Option<InFlight<I, O>>> = vec![None; clients as usize];
    let mut h = History::new();
    let (mut started, mut now) = (0, 0u64);
    // Bounded: every step advances one client, and each op needs 3 steps.
    for _ in 0..total * 3 * clients as usize {
        now += 1;
        let c = rng.below(clients) as usize;
        match busy[c].take() {
            None if started < total => {
                let input = make(rng, started);
                busy[c] = Some(InFlight {
                    call: now,
                    input,
                    output: None,
                });
                started += 1;
            }
            None => {}
            Some(mut f) => match f.output.take() {
                None => {
                    f.output = Some(apply(&f.input));
                    busy[c] = Some(f);
                }
                Some(out) => {
                    let op = Operation::completed(c as u64, f.call, now, f.input, out);
                    h.push(op).expect("valid op");
                }
            },
        }
    }
    for (c, f) in busy.into_iter().enumerate() {
        if let Some(f) = f {
            h.push(Operation::pending(c as u64, f.call, f.input))
                .expect("valid op");
        }
    }
    h
}

fn kv_history(seed: u64, clients: u64, total: usize) -> History<KvInput, KvOutput> {
    let make = |rng: &mut Rng, n: usize| {
        let key = rng.below(3).to_string();
        match rng.below(8) {
            0..=2 => KvInput::get(key),
            3 => KvInput::put(key, format!("p{n};")),
            4 | 5 => KvInput::append(key, format!("a{n};")),
            6 => KvInput::delete(key),
            _ => KvInput::cas(key, format!("p{};", n.saturating_sub(3)), format!("c{n};")),
        }
    };
    kv_history_of(seed, clients, total, make)
}

/// Mostly appends and gets, on two keys, with a rare put: the histories the
/// append lookahead (`Model::may_precede`) prunes.
fn append_history(seed: u64, clients: u64, total: usize) -> History<KvInput, KvOutput> {
    let make = |rng: &mut Rng, n: usize| {
        let key = rng.below(2).to_string();
        match rng.below(10) {
            0..=3 => KvInput::get(key),
            4..=8 => KvInput::append(key, format!("a{n};")),
            _ => KvInput::put(key, format!("p{n};")),
        }
    };
    kv_history_of(seed, clients, total, make)
}

fn kv_history_of(
    seed: u64,
    clients: u64,
    total: usize,
    make: impl FnMut(&mut Rng, usize) -> KvInput,
) -> History<KvInput, KvOutput> {
    let mut rng = Rng(seed);
    let mut store: Vec<(String, u64)> = vec![(String::new(), 0); 3];
    let apply = |input: &KvInput| {
        let slot = &mut store[input.key.parse::<usize>().expect("key")];
        match &input.op {
            KvOp::Get => KvOutput::Value(slot.0.clone()),
            KvOp::Put(v) => {
                *slot = (v.clone(), slot.1 + 1);
                KvOutput::Ok
            }
            KvOp::Append(v) => {
                slot.0.push_str(v);
                slot.1 += 1;
                KvOutput::Ok
            }
            KvOp::Delete => {
                *slot = (String::new(), 0);
                KvOutput::Ok
            }
            KvOp::Cas { expected, new } => {
                let swapped = slot.0 == *expected;
                if swapped {
                    *slot = (new.clone(), slot.1 + 1);
                }
                KvOutput::Cas(swapped)
            }
            KvOp::CasVersion { .. } => unreachable!("not generated"),
        }
    };
    run(&mut rng, clients, total, make, apply)
}

fn register_history(
    seed: u64,
    clients: u64,
    total: usize,
) -> History<RegisterInput, RegisterOutput> {
    let mut rng = Rng(seed);
    let mut value: Option<i64> = None;
    let make = |rng: &mut Rng, _: usize| match rng.below(3) {
        0 => RegisterInput::Read,
        1 => RegisterInput::Write(rng.below(4) as i64),
        _ => RegisterInput::Cas {
            from: rng.below(4) as i64,
            to: rng.below(4) as i64,
        },
    };
    let apply = |input: &RegisterInput| match input {
        RegisterInput::Read => RegisterOutput::Value(value),
        RegisterInput::Write(v) => {
            value = Some(*v);
            RegisterOutput::Written
        }
        RegisterInput::Cas { from, to } => {
            let swapped = value == Some(*from);
            if swapped {
                value = Some(*to);
            }
            RegisterOutput::Cas(swapped)
        }
    };
    run(&mut rng, clients, total, make, apply)
}

/// The KV model without the append lookahead: the plain search, to compare
/// the pruned one with.
struct Unpruned;

impl Model for Unpruned {
    type Input = KvInput;
    type Output = KvOutput;
    type State = <Kv as Model>::State;

    fn init(&self) -> Self::State {
        Kv.init()
    }
    fn step(&self, s: &Self::State, i: &KvInput, o: Option<&KvOutput>) -> Option<Self::State> {
        Kv.step(s, i, o)
    }
    fn partition(&self, input: &KvInput) -> Option<String> {
        Kv.partition(input)
    }
    fn is_read_only(&self, input: &KvInput, output: Option<&KvOutput>) -> bool {
        Kv.is_read_only(input, output)
    }
}

/// Gives the `pick`-th completed get the output of another get (on any
/// key): sometimes still linearizable, often not.
fn swap_a_get(
    h: &History<KvInput, KvOutput>,
    pick: usize,
    other: usize,
) -> History<KvInput, KvOutput> {
    let gets: Vec<usize> = (0..h.len())
        .filter(|&i| matches!(h.ops()[i].output, Some(KvOutput::Value(_))))
        .collect();
    let mut ops = h.ops().to_vec();
    if !gets.is_empty() {
        let (a, b) = (gets[pick % gets.len()], gets[other % gets.len()]);
        ops[a].output = ops[b].output.clone();
    }
    History::try_from(ops).expect("valid")
}

/// Changes the output of the `pick`-th completed get to a value that no
/// write ever produced (`#` never appears in a written value).
fn corrupt_a_get(
    h: &History<KvInput, KvOutput>,
    pick: usize,
) -> Option<(History<KvInput, KvOutput>, OpId)> {
    let gets: Vec<usize> = (0..h.len())
        .filter(|&i| matches!(h.ops()[i].output, Some(KvOutput::Value(_))))
        .collect();
    let target = *gets.get(pick % gets.len().max(1))?;
    let mut ops = h.ops().to_vec();
    ops[target].output = Some(KvOutput::Value("#".to_string()));
    Some((History::try_from(ops).expect("valid"), OpId(target)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn kv_histories_from_a_sequential_store_are_linearizable(
        seed in any::<u64>(), clients in 1u64..6, total in 1usize..40,
    ) {
        let h = kv_history(seed, clients, total);
        let verdict = check(&Kv, &h, &Limits::unlimited());
        prop_assert!(verdict.is_linearizable(), "{}\n{}", verdict, kv_to_jsonl(&h));
    }

    #[test]
    fn register_histories_from_a_sequential_register_are_linearizable(
        seed in any::<u64>(), clients in 1u64..6, total in 1usize..40,
    ) {
        let h = register_history(seed, clients, total);
        let verdict = check(&Register, &h, &Limits::unlimited());
        prop_assert!(verdict.is_linearizable(), "{}", verdict);
    }

    #[test]
    fn one_impossible_read_makes_a_kv_history_fail_and_is_in_the_core(
        seed in any::<u64>(), clients in 1u64..6, total in 1usize..40, pick in any::<usize>(),
    ) {
        let h = kv_history(seed, clients, total);
        if let Some((bad, id)) = corrupt_a_get(&h, pick) {
            let verdict = check(&Kv, &bad, &Limits::unlimited());
            let Verdict::NotLinearizable(c) = &verdict else {
                return Err(TestCaseError::fail(format!("expected a failure, got {verdict}")));
            };
            prop_assert_eq!(c.partition.as_deref(), Some(bad.ops()[id.0].input.key.as_str()));
            prop_assert!(c.core.contains(&id), "{}", c);
            // Deterministic: the same counterexample, word for word.
            prop_assert_eq!(verdict.to_string(), check(&Kv, &bad, &Limits::unlimited()).to_string());
        }
    }

    #[test]
    fn one_impossible_read_makes_a_register_history_fail(
        seed in any::<u64>(), clients in 1u64..6, total in 1usize..40, pick in any::<usize>(),
    ) {
        let h = register_history(seed, clients, total);
        let reads: Vec<usize> = (0..h.len())
            .filter(|&i| matches!(h.ops()[i].output, Some(RegisterOutput::Value(_))))
            .collect();
        if !reads.is_empty() {
            let target = reads[pick % reads.len()];
            let mut ops = h.ops().to_vec();
            // Only 0..4 are ever written.
            ops[target].output = Some(RegisterOutput::Value(Some(99)));
            let bad = History::try_from(ops).expect("valid");
            let verdict = check(&Register, &bad, &Limits::unlimited());
            let c = verdict.counterexample();
            prop_assert!(c.is_some_and(|c| c.core.contains(&OpId(target))), "{}", verdict);
        }
    }

    #[test]
    fn the_append_lookahead_changes_no_verdict(
        seed in any::<u64>(), clients in 1u64..6, total in 1usize..40,
        pick in any::<usize>(), other in any::<usize>(),
    ) {
        let h = swap_a_get(&append_history(seed, clients, total), pick, other);
        let pruned = check(&Kv, &h, &Limits::unlimited());
        let plain = check(&Unpruned, &h, &Limits::unlimited());
        prop_assert_eq!(
            pruned.is_linearizable(), plain.is_linearizable(),
            "pruned: {}\nplain: {}\n{}", pruned, plain, kv_to_jsonl(&h)
        );
    }

    #[test]
    fn jsonl_round_trips(seed in any::<u64>(), clients in 1u64..6, total in 1usize..30) {
        let h = kv_history(seed, clients, total);
        let parsed = parse_jsonl_kv(&kv_to_jsonl(&h)).expect("our own output parses");
        prop_assert_eq!(parsed.history, h);
    }
}

//! The linearizability lecture's example histories (6.824 LEC 7, "writes
//! and reads of x by several clients"), drawn there as time lines; times
//! below are the columns of those drawings.

use flotilla_linearize::{
    Counterexample, History, Limits, OpId, Operation, Register, RegisterInput as I,
    RegisterOutput as O, Verdict, check,
};

/// `(client, call, return, op)` where op is "w1" (write 1) or "r2" (read 2).
fn history(ops: &[(u64, u64, u64, &str)]) -> History<I, O> {
    let mut h = History::new();
    for &(client, call, ret, op) in ops {
        let v: i64 = op[1..].parse().expect("value");
        let (input, output) = match &op[..1] {
            "w" => (I::Write(v), O::Written),
            _ => (I::Read, O::Value(Some(v))),
        };
        h.push(Operation::completed(client, call, ret, input, output))
            .expect("valid op");
    }
    h
}

fn verdict(ops: &[(u64, u64, u64, &str)]) -> Verdict {
    check(&Register, &history(ops), &Limits::unlimited())
}

fn why(ops: &[(u64, u64, u64, &str)]) -> Counterexample {
    match verdict(ops) {
        Verdict::NotLinearizable(c) => *c,
        other => panic!("expected not linearizable, got {other}"),
    }
}

// Example 1:  |-Wx1-| |-Wx2-|
//               |---Rx2---|
//                 |-Rx1-|
// Linearizable: Wx1 Rx1 Wx2 Rx2.
#[test]
fn example_1_overlapping_reads_may_see_either_write() {
    let ops = [
        (1, 0, 10, "w1"),
        (1, 20, 30, "w2"),
        (2, 5, 25, "r2"),
        (3, 8, 15, "r1"),
    ];
    assert_eq!(verdict(&ops), Verdict::Linearizable);
}

// Example 2:  |-Wx1-| |-Wx2-|
//               |--Rx2--|
//                         |-Rx1-|
// A cycle: Wx1 < Wx2 (time) < Rx2 (value) < Rx1 (time) < Wx2 (value).
#[test]
fn example_2_a_cycle_is_not_linearizable_and_without_rx2_it_is() {
    let ops = [
        (1, 0, 10, "w1"),
        (1, 20, 30, "w2"),
        (2, 5, 22, "r2"),
        (3, 25, 35, "r1"),
    ];
    let c = why(&ops);
    // Rx2 and Rx1 are in every explanation; Wx2 may be in the core or in
    // the context of writes allowed to happen anywhere after their call.
    assert!(
        c.core.contains(&OpId(2)) && c.core.contains(&OpId(3)),
        "{c}"
    );
    assert!(
        c.core.contains(&OpId(1)) || c.context.contains(&OpId(1)),
        "{c}"
    );
    assert!(c.minimal, "{c}");
    // "it would be linearizable w/o Rx2".
    let without_rx2 = [ops[0], ops[1], ops[3]];
    assert_eq!(verdict(&without_rx2), Verdict::Linearizable);
}

// Example 3:  |--Wx0--|  |--Wx1--|
//                         |--Wx2--|
//                     |-Rx2-| |-Rx1-|
// Linearizable: Wx0 Wx2 Rx2 Wx1 Rx1 (not the order the writes started in).
#[test]
fn example_3_the_order_of_concurrent_writes_is_free() {
    let ops = [
        (1, 0, 8, "w0"),
        (1, 11, 19, "w1"),
        (2, 12, 20, "w2"),
        (3, 8, 14, "r2"),
        (3, 16, 22, "r1"),
    ];
    assert_eq!(verdict(&ops), Verdict::Linearizable);
}

// Example 4: example 3 plus a second reader that sees the writes the
// other way round: C1 needs Wx2 before Wx1, C2 needs Wx1 before Wx2.
#[test]
fn example_4_all_clients_must_see_writes_in_the_same_order() {
    let ops = [
        (1, 0, 8, "w0"),
        (1, 11, 19, "w1"),
        (2, 12, 20, "w2"),
        (3, 8, 14, "r2"),
        (3, 16, 22, "r1"),
        (4, 8, 14, "r1"),
        (4, 16, 22, "r2"),
    ];
    let c = why(&ops);
    assert_eq!(c.partition, None);
    assert!(c.core.len() >= 4, "{c}");
}

// Example 5:  |-Wx1-|
//                     |-Wx2-|
//                             |-Rx1-|
// A stale read: the read must see the latest completed write.
#[test]
fn example_5_stale_reads_are_not_linearizable() {
    let ops = [(1, 0, 5, "w1"), (2, 8, 13, "w2"), (3, 16, 21, "r1")];
    let c = why(&ops);
    assert_eq!(c.core, vec![OpId(0), OpId(1), OpId(2)], "{c}");
    assert_eq!(c.blocked, Some(OpId(2)), "{c}");
    let text = c.to_string();
    assert!(text.contains("#2 client 3 [16, 21] read -> 1"), "{text}");
}

// Example 6: a re-sent request answered from the duplicate table.
// C1: |-Wx3-|          |-Wx4-|
// C2:          |-Rx3-------------|
// Returning the saved 3 is correct, and so would be 4.
#[test]
fn example_6_a_long_read_may_return_the_old_or_the_new_value() {
    let old = [(1, 0, 5, "w3"), (1, 20, 25, "w4"), (2, 10, 40, "r3")];
    assert_eq!(verdict(&old), Verdict::Linearizable);
    let new = [(1, 0, 5, "w3"), (1, 20, 25, "w4"), (2, 10, 40, "r4")];
    assert_eq!(verdict(&new), Verdict::Linearizable);
}

#[test]
fn an_unknown_outcome_may_or_may_not_take_effect() {
    let reads = [
        (1, 0, 5, "w1"),
        (3, 10, 12, "r1"),
        (3, 20, 22, "r2"),
        (3, 30, 32, "r2"),
    ];
    let mut h = history(&reads);
    h.push(Operation::pending(2, 6, I::Write(2)))
        .expect("valid");
    assert_eq!(
        check(&Register, &h, &Limits::unlimited()),
        Verdict::Linearizable
    );
    // But once seen, its effect cannot be undone.
    let mut h = history(&[(1, 0, 5, "w1"), (3, 10, 12, "r2"), (3, 20, 22, "r1")]);
    h.push(Operation::pending(2, 6, I::Write(2)))
        .expect("valid");
    assert!(
        check(&Register, &h, &Limits::unlimited())
            .counterexample()
            .is_some()
    );
}

#[test]
fn a_time_limit_gives_unknown_never_a_guess() {
    // A zero budget cannot decide anything with completed ops in it.
    let h = history(&[(1, 0, 5, "w1"), (2, 1, 6, "r1")]);
    let limits = Limits {
        timeout: Some(std::time::Duration::ZERO),
        ..Limits::unlimited()
    };
    match check(&Register, &h, &limits) {
        Verdict::Unknown(u) => assert!(u.to_string().contains("NOT a pass"), "{u}"),
        other => panic!("expected unknown, got {other}"),
    }
}

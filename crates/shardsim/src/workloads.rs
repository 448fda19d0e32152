//! The clerks' workloads of the course's sharded KV tests: appenders (one
//! per key, the course's concurrent tests), which remember every append
//! acknowledged so the final value can be checked exactly, and random
//! clients (the course's Unreliable3 mix), whose operations the history
//! checker judges.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use flotilla_raft::rng::SplitMix64;
use flotilla_shardkv::{KvOp, KvReply};

use crate::clerk::{Next, Workload};
use crate::fleet::Fleet;
use crate::tester::b;

/// A random lowercase string of `n` characters.
pub fn rand_string(rng: &mut SplitMix64, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'a' + rng.range(0, 26) as u8))
        .collect()
}

/// What the test and its appenders share.
#[derive(Clone, Default)]
pub struct Control {
    /// Set: each clerk stops after its operation out.
    pub stop: Rc<Cell<bool>>,
    /// How many clerks have stopped.
    pub stopped: Rc<Cell<usize>>,
}

/// Appends `len` random characters to one key every `every_ns` (0: with
/// no pause) until told to stop.
pub struct Appender {
    key: String,
    len: usize,
    every_ns: u64,
    next_at: u64,
    control: Control,
    /// Every acknowledged append, in order.
    pub acked: Rc<RefCell<String>>,
    out: String,
}

impl Appender {
    /// An appender to `key`; the returned string collects what it
    /// appended, acknowledged.
    pub fn new(
        key: &str,
        len: usize,
        every_ns: u64,
        control: Control,
    ) -> (Appender, Rc<RefCell<String>>) {
        let acked = Rc::new(RefCell::new(String::new()));
        let a = Appender {
            key: key.to_string(),
            len,
            every_ns,
            next_at: 0,
            control,
            acked: acked.clone(),
            out: String::new(),
        };
        (a, acked)
    }
}

impl Workload for Appender {
    fn next(&mut self, f: &mut Fleet, now: u64) -> Next {
        if self.control.stop.get() {
            self.control.stopped.set(self.control.stopped.get() + 1);
            return Next::Stop;
        }
        if now < self.next_at {
            // Woken by nothing else, the sleep ends at the next append.
            return Next::Sleep(self.next_at);
        }
        self.out = rand_string(&mut f.rng, self.len);
        Next::Op(KvOp::Append(b(&self.key), b(&self.out)))
    }

    fn done(&mut self, _op: &KvOp, reply: &KvReply, now: u64) -> Result<(), String> {
        if *reply != KvReply::Done {
            return Err(format!("append to {:?} answered {reply:?}", self.key));
        }
        self.acked.borrow_mut().push_str(&self.out);
        self.next_at = now + self.every_ns;
        Ok(())
    }
}

/// The course's Unreliable3 client: a random key of `keys` for each
/// operation; half appends, then 10 % of the rest puts, the rest gets.
pub struct Random {
    keys: Vec<String>,
    control: Control,
}

impl Random {
    /// A client over `keys`.
    pub fn new(keys: Vec<String>, control: Control) -> Random {
        Random { keys, control }
    }
}

impl Workload for Random {
    fn next(&mut self, f: &mut Fleet, _now: u64) -> Next {
        if self.control.stop.get() || self.keys.is_empty() {
            self.control.stopped.set(self.control.stopped.get() + 1);
            return Next::Stop;
        }
        let key = b(&self.keys[f.rng.range(0, self.keys.len() as u64) as usize]);
        let value = b(&rand_string(&mut f.rng, 5));
        if f.rng.range(0, 2) == 0 {
            Next::Op(KvOp::Append(key, value))
        } else if f.rng.range(0, 10) == 0 {
            Next::Op(KvOp::Put(key, value))
        } else {
            Next::Op(KvOp::Get(key))
        }
    }

    /// The history judges the answers.
    fn done(&mut self, _op: &KvOp, _reply: &KvReply, _now: u64) -> Result<(), String> {
        Ok(())
    }
}

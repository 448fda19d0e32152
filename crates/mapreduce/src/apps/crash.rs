//! The course's `crash` app and its twin `nocrash`: at the start of every map
//! and reduce call, `crash` exits the process at once with probability
//! 330/1000, stalls for up to 10 s with probability 330/1000, and otherwise
//! goes on. `nocrash` computes the same output and never misbehaves, so a
//! sequential `nocrash` run gives the expected output of a `crash` job.

use super::{App, AppError, Effects, Emit, ParamSpec, Params, sorted_join};

/// crash's parameters (the course's values by default).
pub(crate) const CRASH_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "crash_per_mille",
        default: 330,
        doc: "chance per call, in 1/1000, that the process exits at once",
    },
    ParamSpec {
        name: "stall_per_mille",
        default: 330,
        doc: "chance per call, in 1/1000, that the call stalls first",
    },
    ParamSpec {
        name: "stall_max_ms",
        default: 10000,
        doc: "a stall lasts uniform[0, max) ms",
    },
];

/// `crash` (when `misbehave`) or `nocrash`.
#[derive(Debug)]
pub struct Crash {
    crash_per_mille: u64,
    stall_per_mille: u64,
    stall_max_ms: u64,
    misbehave: bool,
}

impl Crash {
    pub(crate) fn new(params: Params, misbehave: bool) -> Self {
        Crash {
            crash_per_mille: params.get("crash_per_mille"),
            stall_per_mille: params.get("stall_per_mille"),
            stall_max_ms: params.get("stall_max_ms"),
            misbehave,
        }
    }

    fn maybe_crash(&self, fx: &dyn Effects) {
        if !self.misbehave {
            return;
        }
        let r = fx.random_below(1000);
        if r < self.crash_per_mille {
            fx.crash();
        }
        if r < self.crash_per_mille + self.stall_per_mille && self.stall_max_ms > 0 {
            fx.sleep_ms(fx.random_below(self.stall_max_ms));
        }
    }
}

impl App for Crash {
    fn name(&self) -> &'static str {
        if self.misbehave { "crash" } else { "nocrash" }
    }

    fn map(
        &self,
        fx: &dyn Effects,
        doc: &str,
        contents: &[u8],
        emit: &mut Emit<'_>,
    ) -> Result<(), AppError> {
        self.maybe_crash(fx);
        emit(b"a", doc.as_bytes());
        emit(b"b", doc.len().to_string().as_bytes());
        emit(b"c", contents.len().to_string().as_bytes());
        emit(b"d", b"xyzzy");
        Ok(())
    }

    fn reduce(&self, fx: &dyn Effects, _: &[u8], values: &[Vec<u8>]) -> Result<Vec<u8>, AppError> {
        self.maybe_crash(fx);
        Ok(sorted_join(values, b" "))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::apps::build;
    use crate::apps::testing::{FakeEffects, map_all};

    #[test]
    fn nocrash_emits_name_lengths_and_xyzzy() {
        let fx = FakeEffects::default();
        let app = build("nocrash", &BTreeMap::new()).unwrap();
        let pairs = map_all(app.as_ref(), &fx, "../pg-x.txt", b"hello");
        assert_eq!(
            pairs,
            [
                ("a", "../pg-x.txt"),
                ("b", "11"),
                ("c", "5"),
                ("d", "xyzzy")
            ]
        );
        let out = app
            .reduce(
                &fx,
                b"b",
                &[b"20".to_vec(), b"15".to_vec(), b"100".to_vec()],
            )
            .unwrap();
        assert_eq!(out, b"100 15 20", "values sort as strings");
        assert!(fx.log().is_empty());
    }

    #[test]
    fn crash_stalls_when_the_draw_says_so() {
        let fx = FakeEffects::default();
        // Draws: 500 (stall) then 1234 (the stall length), then 900 (go on).
        fx.script_random(&[500, 1234, 900]);
        let app = build("crash", &BTreeMap::new()).unwrap();
        map_all(app.as_ref(), &fx, "d", b"");
        map_all(app.as_ref(), &fx, "d", b"");
        assert_eq!(fx.log(), ["sleep 1234"]);
    }

    #[test]
    #[should_panic(expected = "crash")]
    fn crash_exits_when_the_draw_is_low() {
        let fx = FakeEffects::default();
        fx.script_random(&[10]);
        let app = build("crash", &BTreeMap::new()).unwrap();
        map_all(app.as_ref(), &fx, "d", b"");
    }
}

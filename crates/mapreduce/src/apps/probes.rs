//! The course's probe apps, which check the runtime rather than compute:
//! `mtiming` and `rtiming` (are maps, and reduces, run in parallel?),
//! `jobcount` (is each map task run exactly once?) and `early_exit` (does
//! any process exit before all output is written?). Their sleeps are
//! parameters, defaulting to the course's values.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{App, AppError, Effects, Emit, ParamSpec, Params, sorted_join};

/// mtiming's and rtiming's parameters.
pub(crate) const PROBE_PARAMS: &[ParamSpec] = &[ParamSpec {
    name: "probe_sleep_ms",
    default: 1000,
    doc: "how long each map call stays marked as running",
}];

/// jobcount's parameters.
pub(crate) const JOBCOUNT_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "map_sleep_min_ms",
        default: 2000,
        doc: "shortest map call",
    },
    ParamSpec {
        name: "map_sleep_span_ms",
        default: 3000,
        doc: "map calls last min + uniform[0, span) ms",
    },
];

/// early_exit's parameters.
pub(crate) const EARLY_EXIT_PARAMS: &[ParamSpec] = &[ParamSpec {
    name: "reduce_sleep_ms",
    default: 3000,
    doc: "how long reduce sleeps for keys containing `sherlock` or `tom`",
}];

/// Marks this process as running `phase`, counts the live processes so
/// marked, holds the mark for `sleep_ms`, and returns the count.
fn nparallel(fx: &dyn Effects, phase: &str, sleep_ms: u64) -> Result<usize, AppError> {
    let prefix = format!("mr-worker-{phase}-");
    let mine = format!("{prefix}{}", fx.pid());
    fx.create_marker(&mine)?;
    let count = fx.count_live_markers(&prefix)?;
    fx.sleep_ms(sleep_ms);
    fx.remove_marker(&mine)?;
    Ok(count)
}

/// Map-parallelism probe.
#[derive(Debug)]
pub struct MapTiming {
    sleep_ms: u64,
}

impl MapTiming {
    pub(crate) fn new(params: Params) -> Self {
        MapTiming {
            sleep_ms: params.get("probe_sleep_ms"),
        }
    }
}

impl App for MapTiming {
    fn name(&self) -> &'static str {
        "mtiming"
    }

    fn map(
        &self,
        fx: &dyn Effects,
        _: &str,
        _: &[u8],
        emit: &mut Emit<'_>,
    ) -> Result<(), AppError> {
        let started = fx.unix_time_secs();
        let n = nparallel(fx, "map", self.sleep_ms)?;
        let pid = fx.pid();
        emit(
            format!("times-{pid}").as_bytes(),
            format!("{started:.1}").as_bytes(),
        );
        emit(
            format!("parallel-{pid}").as_bytes(),
            n.to_string().as_bytes(),
        );
        Ok(())
    }

    fn reduce(&self, _: &dyn Effects, _: &[u8], values: &[Vec<u8>]) -> Result<Vec<u8>, AppError> {
        Ok(sorted_join(values, b" "))
    }
}

/// Reduce-parallelism probe.
#[derive(Debug)]
pub struct ReduceTiming {
    sleep_ms: u64,
}

impl ReduceTiming {
    pub(crate) fn new(params: Params) -> Self {
        ReduceTiming {
            sleep_ms: params.get("probe_sleep_ms"),
        }
    }
}

impl App for ReduceTiming {
    fn name(&self) -> &'static str {
        "rtiming"
    }

    fn map(&self, _: &dyn Effects, _: &str, _: &[u8], emit: &mut Emit<'_>) -> Result<(), AppError> {
        for key in b'a'..=b'j' {
            emit(&[key], b"1");
        }
        Ok(())
    }

    fn reduce(&self, fx: &dyn Effects, _: &[u8], _: &[Vec<u8>]) -> Result<Vec<u8>, AppError> {
        let n = nparallel(fx, "reduce", self.sleep_ms)?;
        Ok(n.to_string().into_bytes())
    }
}

/// Job-count probe: every map call leaves a marker file; reduce counts them.
#[derive(Debug)]
pub struct JobCount {
    min_ms: u64,
    span_ms: u64,
    calls: AtomicU64,
}

impl JobCount {
    pub(crate) fn new(params: Params) -> Self {
        JobCount {
            min_ms: params.get("map_sleep_min_ms"),
            span_ms: params.get("map_sleep_span_ms"),
            calls: AtomicU64::new(0),
        }
    }
}

impl App for JobCount {
    fn name(&self) -> &'static str {
        "jobcount"
    }

    fn map(
        &self,
        fx: &dyn Effects,
        _: &str,
        _: &[u8],
        emit: &mut Emit<'_>,
    ) -> Result<(), AppError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        fx.create_marker(&format!("mr-worker-jobcount-{}-{n}", fx.pid()))?;
        let jitter = if self.span_ms > 0 {
            fx.random_below(self.span_ms)
        } else {
            0
        };
        fx.sleep_ms(self.min_ms + jitter);
        emit(b"a", b"x");
        Ok(())
    }

    fn reduce(&self, fx: &dyn Effects, _: &[u8], _: &[Vec<u8>]) -> Result<Vec<u8>, AppError> {
        Ok(fx
            .count_files("mr-worker-jobcount")?
            .to_string()
            .into_bytes())
    }
}

/// Early-exit probe: some reduces are slow, so a process that exits before
/// the job is done leaves visibly missing output.
#[derive(Debug)]
pub struct EarlyExit {
    sleep_ms: u64,
}

impl EarlyExit {
    pub(crate) fn new(params: Params) -> Self {
        EarlyExit {
            sleep_ms: params.get("reduce_sleep_ms"),
        }
    }
}

impl App for EarlyExit {
    fn name(&self) -> &'static str {
        "early_exit"
    }

    fn map(
        &self,
        _: &dyn Effects,
        doc: &str,
        _: &[u8],
        emit: &mut Emit<'_>,
    ) -> Result<(), AppError> {
        emit(doc.as_bytes(), b"1");
        Ok(())
    }

    fn reduce(
        &self,
        fx: &dyn Effects,
        key: &[u8],
        values: &[Vec<u8>],
    ) -> Result<Vec<u8>, AppError> {
        let key = String::from_utf8_lossy(key);
        if key.contains("sherlock") || key.contains("tom") {
            fx.sleep_ms(self.sleep_ms);
        }
        Ok(values.len().to_string().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::apps::build;
    use crate::apps::testing::{FakeEffects, map_all};

    fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn mtiming_marks_counts_sleeps_and_unmarks() {
        let fx = FakeEffects::default();
        fx.others_running("mr-worker-map-", 1);
        let app = build("mtiming", &params(&[("probe_sleep_ms", "5")])).unwrap();
        let pairs = map_all(app.as_ref(), &fx, "d", b"");
        assert_eq!(pairs, [("times-42", "1700000000.1"), ("parallel-42", "2")]);
        assert_eq!(
            fx.log(),
            [
                "create mr-worker-map-42",
                "sleep 5",
                "remove mr-worker-map-42"
            ]
        );
        let out = app
            .reduce(&fx, b"k", &[b"2".to_vec(), b"10".to_vec()])
            .unwrap();
        assert_eq!(out, b"10 2");
    }

    #[test]
    fn jobcount_leaves_one_marker_per_call_and_reduce_counts_them() {
        let fx = FakeEffects::default();
        let app = build(
            "jobcount",
            &params(&[("map_sleep_min_ms", "20"), ("map_sleep_span_ms", "30")]),
        )
        .unwrap();
        map_all(app.as_ref(), &fx, "d", b"");
        map_all(app.as_ref(), &fx, "d", b"");
        assert_eq!(
            fx.log(),
            [
                "create mr-worker-jobcount-42-0",
                "sleep 20",
                "create mr-worker-jobcount-42-1",
                "sleep 20"
            ]
        );
        assert_eq!(app.reduce(&fx, b"a", &[]).unwrap(), b"2");
    }

    #[test]
    fn early_exit_sleeps_only_for_sherlock_and_tom() {
        let fx = FakeEffects::default();
        let app = build("early_exit", &params(&[("reduce_sleep_ms", "7")])).unwrap();
        assert_eq!(
            app.reduce(&fx, b"../pg-grimm.txt", &[b"1".to_vec()])
                .unwrap(),
            b"1"
        );
        assert_eq!(
            app.reduce(&fx, b"../pg-tom_sawyer.txt", &[b"1".to_vec()])
                .unwrap(),
            b"1"
        );
        assert_eq!(fx.log(), ["sleep 7"]);
    }

    #[test]
    fn rtiming_emits_ten_keys() {
        let fx = FakeEffects::default();
        let app = build("rtiming", &params(&[("probe_sleep_ms", "3")])).unwrap();
        let pairs = map_all(app.as_ref(), &fx, "d", b"x");
        assert_eq!(pairs.len(), 10);
        assert_eq!(pairs[9], ("j", "1"));
        assert_eq!(app.reduce(&fx, b"a", &[]).unwrap(), b"1");
        assert_eq!(
            fx.log(),
            [
                "create mr-worker-reduce-42",
                "sleep 3",
                "remove mr-worker-reduce-42"
            ]
        );
    }
}

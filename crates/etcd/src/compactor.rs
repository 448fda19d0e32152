//! Automatic compaction of the store's history, with etcd's flags
//! (`--auto-compaction-mode`, `--auto-compaction-retention`): the leader
//! proposes a compaction through the log whenever the policy says the
//! history reaches further back than it should.
//!
//! - `revision` mode with retention `N` keeps the last `N` revisions: it
//!   compacts at `current - N`. etcd checks every 5 minutes; Flotilla's
//!   history is in memory, so it checks every second.
//! - `periodic` mode with retention `P` keeps what was written in the last
//!   `P`: it samples the revision every `P / 10` (between 1 s and 1 h) and
//!   compacts at the revision sampled `P` ago, as etcd 3.4 does.
//! - Retention `0` turns it off, as in etcd.
//!
//! The decision ([`Compactor::on_tick`]) is a pure function of time and
//! revisions, so it is tested without a clock; [`run`] drives it on a
//! tokio interval. Invariants: a compaction is proposed only by a member
//! that believes it leads, only above the last compaction, and only at a
//! revision the store has applied; a refused one (another member's
//! compaction won the race) is harmless and only logged.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::watch;

use crate::core::Core;
use flotilla_runtime::lock;

/// How much history automatic compaction keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// No automatic compaction.
    Off,
    /// The last this many revisions.
    Revisions(u64),
    /// What was written in the last this long.
    Period(Duration),
}

/// Flotilla's default: the last 10,000 revisions. etcd compacts nothing by
/// default, but keeps its history on disk under a 2 GiB quota; Flotilla
/// keeps it in memory, so it bounds it unless asked not to
/// (`--auto-compaction-retention 0`).
pub const DEFAULT_RETENTION: Retention = Retention::Revisions(10_000);

impl Retention {
    /// Parses etcd's flag pair: mode `periodic` or `revision`; a
    /// retention of `0` is off, a periodic one is a duration (`90s`,
    /// `30m`, `1h`) or a bare number of hours, a revision one a count.
    pub fn parse(mode: &str, retention: &str) -> Result<Retention, String> {
        let retention = retention.trim();
        if retention == "0" {
            return Ok(Retention::Off);
        }
        match mode {
            "revision" => retention
                .parse::<u64>()
                .map(Retention::Revisions)
                .map_err(|_| {
                    format!(
                        "--auto-compaction-retention {retention:?}: revision mode takes a count of revisions"
                    )
                }),
            "periodic" => parse_period(retention).map(Retention::Period).ok_or_else(|| {
                format!(
                    "--auto-compaction-retention {retention:?}: periodic mode takes a duration \
                     (90s, 30m, 1h) or a number of hours"
                )
            }),
            other => Err(format!(
                "--auto-compaction-mode {other:?}: must be periodic or revision"
            )),
        }
    }
}

/// `90s`, `30m`, `1h`, `500ms` or a bare number of hours (etcd's form).
fn parse_period(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let d = match unit {
        "" | "h" => Duration::from_secs(n.checked_mul(3600)?),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

/// The compaction policy's state; see the module docs.
#[derive(Debug)]
pub struct Compactor {
    retention: Retention,
    /// `(ms, revision)` samples, oldest first (periodic mode).
    samples: VecDeque<(u64, u64)>,
}

impl Compactor {
    /// A compactor keeping `retention`.
    pub fn new(retention: Retention) -> Compactor {
        Compactor {
            retention,
            samples: VecDeque::new(),
        }
    }

    /// How often [`Compactor::on_tick`] wants to be called (`None`: off).
    pub fn interval(&self) -> Option<Duration> {
        match self.retention {
            Retention::Off => None,
            Retention::Revisions(_) => Some(Duration::from_secs(1)),
            Retention::Period(p) => {
                Some((p / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600)))
            }
        }
    }

    /// At `now_ms`, with the store at `current` and compacted at
    /// `compacted`: the revision to compact at, if any.
    pub fn on_tick(&mut self, now_ms: u64, current: u64, compacted: u64) -> Option<u64> {
        let target = match self.retention {
            Retention::Off => return None,
            Retention::Revisions(keep) => current.saturating_sub(keep),
            Retention::Period(p) => {
                let period = u64::try_from(p.as_millis()).unwrap_or(u64::MAX);
                self.samples.push_back((now_ms, current));
                let cutoff = now_ms.saturating_sub(period);
                // The newest sample at least `period` old is the target;
                // older ones are no longer needed.
                while self.samples.get(1).is_some_and(|(t, _)| *t <= cutoff) {
                    self.samples.pop_front();
                }
                match self.samples.front() {
                    Some(&(t, rev)) if t <= cutoff && now_ms >= period => rev,
                    _ => return None,
                }
            }
        };
        (target > compacted && target <= current).then_some(target)
    }
}

/// Starts [`run`] with a compactor keeping `retention`.
pub fn spawn(core: Core, retention: Retention, closing: watch::Receiver<bool>) {
    tokio::spawn(run(core, Compactor::new(retention), closing));
}

/// Runs `compactor` on this member until `closing`: while it leads, it
/// proposes the compactions the policy asks for.
pub async fn run(core: Core, mut compactor: Compactor, mut closing: watch::Receiver<bool>) {
    let Some(every) = compactor.interval() else {
        return;
    };
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = closing.wait_for(|c| *c) => return,
        }
        let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (current, compacted) = {
            let sm = lock(&core.sm);
            let store = sm.replica.store();
            (store.revision(), store.compacted())
        };
        // Every member samples (so a new leader has its samples at
        // once); only the leader proposes.
        let target = compactor.on_tick(now_ms, current, compacted);
        let leads = core.node.leader() == Some(core.me);
        if let (Some(revision), true) = (target, leads) {
            match core.write(flotilla_kv::Op::Compact { revision }).await {
                Ok(_) => tracing::debug!(revision, "compacted the history"),
                Err(e) => tracing::debug!(revision, error = %e, "automatic compaction"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_as_etcd_s() {
        let p = |m, r| Retention::parse(m, r);
        assert_eq!(p("revision", "1000"), Ok(Retention::Revisions(1000)));
        assert_eq!(p("periodic", "0"), Ok(Retention::Off));
        assert_eq!(p("revision", "0"), Ok(Retention::Off));
        let hour = Duration::from_secs(3600);
        assert_eq!(p("periodic", "1"), Ok(Retention::Period(hour)));
        assert_eq!(p("periodic", "1h"), Ok(Retention::Period(hour)));
        assert_eq!(
            p("periodic", "30m"),
            Ok(Retention::Period(Duration::from_secs(1800)))
        );
        assert_eq!(
            p("periodic", "90s"),
            Ok(Retention::Period(Duration::from_secs(90)))
        );
        assert_eq!(
            p("periodic", "500ms"),
            Ok(Retention::Period(Duration::from_millis(500)))
        );
        for (m, r, says) in [
            ("revision", "1h", "count of revisions"),
            ("periodic", "1d", "duration"),
            ("periodic", "m", "duration"),
            ("weekly", "1", "periodic or revision"),
        ] {
            let err = p(m, r).unwrap_err();
            assert!(err.contains(says), "{m} {r}: {err}");
        }
    }

    #[test]
    fn revision_mode_keeps_the_last_n_revisions() {
        let mut c = Compactor::new(Retention::Revisions(100));
        assert_eq!(c.interval(), Some(Duration::from_secs(1)));
        assert_eq!(c.on_tick(0, 50, 0), None, "not 100 revisions yet");
        assert_eq!(
            c.on_tick(1000, 100, 0),
            None,
            "exactly 100: nothing to forget"
        );
        assert_eq!(c.on_tick(2000, 101, 0), Some(1));
        assert_eq!(c.on_tick(3000, 350, 1), Some(250));
        assert_eq!(c.on_tick(4000, 350, 250), None, "already compacted there");
        assert_eq!(Compactor::new(Retention::Off).interval(), None);
        assert_eq!(Compactor::new(Retention::Off).on_tick(9, 9_999, 0), None);
    }

    #[test]
    fn periodic_mode_compacts_at_the_revision_of_one_period_ago() {
        let period = Duration::from_secs(10);
        let mut c = Compactor::new(Retention::Period(period));
        assert_eq!(c.interval(), Some(Duration::from_secs(1)));
        // One sample a second, ten revisions a second from revision 5.
        let mut got = Vec::new();
        for s in 0..=25u64 {
            got.push(c.on_tick(s * 1000, s * 10 + 5, 0));
        }
        // Nothing is a period old before 10 s.
        assert!(got[..10].iter().all(Option::is_none), "{got:?}");
        // At 10 s the sample of 0 s (revision 5) is a period old; at 11 s,
        // the one of 1 s.
        assert_eq!(got[10], Some(5));
        assert_eq!(got[11], Some(15));
        assert_eq!(got[25], Some(155));
        assert!(c.samples.len() <= 12, "{} samples kept", c.samples.len());
        // Already compacted there: nothing.
        assert_eq!(c.on_tick(26_000, 265, 165), None);
        let long = Compactor::new(Retention::Period(Duration::from_secs(100 * 3600)));
        assert_eq!(long.interval(), Some(Duration::from_secs(3600)));
    }
}

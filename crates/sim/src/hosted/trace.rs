//! The hosted world's trace, for replaying one failing seed
//! (`flotilla sim raft --seed S --trace`): every event but the ticks,
//! and the nemesis's and the operator's doings, with the virtual time,
//! printed to stderr when the run fails.

use super::app::App;
use super::world::{Event, World};

impl<A: App> World<A> {
    /// Records `line` at the current time, if the run keeps a trace.
    pub(crate) fn note(&mut self, line: impl FnOnce() -> String) {
        let at = self.now as f64 / 1e9;
        if let Some(trace) = &mut self.trace {
            trace.push(format!("[{at:9.4}s] {}", line()));
        }
    }

    /// Records an event about to be handled (ticks aside: they are most
    /// events and say nothing).
    pub(crate) fn trace_event(&mut self, event: &Event) {
        if self.trace.is_none() {
            return;
        }
        let line = match event {
            Event::Tick(..) | Event::Arrive(..) => return,
            Event::Deliver(msg) => format!("recv {msg}"),
            Event::SyncDone(m, inc, lsn) => format!("n{m}.{inc} synced to {lsn:?}"),
            Event::SnapshotDone(m, inc, task) => {
                format!("n{m}.{inc} built its snapshot at {}", task.index)
            }
            Event::Client(c, _) => format!("client {c}'s turn"),
            Event::Fault => "the nemesis's turn".to_string(),
            Event::Restart(m) => format!("n{m} restarts"),
            Event::Admin(_) => "the operator's turn".to_string(),
        };
        self.note(|| line);
    }

    /// Prints the trace to stderr, if the run kept one.
    pub(crate) fn print_trace(&self) {
        for line in self.trace.iter().flatten() {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::app::Bare;
    use super::super::config::HostedConfig;
    use super::*;
    use crate::net::MS;

    fn run(trace: bool) -> Option<Vec<String>> {
        let cfg = HostedConfig {
            trace,
            ..HostedConfig::default()
        };
        let mut w = World::new(1, cfg, Bare::default()).unwrap();
        while w.next_at().is_some_and(|at| at < 1000 * MS) {
            w.step_event();
        }
        w.trace
    }

    #[test]
    fn a_traced_run_records_what_happened_but_not_the_ticks() {
        let trace = run(true).unwrap();
        assert!(trace.iter().any(|l| l.contains("recv ")), "{trace:?}");
        assert!(trace.iter().any(|l| l.contains("client 0's turn")));
        assert!(trace.iter().any(|l| l.contains("the nemesis's turn")));
        assert!(
            trace
                .iter()
                .all(|l| l.starts_with('[') && !l.contains("Tick"))
        );
        assert_eq!(run(false), None, "no trace unless asked");
    }
}

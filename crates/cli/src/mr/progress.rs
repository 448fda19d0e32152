//! Showing a job's progress: on a terminal, one indicatif bar per phase
//! (bytes done of total, rate, ETA, tasks done); otherwise plain lines on
//! stderr, one per finished task and per notable event (timeouts, retries,
//! lost map outputs, backups). The summary goes to stdout.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flotilla_mapreduce::coordinator::{Action, Progress};
use flotilla_mapreduce::task::TaskKind;
use flotilla_mr::coordinator::{JobSummary, Observer};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::units::bytes;

/// Draws progress; see the module docs.
pub struct Display {
    start: Instant,
    bars: Option<Bars>,
    last: Mutex<Progress>,
}

struct Bars {
    multi: MultiProgress,
    map: ProgressBar,
    reduce: ProgressBar,
}

fn bar(multi: &MultiProgress, prefix: &'static str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{prefix:>6} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let b = multi.add(ProgressBar::new(0).with_style(style).with_prefix(prefix));
    b.enable_steady_tick(Duration::from_millis(200));
    b
}

impl Display {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::new();
            let map = bar(&multi, "map");
            let reduce = bar(&multi, "reduce");
            Bars { multi, map, reduce }
        });
        Display {
            start: Instant::now(),
            bars,
            last: Mutex::new(Progress::default()),
        }
    }

    fn say(&self, line: String) {
        let line = format!("[{:>8.3}s] {line}", self.start.elapsed().as_secs_f64());
        match &self.bars {
            Some(b) => b.multi.println(line).unwrap_or(()),
            None => eprintln!("{line}"),
        }
    }

    fn describe(&self, action: &Action, p: &Progress) -> Option<String> {
        Some(match action {
            Action::Finished { task, .. } if self.bars.is_none() => match task.kind {
                TaskKind::Map => format!(
                    "map {}/{} done ({} of {})",
                    p.maps_done,
                    p.maps_total,
                    bytes(p.map_bytes_done),
                    bytes(p.map_bytes_total)
                ),
                TaskKind::Reduce => format!("reduce {}/{} done", p.reduces_done, p.reduces_total),
            },
            Action::Started {
                task,
                worker,
                speculative: true,
            } => {
                format!("backup copy of {task} on worker {}", worker.0)
            }
            Action::TimedOut { task, worker } => {
                format!("{task} on worker {} timed out; it will run again", worker.0)
            }
            Action::Retry {
                task,
                failures,
                error,
            } => format!("{task} failed ({failures}x): {error}"),
            Action::MapLost {
                map_index,
                host,
                error,
            } => {
                let host = if host.is_empty() {
                    "the shared directory"
                } else {
                    host
                };
                format!("map task {map_index} output on {host} is lost ({error}); re-running it")
            }
            Action::MapPhaseDone => "map phase done".to_string(),
            Action::JobDone => "job done".to_string(),
            Action::JobFailed { message } => format!("job failed: {message}"),
            Action::Rejected { worker, why } => {
                format!("ignored a report from worker {}: {why}", worker.0)
            }
            _ => return None,
        })
    }

    /// Clears the bars before the summary is printed.
    pub fn finish(&self) {
        if let Some(b) = &self.bars {
            b.map.finish();
            b.reduce.finish();
        }
    }
}

impl Observer for Display {
    fn on_actions(&self, actions: &[Action], p: &Progress) {
        for action in actions {
            if let (Action::MapPhaseDone, Some(b)) = (action, &self.bars) {
                // The reduce rate and ETA count from the reduce phase on.
                b.reduce.reset_elapsed();
                b.reduce.reset_eta();
            }
            if let Some(line) = self.describe(action, p) {
                self.say(line);
            }
        }
        if let Some(b) = &self.bars {
            b.map.set_length(p.map_bytes_total);
            b.map.set_position(p.map_bytes_done);
            b.map
                .set_message(format!("{}/{} tasks", p.maps_done, p.maps_total));
            b.reduce.set_length(p.reduce_bytes_total.max(1));
            b.reduce.set_position(p.reduce_bytes_done);
            b.reduce
                .set_message(format!("{}/{} tasks", p.reduces_done, p.reduces_total));
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = p.clone();
    }
}

/// The summary line printed when a job ends.
pub fn summary(s: &JobSummary) -> String {
    let p = &s.progress;
    format!(
        "{} in {:.2}s: {} map + {} reduce tasks, {} in, {} intermediate, {} out, {} task attempts re-executed ({} timed out, {} backups, {} lost map outputs, {} failures), {} workers",
        match s.outcome {
            flotilla_mapreduce::coordinator::Outcome::Done => "job done",
            _ => "job failed",
        },
        s.elapsed.as_secs_f64(),
        p.maps_total,
        p.reduces_total,
        bytes(p.map_bytes_total),
        bytes(p.reduce_bytes_total),
        bytes(p.output_bytes),
        s.stats.reexecuted,
        s.stats.timeouts,
        s.stats.speculative,
        s.stats.maps_lost,
        s.stats.failures,
        p.workers,
    )
}

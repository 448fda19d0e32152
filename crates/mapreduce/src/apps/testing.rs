//! Test doubles for the apps: [`FakeEffects`] records every effect instead of
//! performing it (pid 42, a fixed clock, scripted random draws).

use std::cell::RefCell;
use std::collections::VecDeque;

use super::{App, AppError, Effects};

/// Records effects; see the module doc.
#[derive(Debug, Default)]
pub(crate) struct FakeEffects {
    log: RefCell<Vec<String>>,
    random: RefCell<VecDeque<u64>>,
    others: RefCell<Vec<(String, usize)>>,
    files: RefCell<Vec<String>>,
}

impl FakeEffects {
    pub(crate) fn log(&self) -> Vec<String> {
        self.log.borrow().clone()
    }

    pub(crate) fn script_random(&self, draws: &[u64]) {
        self.random.borrow_mut().extend(draws);
    }

    /// Pretends `n` other live processes hold markers with `prefix`.
    pub(crate) fn others_running(&self, prefix: &str, n: usize) {
        self.others.borrow_mut().push((prefix.to_string(), n));
    }
}

impl Effects for FakeEffects {
    fn pid(&self) -> u32 {
        42
    }
    fn unix_time_secs(&self) -> f64 {
        1_700_000_000.125
    }
    fn sleep_ms(&self, ms: u64) {
        self.log.borrow_mut().push(format!("sleep {ms}"));
    }
    fn random_below(&self, n: u64) -> u64 {
        self.random.borrow_mut().pop_front().unwrap_or(0) % n
    }
    fn crash(&self) -> ! {
        panic!("crash");
    }
    fn create_marker(&self, name: &str) -> Result<(), AppError> {
        self.files.borrow_mut().push(name.to_string());
        self.log.borrow_mut().push(format!("create {name}"));
        Ok(())
    }
    fn remove_marker(&self, name: &str) -> Result<(), AppError> {
        self.files.borrow_mut().retain(|f| f != name);
        self.log.borrow_mut().push(format!("remove {name}"));
        Ok(())
    }
    fn count_live_markers(&self, prefix: &str) -> Result<usize, AppError> {
        let mine = self
            .files
            .borrow()
            .iter()
            .filter(|f| f.starts_with(prefix))
            .count();
        let others: usize = self
            .others
            .borrow()
            .iter()
            .filter(|(p, _)| p == prefix)
            .map(|(_, n)| n)
            .sum();
        Ok(mine + others)
    }
    fn count_files(&self, prefix: &str) -> Result<usize, AppError> {
        Ok(self
            .files
            .borrow()
            .iter()
            .filter(|f| f.starts_with(prefix))
            .count())
    }
}

/// Runs `app.map` and returns the emitted pairs as strings.
pub(crate) fn map_all(
    app: &dyn App,
    fx: &dyn Effects,
    doc: &str,
    contents: &[u8],
) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    app.map(fx, doc, contents, &mut |k, v| {
        let k: &'static str = String::from_utf8(k.to_vec()).unwrap().leak();
        let v: &'static str = String::from_utf8(v.to_vec()).unwrap().leak();
        out.push((k, v));
    })
    .unwrap();
    out
}

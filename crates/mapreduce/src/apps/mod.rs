//! The built-in apps: pure map and reduce functions, looked up by name.
//!
//! Apps see the outside world only through [`Effects`] (the process id, the
//! wall clock, sleeping, randomness, crashing and marker files), which the
//! runtime implements; so the course's probe apps (timing, job count, crash)
//! keep their exact behaviour while this crate stays I/O-free.
//!
//! Each app's tunables ([`ParamSpec`]) default to the course's values (1 s
//! probe sleeps, 2–5 s job-count maps, 0–10 s crash stalls); tests pass
//! smaller ones so the checks run in seconds.

mod crash;
mod probes;
mod text;

use std::collections::BTreeMap;

/// What an app may do besides computing.
pub trait Effects {
    /// This process's id.
    fn pid(&self) -> u32;
    /// Seconds since the Unix epoch.
    fn unix_time_secs(&self) -> f64;
    /// Blocks this task for `ms` milliseconds.
    fn sleep_ms(&self, ms: u64);
    /// A uniformly random number in `0..n` (`n > 0`).
    fn random_below(&self, n: u64) -> u64;
    /// Ends the process at once with status 1, as the course's crash app does.
    fn crash(&self) -> !;
    /// Creates the marker file `name` in the job's marker directory.
    fn create_marker(&self, name: &str) -> Result<(), AppError>;
    /// Removes the marker file `name`.
    fn remove_marker(&self, name: &str) -> Result<(), AppError>;
    /// Counts markers named `<prefix><pid>` whose process is alive.
    fn count_live_markers(&self, prefix: &str) -> Result<usize, AppError>;
    /// Counts files in the marker directory whose name starts with `prefix`.
    fn count_files(&self, prefix: &str) -> Result<usize, AppError>;
}

/// An app's failure; it fails the task, which is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// No built-in app has this name.
    #[error("unknown app `{name}` (built-in apps: {known})")]
    UnknownApp {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// The app has no such parameter.
    #[error("app `{app}` has no parameter `{param}` (it has: {known})")]
    UnknownParam {
        /// The app.
        app: String,
        /// The parameter asked for.
        param: String,
        /// The app's parameters.
        known: String,
    },
    /// A parameter's value does not parse.
    #[error("app `{app}` parameter `{param}`: `{value}` is not {expected}")]
    BadParam {
        /// The app.
        app: String,
        /// The parameter.
        param: String,
        /// The value given.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A value the app reads back (for example a count) does not parse.
    #[error("bad value `{value}` for key `{key}`: {why}")]
    BadValue {
        /// The key whose value is bad.
        key: String,
        /// The value.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
    /// An effect failed (a marker file could not be written, say).
    #[error("{0}")]
    Effect(String),
}

/// Receives a map function's `(key, value)` pairs.
pub type Emit<'a> = dyn FnMut(&[u8], &[u8]) + 'a;

/// A MapReduce application.
pub trait App: Send + Sync {
    /// Its name, as given to `--app`.
    fn name(&self) -> &'static str;

    /// Maps one split of document `doc` (the input path as given).
    fn map(
        &self,
        fx: &dyn Effects,
        doc: &str,
        contents: &[u8],
        emit: &mut Emit<'_>,
    ) -> Result<(), AppError>;

    /// Reduces all the values of one key to the key's output value.
    fn reduce(&self, fx: &dyn Effects, key: &[u8], values: &[Vec<u8>])
    -> Result<Vec<u8>, AppError>;

    /// Whether [`App::combine`] may pre-aggregate map output.
    fn has_combiner(&self) -> bool {
        false
    }

    /// Folds `value` into `acc` (both values of the same key), so that
    /// reducing the folded values gives the same result as reducing them all.
    fn combine(&self, key: &[u8], acc: &mut Vec<u8>, value: &[u8]) -> Result<(), AppError> {
        let _ = (key, acc, value);
        Ok(())
    }
}

/// One tunable of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    /// Its name, as in `--app-param NAME=VALUE`.
    pub name: &'static str,
    /// The course's value.
    pub default: u64,
    /// What it controls.
    pub doc: &'static str,
}

/// An app's parameters after validation: every declared one, with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    app: &'static str,
    values: BTreeMap<&'static str, u64>,
}

impl Params {
    /// Validates `given` against `specs`.
    pub fn parse(
        app: &'static str,
        specs: &[ParamSpec],
        given: &BTreeMap<String, String>,
    ) -> Result<Params, AppError> {
        let mut values: BTreeMap<&'static str, u64> =
            specs.iter().map(|s| (s.name, s.default)).collect();
        for (param, value) in given {
            let Some(spec) = specs.iter().find(|s| s.name == param) else {
                let known: Vec<&str> = specs.iter().map(|s| s.name).collect();
                return Err(AppError::UnknownParam {
                    app: app.to_string(),
                    param: param.clone(),
                    known: if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    },
                });
            };
            let n = value
                .trim()
                .parse::<u64>()
                .map_err(|_| AppError::BadParam {
                    app: app.to_string(),
                    param: param.clone(),
                    value: value.clone(),
                    expected: "a non-negative integer",
                })?;
            values.insert(spec.name, n);
        }
        Ok(Params { app, values })
    }

    /// The value of a declared parameter.
    pub fn get(&self, name: &str) -> u64 {
        debug_assert!(self.values.contains_key(name), "{}: {name}", self.app);
        self.values.get(name).copied().unwrap_or(0)
    }
}

/// The built-in apps' names.
pub const APP_NAMES: [&str; 8] = [
    "wc",
    "indexer",
    "mtiming",
    "rtiming",
    "jobcount",
    "early_exit",
    "crash",
    "nocrash",
];

/// The parameters app `name` accepts, or `None` for an unknown app.
pub fn param_specs(name: &str) -> Option<&'static [ParamSpec]> {
    Some(match name {
        "wc" | "indexer" | "nocrash" => &[],
        "mtiming" | "rtiming" => probes::PROBE_PARAMS,
        "jobcount" => probes::JOBCOUNT_PARAMS,
        "early_exit" => probes::EARLY_EXIT_PARAMS,
        "crash" => crash::CRASH_PARAMS,
        _ => return None,
    })
}

/// Builds the built-in app `name` with its parameters.
pub fn build(name: &str, given: &BTreeMap<String, String>) -> Result<Box<dyn App>, AppError> {
    let Some(specs) = param_specs(name) else {
        return Err(AppError::UnknownApp {
            name: name.to_string(),
            known: APP_NAMES.join(", "),
        });
    };
    let params = Params::parse(specs_name(name), specs, given)?;
    let app: Box<dyn App> = match name {
        "wc" => Box::new(text::WordCount),
        "indexer" => Box::new(text::Indexer),
        "mtiming" => Box::new(probes::MapTiming::new(params)),
        "rtiming" => Box::new(probes::ReduceTiming::new(params)),
        "jobcount" => Box::new(probes::JobCount::new(params)),
        "early_exit" => Box::new(probes::EarlyExit::new(params)),
        "crash" => Box::new(crash::Crash::new(params, true)),
        _ => {
            let defaults = Params::parse("crash", crash::CRASH_PARAMS, &BTreeMap::new())?;
            Box::new(crash::Crash::new(defaults, false))
        }
    };
    Ok(app)
}

/// The `'static` spelling of a built-in app's name, for error messages.
fn specs_name(name: &str) -> &'static str {
    APP_NAMES
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("app")
}

/// Sorts byte strings and joins them with `sep` (Go's `sort.Strings` then
/// `strings.Join`; byte order is Go's string order).
pub(crate) fn sorted_join(values: &[Vec<u8>], sep: &[u8]) -> Vec<u8> {
    let mut sorted: Vec<&Vec<u8>> = values.iter().collect();
    sorted.sort();
    let mut out = Vec::new();
    for (i, v) in sorted.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(sep);
        }
        out.extend_from_slice(v);
    }
    out
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_apps_and_params_are_named_in_the_error() {
        let err = build("wordcount", &BTreeMap::new()).err().unwrap();
        assert_eq!(
            err.to_string(),
            "unknown app `wordcount` (built-in apps: wc, indexer, mtiming, rtiming, jobcount, early_exit, crash, nocrash)"
        );
        let given = BTreeMap::from([("sleep".to_string(), "1".to_string())]);
        let err = build("wc", &given).err().unwrap();
        assert_eq!(
            err.to_string(),
            "app `wc` has no parameter `sleep` (it has: none)"
        );
        let given = BTreeMap::from([("probe_sleep_ms".to_string(), "x".to_string())]);
        let err = build("mtiming", &given).err().unwrap();
        assert!(
            err.to_string()
                .contains("`x` is not a non-negative integer")
        );
    }

    #[test]
    fn every_app_name_builds() {
        for name in APP_NAMES {
            assert_eq!(build(name, &BTreeMap::new()).unwrap().name(), name);
        }
    }
}

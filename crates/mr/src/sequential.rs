//! A single-process MapReduce: map every input in order, group by key in
//! memory, reduce the keys in byte order. It is the course's
//! `mrsequential`: the reference the tests compare distributed runs with,
//! and the benchmark's baseline. Apps with a combiner fold values as they
//! are emitted, so word count holds one entry per distinct word.

use std::collections::HashMap;

use foldhash::fast::FixedState;
use std::path::{Path, PathBuf};

use flotilla_mapreduce::apps::{self, App};

use super::effects::RealEffects;
use super::error::TaskError;

/// Runs built-in app `name` over `inputs`; returns the output lines
/// (`key value\n`), sorted by key. Probe apps' marker files go to
/// `marker_dir`.
pub fn run(
    name: &str,
    params: &std::collections::BTreeMap<String, String>,
    inputs: &[String],
    marker_dir: &Path,
) -> Result<Vec<u8>, TaskError> {
    let app = apps::build(name, params)?;
    let fx = RealEffects::new(marker_dir.to_path_buf());
    let mut single: HashMap<Vec<u8>, Vec<u8>, FixedState> = HashMap::default();
    let mut many: HashMap<Vec<u8>, Vec<Vec<u8>>, FixedState> = HashMap::default();
    let combine = app.has_combiner();
    for input in inputs {
        let path = PathBuf::from(input);
        let data = std::fs::read(&path).map_err(TaskError::io("read input", &path))?;
        let mut failed = None;
        app.map(&fx, input, &data, &mut |k, v| {
            if !combine {
                many.entry(k.to_vec()).or_default().push(v.to_vec());
            } else if let Some(acc) = single.get_mut(k) {
                if let Err(e) = app.combine(k, acc, v) {
                    failed.get_or_insert(e);
                }
            } else {
                single.insert(k.to_vec(), v.to_vec());
            }
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
    }
    let mut groups: Vec<(Vec<u8>, Vec<Vec<u8>>)> = if combine {
        single.into_iter().map(|(k, v)| (k, vec![v])).collect()
    } else {
        many.into_iter().collect()
    };
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    reduce_all(app.as_ref(), &fx, groups)
}

fn reduce_all(
    app: &dyn App,
    fx: &RealEffects,
    groups: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
) -> Result<Vec<u8>, TaskError> {
    let mut out = Vec::new();
    for (key, values) in groups {
        let value = app.reduce(fx, &key, &values)?;
        out.extend_from_slice(&key);
        out.push(b' ');
        out.extend_from_slice(&value);
        out.push(b'\n');
    }
    Ok(out)
}

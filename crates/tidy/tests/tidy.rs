//! Runs the tidy checks over the whole workspace: see the crate docs.

use std::path::Path;

#[test]
fn workspace_is_tidy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().expect("workspace root");
    let ratchet_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("long_functions.txt");
    let ratchet = std::fs::read_to_string(&ratchet_path).unwrap_or_default();
    let ratchet = flotilla_tidy::parse_ratchet(&ratchet);
    let violations = flotilla_tidy::check(&root, &ratchet).expect("read sources");
    let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(report.is_empty(), "tidy violations:\n{}", report.join("\n"));
}

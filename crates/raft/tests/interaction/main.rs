//! Interaction-trace tests of the Raft core, in the style of etcd raft's
//! `testdata`: each script under `testdata/` drives a small cluster step by
//! step (campaign, tick, deliver, propose, partition...) and holds the
//! output every step must print: the Readys with their messages, hard
//! states and committed entries. A change in the core's behaviour shows up
//! as a diff of that trace.
//!
//! `FLOTILLA_REWRITE=1 cargo test -p flotilla-raft --test interaction`
//! rewrites the expected outputs in place; read the diff before committing
//! it, the trace is the test.

mod cluster;
mod script;

use std::path::PathBuf;

use cluster::Cluster;

fn script_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interaction/testdata")
        .join(format!("{name}.txt"))
}

/// Writes a rewritten script. The I/O ban of the core's clippy.toml is for
/// the core; this is the test harness updating its own expectations.
#[allow(clippy::disallowed_methods)]
fn store(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).expect("rewrite the script");
}

/// Runs one script; in rewrite mode stores what it printed, otherwise
/// fails at the first block whose output differs from the script's.
fn run(name: &str) {
    let path = script_path(name);
    let text = std::fs::read_to_string(&path).expect("the script exists");
    let parsed = script::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rewrite = std::env::var_os("FLOTILLA_REWRITE").is_some_and(|v| v == "1");
    let mut cluster = Cluster::default();
    let mut outputs = Vec::new();
    for block in &parsed.blocks {
        let got = cluster.run(&block.command);
        if !rewrite && got != block.expected {
            panic!(
                "{}:{}: `{}`\n--- expected\n{}\n--- got\n{}\n",
                path.display(),
                block.line,
                block.command,
                block.expected,
                got
            );
        }
        outputs.push(got);
    }
    if rewrite {
        store(&path, &script::render(&parsed, &outputs));
    }
}

macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        const SCRIPTS: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                run(stringify!($name));
            }
        )*
    };
}

scripts!(
    election_basic,
    election_split_vote,
    election_log_up_to_date,
    prevote_rejoin,
    prevote_same_term,
    check_quorum_step_down,
    leader_stickiness,
    replication_basic,
    replication_conflict_repair,
    membership_learner,
    membership_joint,
    snapshot_transfer,
    read_index,
    read_lease,
    read_lease_transfer,
    transfer_leader,
    restart,
    single_voter_learner,
    flow_control,
);

/// Every script has a test above, so none is skipped silently.
#[test]
fn every_script_is_run() {
    let dir = script_path("x").with_file_name("");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("the testdata directory")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".txt").map(str::to_string)
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = SCRIPTS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

/// The parser keeps comments and rewrites a script to the same text when
/// the outputs are unchanged, so rewrite mode only touches expectations.
#[test]
fn a_script_renders_back_to_itself() {
    let text = "# a comment\n\nadd-nodes 1\n----\nok\n\n# between\ncampaign 1\n----\nok\n";
    let parsed = script::parse(text).expect("well formed");
    let outputs: Vec<String> = parsed.blocks.iter().map(|b| b.expected.clone()).collect();
    assert_eq!(parsed.blocks.len(), 2);
    assert_eq!(parsed.blocks[1].line, 8);
    assert_eq!(script::render(&parsed, &outputs), text);
    assert!(script::parse("campaign 1\nok\n").is_err());
}

//! Every shared history, recorded against real systems by others, gets the
//! verdict that came with the data (`testdata/histories/README.md`).

use std::path::{Path, PathBuf};

use flotilla_linearize::format::{parse_jepsen_etcd, parse_jepsen_kv};
use flotilla_linearize::{Kv, Limits, Register, Verdict, check};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/histories")
        .join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn jepsen_etcd_verdicts_match() {
    let verdicts = read(&data("jepsen-etcd/VERDICTS.tsv"));
    let mut checked = 0;
    let mut wrong = Vec::new();
    for line in verdicts.lines().filter(|l| !l.trim().is_empty()) {
        let (file, expected) = line.split_once('\t').expect("FILE<TAB>VERDICT");
        let parsed = parse_jepsen_etcd(&read(&data(&format!("jepsen-etcd/{file}"))))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let verdict = check(&Register, &parsed.history, &Limits::unlimited());
        let got = match verdict {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable(_) => "not-linearizable",
            Verdict::Unknown(u) => panic!("{file}: {u}"),
        };
        if got != expected {
            wrong.push(format!("{file}: expected {expected}, got {got}"));
        }
        checked += 1;
    }
    assert_eq!(checked, 102);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn kv_verdicts_match_the_file_names() {
    for clients in ["c01", "c10", "c50"] {
        for (suffix, linearizable) in [("ok", true), ("bad", false)] {
            let file = format!("kv/{clients}-{suffix}.txt");
            let parsed =
                parse_jepsen_kv(&read(&data(&file))).unwrap_or_else(|e| panic!("{file}: {e}"));
            let verdict = check(&Kv, &parsed.history, &Limits::unlimited());
            assert_eq!(verdict.is_linearizable(), linearizable, "{file}: {verdict}");
            if !linearizable {
                assert!(verdict.counterexample().is_some(), "{file}: {verdict}");
            }
        }
    }
}

//! The file formats: the README's JSON-lines example parses as documented,
//! and malformed lines are reported with their number and what was wrong.

use std::path::Path;

use flotilla_linearize::format::{
    Format, parse_jepsen_etcd, parse_jepsen_kv, parse_jsonl_kv, parse_jsonl_register,
};
use flotilla_linearize::{Kv, KvInput, KvOutput, Limits, RegisterInput, RegisterOutput, check};

#[test]
fn the_readme_example_parses_and_is_linearizable() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let block = readme
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```json block in the README");
    assert_eq!(Format::detect(block), Some(Format::Jsonl));
    let parsed = parse_jsonl_kv(block).expect("the README example parses");
    let ops = parsed.history.ops();
    assert_eq!(ops.len(), 7);
    assert_eq!(ops[1].input, KvInput::append("k1", "x"));
    assert_eq!(ops[2].output, Some(KvOutput::Value("a".into())));
    assert!(ops[3].is_pending());
    assert_eq!(
        ops[6].output,
        Some(KvOutput::Versioned {
            value: "new".into(),
            version: 1
        })
    );
    assert_eq!(parsed.lines, vec![1, 2, 3, 4, 5, 6, 7]);
    let verdict = check(&Kv, &parsed.history, &Limits::unlimited());
    assert!(verdict.is_linearizable(), "{verdict}");
}

fn kv_error(text: &str) -> String {
    parse_jsonl_kv(text).expect_err("malformed").to_string()
}

#[test]
fn malformed_json_lines_name_the_line_and_the_problem() {
    let ok = r#"{"client":1,"call":1,"return":2,"op":"put","key":"k","value":"v"}"#;
    let cases = [
        ("{\"client\":1", "line 2: not valid JSON"),
        (
            r#"{"client":1,"call":5,"return":4,"op":"get","key":"k","output":""}"#,
            "line 2: `return` is before `call`",
        ),
        (
            r#"{"client":1,"call":5,"return":null,"op":"get","key":"k","output":"x"}"#,
            "line 2: an operation with `\"return\": null`",
        ),
        (
            r#"{"client":-1,"call":5,"return":6,"op":"get","key":"k","output":""}"#,
            "line 2: `client` must be an unsigned integer",
        ),
        (
            r#"{"client":1,"call":5,"return":6,"op":"got","key":"k","output":""}"#,
            "line 2: unknown key/value op `got`",
        ),
        (
            r#"{"client":1,"call":5,"return":6,"op":"get","key":"k","outptu":""}"#,
            "line 2: unknown field `outptu`",
        ),
        (
            r#"{"client":1,"call":5,"return":6,"op":"cas","key":"k","expected":"a","value":"b"}"#,
            "line 2: a completed `cas` needs `output`",
        ),
        (
            r#"{"client":1,"call":5,"return":6,"op":"put","key":"k"}"#,
            "line 2: missing field `value`",
        ),
        ("[1,2]", "line 2: expected a JSON object"),
    ];
    for (line, expected) in cases {
        let err = kv_error(&format!("{ok}\n{line}\n"));
        assert!(
            err.starts_with(expected),
            "{line}: got {err:?}, expected {expected:?}"
        );
    }
    let err = parse_jsonl_register(
        "{\"client\":1,\"call\":1,\"return\":2,\"op\":\"read\",\"key\":\"k\"}",
    )
    .expect_err("no keys in a register");
    assert!(
        err.to_string().contains("`read` takes no field `key`"),
        "{err}"
    );
}

#[test]
fn register_json_lines_read_null_means_empty() {
    let text = "{\"client\":1,\"call\":1,\"return\":2,\"op\":\"read\",\"output\":null}\n\n\
                {\"client\":1,\"call\":3,\"return\":null,\"op\":\"cas\",\"expected\":1,\"value\":2}\n";
    let parsed = parse_jsonl_register(text).expect("valid");
    assert_eq!(
        parsed.history.ops()[0].output,
        Some(RegisterOutput::Value(None))
    );
    assert_eq!(
        parsed.history.ops()[1].input,
        RegisterInput::Cas { from: 1, to: 2 }
    );
    assert_eq!(parsed.lines, vec![1, 3]);
}

#[test]
fn jepsen_logs_pair_events_and_report_bad_lines() {
    let log = "INFO  jepsen.util - 0\t:invoke\t:write\t3\n\
               INFO  jepsen.util - 1\t:invoke\t:cas\t[3 4]\n\
               INFO  jepsen.util - 0\t:ok\t:write\t3\n\
               INFO  jepsen.util - 2\t:invoke\t:read\tnil\n\
               INFO  jepsen.util - 2\t:fail\t:read\t:timed-out\n\
               INFO  jepsen.util - 1 :fail :cas [3 4]\n\
               INFO  jepsen.util - 3\t:invoke\t:write\t1\n";
    let parsed = parse_jepsen_etcd(log).expect("valid");
    let ops = parsed.history.ops();
    assert_eq!(ops.len(), 3, "the failed read is dropped");
    assert_eq!(ops[1].output, Some(RegisterOutput::Cas(false)));
    assert!(ops[2].is_pending(), "no completion: unknown outcome");
    let err =
        parse_jepsen_etcd("INFO  jepsen.util - 0\t:ok\t:write\t3\n").expect_err("never invoked");
    assert_eq!(err.line, 1);
    let err =
        parse_jepsen_etcd("INFO  jepsen.util - 0\t:invoke\t:cas\t[1]\n").expect_err("bad pair");
    assert!(err.to_string().contains("[FROM TO]"), "{err}");

    let kv = "{:process 0, :type :invoke, :f :get, :key \"4\", :value nil}\n\
              {:process 0, :type :ok, :f :get, :key \"4\", :value \"a \\\"b\\\"\"}\n\
              {:process 1, :type :invoke, :f :bogus, :key \"4\", :value nil}\n";
    let err = parse_jepsen_kv(kv).expect_err("unknown :f");
    assert_eq!(err.line, 3);
    let parsed =
        parse_jepsen_kv(&kv.lines().take(2).collect::<Vec<_>>().join("\n")).expect("valid");
    assert_eq!(
        parsed.history.ops()[0].output,
        Some(KvOutput::Value("a \"b\"".into()))
    );
}

//! Mechanical style checks over the workspace's Rust sources, in the spirit of
//! TigerBeetle's `tidy.zig`: limits that reviewers should not have to count.
//!
//! The checks (run by `tests/tidy.rs`):
//! 1. No source file is longer than [`FILE_LINES_MAX`] lines.
//! 2. Every file under a `src/` directory opens with a `//!` module doc.
//! 3. No function body is longer than [`FUNCTION_LINES_MAX`] lines, except
//!    those recorded in `long_functions.txt` with their length at the time,
//!    which may shrink but not grow (a ratchet).
//!
//! The function scanner is a line-based brace counter, not a Rust parser: it
//! skips comments, string and char literals well enough for our own sources,
//! and that is all it needs to do.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The longest a source file may be.
pub const FILE_LINES_MAX: usize = 800;
/// The longest a new function may be.
pub const FUNCTION_LINES_MAX: usize = 70;

/// A function found in a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// The function's name.
    pub name: String,
    /// 1-based line of the `fn` keyword.
    pub line: usize,
    /// Lines from the `fn` line to the closing brace, both included.
    pub lines: usize,
}

/// One violation of a tidy rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The file, relative to the workspace root.
    pub path: PathBuf,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.what)
    }
}

/// Lists every `.rs` file under `root/crates`, skipping build output.
pub fn rust_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Removes comments and the contents of string and char literals from one
/// line, so that braces inside them are not counted. `in_block` carries an
/// open `/* ... */` comment across lines.
fn code_of(line: &str, in_block: &mut bool) -> String {
    let bytes = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < bytes.len() {
        if *in_block {
            if bytes[i..].starts_with(b"*/") {
                *in_block = false;
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        match bytes[i] {
            b'/' if bytes[i..].starts_with(b"//") => break,
            b'/' if bytes[i..].starts_with(b"/*") => {
                *in_block = true;
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' if i + 2 < bytes.len() && (bytes[i + 2] == b'\'' || bytes[i + 1] == b'\\') => {
                // A char literal such as '{' or '\n'; lifetimes ('a) fall through.
                let end = bytes[i + 1..]
                    .iter()
                    .position(|&b| b == b'\'')
                    .map(|p| i + 2 + p);
                i = end.unwrap_or(bytes.len());
                out.push_str("' '");
            }
            b => {
                out.push(b as char);
                i += 1;
            }
        }
    }
    out
}

/// Lists the functions with a body in `source`, with their lengths.
pub fn functions(source: &str) -> Vec<Function> {
    let mut found = Vec::new();
    // Open functions: (name, start line, brace depth at which the body opened).
    let mut open: Vec<(String, usize, usize)> = Vec::new();
    // A `fn` seen whose body has not opened yet: (name, line, depth).
    let mut pending: Option<(String, usize, usize)> = None;
    let mut expect_name = false;
    let mut depth = 0usize;
    let mut in_block = false;
    for (n, line) in source.lines().enumerate() {
        let code = code_of(line, &mut in_block);
        let mut word = String::new();
        // A trailing space flushes the last word of the line.
        for c in code.chars().chain(std::iter::once(' ')) {
            if c.is_alphanumeric() || c == '_' {
                word.push(c);
                continue;
            }
            if !word.is_empty() {
                if expect_name {
                    pending = Some((std::mem::take(&mut word), n + 1, depth));
                    expect_name = false;
                } else {
                    expect_name = word == "fn";
                }
                word.clear();
            }
            match c {
                '{' => {
                    if let Some((name, start, _)) = pending.take() {
                        open.push((name, start, depth));
                    }
                    depth += 1;
                }
                '}' => {
                    depth = depth.saturating_sub(1);
                    if open.last().is_some_and(|(_, _, d)| *d == depth)
                        && let Some((name, line, _)) = open.pop()
                    {
                        found.push(Function {
                            name,
                            line,
                            lines: n + 1 - line + 1,
                        });
                    }
                }
                // A declaration without a body (trait method, extern fn).
                ';' if pending.as_ref().is_some_and(|p| p.2 == depth) => pending = None,
                _ => {}
            }
        }
    }
    found.sort_by_key(|f| f.line);
    found
}

/// The ratchet file's contents: `path::name` to its allowed length.
pub fn parse_ratchet(text: &str) -> BTreeMap<String, usize> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (key, n) = l.rsplit_once(' ')?;
            Some((key.trim().to_string(), n.parse().ok()?))
        })
        .collect()
}

/// Runs every check over the workspace at `root`.
pub fn check(root: &Path, ratchet: &BTreeMap<String, usize>) -> std::io::Result<Vec<Violation>> {
    let mut violations = Vec::new();
    for path in rust_files(root)? {
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        let source = std::fs::read_to_string(&path)?;
        let mut bad = |what: String| {
            violations.push(Violation {
                path: rel.clone(),
                what,
            })
        };
        let lines = source.lines().count();
        if lines > FILE_LINES_MAX {
            bad(format!(
                "{lines} lines, over the limit of {FILE_LINES_MAX}: split it"
            ));
        }
        let in_src = rel.components().any(|c| c.as_os_str() == "src");
        if in_src && !source.trim_start().starts_with("//!") {
            bad("does not open with a `//!` module doc stating its job".to_string());
        }
        for f in functions(&source) {
            let key = format!("{}::{}", rel.display(), f.name);
            let limit = ratchet.get(&key).copied().unwrap_or(FUNCTION_LINES_MAX);
            if f.lines > limit {
                bad(format!(
                    "fn {} at line {} is {} lines, over its limit of {limit}",
                    f.name, f.line, f.lines
                ));
            }
        }
    }
    Ok(violations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_function_lines_ignoring_braces_in_strings_and_comments() {
        let src = "fn a() {\n    let s = \"{{\"; // }\n    let c = '{';\n}\n\ntrait T { fn b(&self); }\nfn c() -> u8 { 1 }\n";
        let fs = functions(src);
        assert_eq!(
            fs,
            vec![
                Function {
                    name: "a".into(),
                    line: 1,
                    lines: 4
                },
                Function {
                    name: "c".into(),
                    line: 7,
                    lines: 1
                },
            ]
        );
    }

    #[test]
    fn nested_functions_are_measured_separately() {
        let src = "fn outer() {\n    fn inner() {\n        x();\n    }\n    y();\n}\n";
        let fs = functions(src);
        assert_eq!(
            fs[0],
            Function {
                name: "outer".into(),
                line: 1,
                lines: 6
            }
        );
        assert_eq!(
            fs[1],
            Function {
                name: "inner".into(),
                line: 2,
                lines: 3
            }
        );
    }

    #[test]
    fn ratchet_lines_parse() {
        let r = parse_ratchet("# comment\ncrates/a/src/x.rs::f 90\n\n");
        assert_eq!(r.get("crates/a/src/x.rs::f"), Some(&90));
    }
}

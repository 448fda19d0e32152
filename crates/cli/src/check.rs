//! `flotilla check linearizability`: checks a recorded history file with
//! the `flotilla-linearize` crate and prints the verdict.
//!
//! Exit codes (the contract scripts rely on): 0 linearizable, 1 not
//! linearizable, 2 unknown (the time limit ran out: not a pass), 3 bad input
//! (unreadable file, malformed line, a model that does not fit the format).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use flotilla_linearize::format::{
    Format, ParseError, Parsed, parse_jepsen_etcd, parse_jepsen_kv, parse_jsonl_kv,
    parse_jsonl_register,
};
use flotilla_linearize::{Kv, Limits, Model, Register, Verdict, check_report, html};

/// Exit code: the history is linearizable.
const LINEARIZABLE: u8 = 0;
/// Exit code: it is not.
const NOT_LINEARIZABLE: u8 = 1;
/// Exit code: the time limit ran out first.
const UNKNOWN: u8 = 2;
/// Exit code: the input could not be used.
pub const BAD_INPUT: u8 = 3;

/// Checks recorded histories.
#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// Checks that a history of client operations is linearizable.
    ///
    /// Exit code 0: linearizable; 1: not linearizable (a counterexample is
    /// printed); 2: unknown, the time limit ran out (NOT a pass); 3: bad
    /// input.
    Linearizability(LinearizabilityArgs),
}

/// The model a history is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    /// Key/value store: get, put, append, delete, cas, cas_version.
    Kv,
    /// One register: read, write, cas.
    Register,
}

/// The history file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Guess from the first line.
    Auto,
    /// Flotilla's JSON lines (see the README).
    Jsonl,
    /// Jepsen's etcd register log.
    JepsenEtcd,
    /// Jepsen-style EDN key/value events.
    JepsenKv,
}

/// Arguments of `flotilla check linearizability`.
#[derive(Debug, Args)]
pub struct LinearizabilityArgs {
    /// The history file.
    file: PathBuf,
    /// The model (default: register for jepsen-etcd, kv otherwise).
    #[arg(long, value_enum)]
    model: Option<ModelArg>,
    /// The file's format.
    #[arg(long, value_enum, default_value = "auto")]
    format: FormatArg,
    /// Wall-clock limit for the search, e.g. 500ms, 10s, 2m; "none" for no
    /// limit. Past it the verdict is unknown (exit code 2).
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    timeout: Timeout,
    /// Also write the history as an HTML timeline to this file.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

/// A time limit, or none.
#[derive(Debug, Clone, Copy)]
pub struct Timeout(Option<Duration>);

fn parse_timeout(text: &str) -> Result<Timeout, String> {
    if text == "none" {
        return Ok(Timeout(None));
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a number and a unit (ms, s, m), or none"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(format!("`{text}`: the unit must be ms, s or m")),
    };
    Ok(Timeout(Some(duration)))
}

/// Runs a `check` subcommand.
pub fn run(command: CheckCommand) -> anyhow::Result<ExitCode> {
    match command {
        CheckCommand::Linearizability(args) => linearizability(&args),
    }
}

fn bad_input(message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("flotilla check: bad input: {message}");
    Ok(ExitCode::from(BAD_INPUT))
}

fn linearizability(args: &LinearizabilityArgs) -> anyhow::Result<ExitCode> {
    let file = args.file.display();
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(e) => return bad_input(format!("{file}: {e}")),
    };
    let format = match args.format {
        FormatArg::Jsonl => Format::Jsonl,
        FormatArg::JepsenEtcd => Format::JepsenEtcd,
        FormatArg::JepsenKv => Format::JepsenKv,
        FormatArg::Auto => match Format::detect(&text) {
            Some(f) => f,
            None => {
                return bad_input(format!(
                    "{file}: cannot tell its format from the first line; give --format"
                ));
            }
        },
    };
    let model = match (format, args.model) {
        (Format::JepsenEtcd, None | Some(ModelArg::Register)) => ModelArg::Register,
        (Format::JepsenKv, None | Some(ModelArg::Kv)) => ModelArg::Kv,
        (Format::Jsonl, model) => model.unwrap_or(ModelArg::Kv),
        (format, Some(model)) => {
            return bad_input(format!(
                "{file}: a {format:?} history cannot be checked with the {model:?} model"
            ));
        }
    };
    let limits = Limits {
        timeout: args.timeout.0,
        ..Limits::default()
    };
    match (format, model) {
        (Format::JepsenEtcd, _) => judge(&Register, parse_jepsen_etcd(&text), args, &limits),
        (Format::JepsenKv, _) => judge(&Kv, parse_jepsen_kv(&text), args, &limits),
        (Format::Jsonl, ModelArg::Register) => {
            judge(&Register, parse_jsonl_register(&text), args, &limits)
        }
        (Format::Jsonl, ModelArg::Kv) => judge(&Kv, parse_jsonl_kv(&text), args, &limits),
    }
}

fn judge<M: Model>(
    model: &M,
    parsed: Result<Parsed<M::Input, M::Output>, ParseError>,
    args: &LinearizabilityArgs,
    limits: &Limits,
) -> anyhow::Result<ExitCode> {
    let file = args.file.display();
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return bad_input(format!("{file}: {e}")),
    };
    let start = Instant::now();
    let report = check_report(model, &parsed.history, limits);
    let took = start.elapsed();
    print!("{}", report.verdict);
    if let Verdict::NotLinearizable(c) = &report.verdict {
        let lines: Vec<String> = c
            .core
            .iter()
            .filter_map(|id| {
                parsed
                    .lines
                    .get(id.0)
                    .map(|l| format!("#{} on line {l}", id.0))
            })
            .collect();
        println!("in {file}: {}", lines.join(", "));
    }
    println!(
        "checked {} operations in {} partitions in {:.3} s",
        parsed.history.len(),
        report.partitions.len(),
        took.as_secs_f64()
    );
    if let Some(path) = &args.html {
        let page = html::render(model, &parsed.history, &report.verdict, &file.to_string());
        if let Err(e) = write_html(path, &page) {
            return bad_input(format!("{e:#}"));
        }
    }
    let code = match report.verdict {
        Verdict::Linearizable => LINEARIZABLE,
        Verdict::NotLinearizable(_) => NOT_LINEARIZABLE,
        Verdict::Unknown(u) => {
            eprintln!("flotilla check: {u}");
            UNKNOWN
        }
    };
    Ok(ExitCode::from(code))
}

fn write_html(path: &Path, page: &str) -> anyhow::Result<()> {
    std::fs::write(path, page)
        .with_context(|| format!("writing the HTML page to {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_with_units_or_none() {
        assert_eq!(
            parse_timeout("500ms").map(|t| t.0),
            Ok(Some(Duration::from_millis(500)))
        );
        assert_eq!(
            parse_timeout("10s").map(|t| t.0),
            Ok(Some(Duration::from_secs(10)))
        );
        assert_eq!(
            parse_timeout("2m").map(|t| t.0),
            Ok(Some(Duration::from_secs(120)))
        );
        assert_eq!(parse_timeout("none").map(|t| t.0), Ok(None));
        assert!(parse_timeout("10").is_err());
        assert!(parse_timeout("s").is_err());
    }
}

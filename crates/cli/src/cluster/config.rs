//! Optional TOML configuration files (`--config FILE` or `FLOTILLA_CONFIG`)
//! for `flotilla server` and `flotilla up`.
//!
//! A file's keys are the command's long flags without the dashes
//! (`data-dir = "..."`). Precedence, highest first: the flag, its
//! environment variable (both through clap), the file, the built-in
//! default; so each setting is `flag.or(file).unwrap_or(default)`.
//! Invariant: a file is accepted whole or refused with a message that
//! names the file, the line and the key (an unknown key, a wrong type,
//! malformed TOML); nothing in it is silently ignored.

use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;

/// Reads and parses `path`, or gives the default (every key unset) when
/// there is no file.
pub fn load<T: DeserializeOwned + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    parse(path, &text)
}

/// Parses the text of the config file `path`.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> anyhow::Result<T> {
    toml::from_str(text).map_err(|e| {
        let Some(span) = e.span() else {
            return anyhow::anyhow!("config file {}: {}", path.display(), e.message());
        };
        let start = span.start.min(text.len());
        let line_no = text[..start].matches('\n').count() + 1;
        let line = text.lines().nth(line_no - 1).unwrap_or("");
        // The key is what precedes `=` on that line; a line inside a
        // multi-line array has none to show.
        let key = match line.split_once('=') {
            Some((key, _)) => format!(", key `{}`", key.trim()),
            None => String::new(),
        };
        anyhow::anyhow!(
            "config file {}, line {line_no}{key}: {}",
            path.display(),
            e.message().trim_end()
        )
    })
}

/// `value`, or an error naming the setting's three sources.
pub fn required<T>(value: Option<T>, flag: &str, env: &str) -> anyhow::Result<T> {
    value.with_context(|| {
        format!("--{flag} is required (the flag, {env}, or `{flag}` in the --config file)",)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct Sample {
        tick_ms: Option<u64>,
        data_dir: Option<String>,
    }

    fn err(text: &str) -> String {
        parse::<Sample>(Path::new("f.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn keys_are_the_flags_without_dashes() {
        let s: Sample = parse(Path::new("f.toml"), "tick-ms = 5\ndata-dir = \"d\"\n").unwrap();
        assert_eq!(s.tick_ms, Some(5));
        assert_eq!(s.data_dir.as_deref(), Some("d"));
    }

    #[test]
    fn an_unknown_key_names_the_file_line_and_key() {
        let e = err("tick-ms = 5\n\nbogus = 1\n");
        assert!(
            e.starts_with("config file f.toml, line 3, key `bogus`:"),
            "{e}"
        );
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn a_wrong_type_names_the_file_line_and_key() {
        let e = err("data-dir = \"d\"\ntick-ms = \"ten\"\n");
        assert!(
            e.starts_with("config file f.toml, line 2, key `tick-ms`:"),
            "{e}"
        );
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn an_error_inside_a_multi_line_value_names_the_line() {
        let e = err("data-dir = [\n  \"a\",\n  3,\n]\n");
        assert!(
            e.starts_with("config file f.toml, line 1, key `data-dir`:"),
            "{e}"
        );
    }

    #[test]
    fn malformed_toml_is_refused() {
        let e = err("tick-ms = \n");
        assert!(e.starts_with("config file f.toml, line 1"), "{e}");
    }

    #[test]
    fn a_missing_file_is_an_error_and_no_file_the_default() {
        let e = load::<Sample>(Some(Path::new("/nonexistent/f.toml"))).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/f.toml"), "{e:#}");
        let s = load::<Sample>(None).unwrap();
        assert_eq!(s.tick_ms, None);
    }
}

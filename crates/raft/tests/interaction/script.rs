//! The script format of the interaction tests, in the style of etcd raft's
//! `testdata` files: a command line, a `----` line, then the expected
//! output up to the next blank line. Lines starting with `#` and blank lines
//! between blocks are comments, kept as they are when a script is
//! rewritten (`FLOTILLA_REWRITE=1`) with the output the driver produced.

use std::fmt::Write as _;

/// One command and the output expected of it.
#[derive(Debug)]
pub struct Block {
    /// Comment and blank lines before the command, verbatim.
    pub preamble: Vec<String>,
    /// The command line.
    pub command: String,
    /// Its 1-based line number in the script, for failure messages.
    pub line: usize,
    /// The expected output (lines joined with `\n`, no trailing newline).
    pub expected: String,
}

/// A parsed script: its blocks, and any comment lines after the last one.
#[derive(Debug)]
pub struct Script {
    pub blocks: Vec<Block>,
    pub trailer: Vec<String>,
}

fn is_comment(line: &str) -> bool {
    line.trim().is_empty() || line.starts_with('#')
}

/// Parses a script. A command without its `----` line is an error that
/// names the line, so a typo does not silently skip a check.
pub fn parse(text: &str) -> Result<Script, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut preamble = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if is_comment(line) {
            preamble.push(line.to_string());
            i += 1;
            continue;
        }
        let command = line.trim().to_string();
        let line_no = i + 1;
        if lines.get(i + 1).map(|l| l.trim()) != Some("----") {
            return Err(format!("line {line_no}: `{command}` lacks its `----` line"));
        }
        i += 2;
        let mut expected = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() {
            expected.push(lines[i]);
            i += 1;
        }
        // The blank line that ends the block belongs to it.
        i += 1;
        blocks.push(Block {
            preamble: std::mem::take(&mut preamble),
            command,
            line: line_no,
            expected: expected.join("\n"),
        });
    }
    // Blank lines that only separate the last block from the end of file
    // are not kept: the rewrite adds its own.
    while preamble.last().is_some_and(|l| l.trim().is_empty()) {
        preamble.pop();
    }
    Ok(Script {
        blocks,
        trailer: preamble,
    })
}

/// Renders a script with `outputs` (one per block) as the expected text.
pub fn render(script: &Script, outputs: &[String]) -> String {
    let mut text = String::new();
    for (block, output) in script.blocks.iter().zip(outputs) {
        for line in &block.preamble {
            let _ = writeln!(text, "{line}");
        }
        let _ = writeln!(text, "{}\n----\n{output}\n", block.command);
    }
    for line in &script.trailer {
        let _ = writeln!(text, "{line}");
    }
    // One newline at the end of the file, not a blank line.
    while text.ends_with("\n\n") {
        text.pop();
    }
    text
}

/// A command line split into its name, positional arguments and
/// `key=value` options (a value may be a list: `voters=(1,2,3)`).
#[derive(Debug)]
pub struct Command {
    pub name: String,
    pub args: Vec<String>,
    pub options: Vec<(String, String)>,
}

impl Command {
    pub fn parse(line: &str) -> Command {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default().to_string();
        let mut args = Vec::new();
        let mut options = Vec::new();
        for word in words {
            match word.split_once('=') {
                Some((k, v)) => options.push((k.to_string(), v.to_string())),
                None => args.push(word.to_string()),
            }
        }
        Command {
            name,
            args,
            options,
        }
    }

    /// The value of option `key`, if given.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Option `key` as a boolean (`true`/`false`), or `default`.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.option(key) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(format!("{key}={v}: want true or false")),
        }
    }

    /// Option `key` as a number, or `default`.
    pub fn number(&self, key: &str, default: u64) -> Result<u64, String> {
        self.option(key).map_or(Ok(default), |v| {
            v.parse().map_err(|e| format!("{key}={v}: {e}"))
        })
    }

    /// Option `key` as a list of ids: `(1,2,3)` or `()`.
    pub fn ids(&self, key: &str) -> Result<Option<Vec<u64>>, String> {
        let Some(v) = self.option(key) else {
            return Ok(None);
        };
        let inner = v
            .strip_prefix('(')
            .and_then(|v| v.strip_suffix(')'))
            .ok_or_else(|| format!("{key}={v}: want a list like (1,2,3)"))?;
        inner
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|e| format!("{key}: {s}: {e}")))
            .collect::<Result<Vec<u64>, String>>()
            .map(Some)
    }

    /// Positional argument `i` as a node id.
    pub fn id(&self, i: usize) -> Result<u64, String> {
        let arg = self
            .args
            .get(i)
            .ok_or_else(|| format!("`{}` needs a node id", self.name))?;
        arg.parse().map_err(|e| format!("node id {arg}: {e}"))
    }

    /// Every positional argument as a node id.
    pub fn all_ids(&self) -> Result<Vec<u64>, String> {
        (0..self.args.len()).map(|i| self.id(i)).collect()
    }
}

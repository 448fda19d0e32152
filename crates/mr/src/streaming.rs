//! Streaming apps, as in Hadoop Streaming: any executable, run by `sh -c`,
//! is a map or reduce function.
//!
//! - Map: the split's bytes on stdin; each stdout line `key<TAB>value` is an
//!   intermediate record (a line without a tab is a key with an empty value).
//! - Reduce, `sorted` input (default): one run per reduce task; stdin holds
//!   every `key<TAB>value` line of the partition, sorted by key (bytewise);
//!   each stdout line `key<TAB>value` becomes the output line `key value`.
//! - Reduce, `group` input: one run per distinct key, with the key in
//!   `MR_KEY` and its values on stdin, one per line; stdout (without its
//!   trailing newline) is the key's output value.
//!
//! Every run also gets `MR_TASK` (for example `map 3`) and, for maps,
//! `MR_INPUT_FILE`. A command that exits non-zero fails the task with its
//! exit status and the tail of its stderr.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use super::error::TaskError;

/// Bytes of stderr kept for error messages.
const STDERR_TAIL_BYTES: usize = 2048;

/// How reduce commands read their input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceInput {
    /// One run per task, all sorted lines on stdin.
    Sorted,
    /// One run per key, its values on stdin.
    Group,
}

/// Keeps the last [`STDERR_TAIL_BYTES`] of a stream.
fn tail_of(mut r: impl Read) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 2 * STDERR_TAIL_BYTES {
                    buf.drain(..buf.len() - STDERR_TAIL_BYTES);
                }
            }
        }
    }
    if buf.len() > STDERR_TAIL_BYTES {
        buf.drain(..buf.len() - STDERR_TAIL_BYTES);
    }
    let text = String::from_utf8_lossy(&buf).trim().to_string();
    if text.is_empty() {
        "(empty)".to_string()
    } else {
        text
    }
}

/// Runs `cmd` with `env`; `feed` writes its stdin (on another thread),
/// `on_line` receives each stdout line without its newline.
pub fn run(
    cmd: &str,
    env: &[(&str, String)],
    feed: impl FnOnce(&mut dyn Write) -> Result<(), TaskError> + Send,
    mut on_line: impl FnMut(&[u8]) -> Result<(), TaskError>,
) -> Result<(), TaskError> {
    let fail = |status: String, stderr_tail: String| TaskError::Command {
        cmd: cmd.to_string(),
        status,
        stderr_tail,
    };
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .spawn()
        .map_err(|e| fail(format!("could not start: {e}"), "(none)".into()))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        return Err(fail("has no pipes".into(), "(none)".into()));
    };
    let (fed, read, tail) = std::thread::scope(|s| {
        let feeder = s.spawn(move || {
            let r = feed(&mut stdin);
            drop(stdin); // EOF for the command
            r
        });
        let tail = s.spawn(move || tail_of(stderr));
        let read = read_lines(stdout, &mut on_line);
        if read.is_err() {
            // The command may be blocked writing output nobody reads, and
            // so never drain its stdin: stop it before waiting for the
            // writer.
            let _ = child.kill();
        }
        let fed = feeder
            .join()
            .unwrap_or_else(|_| Err(fail("stdin writer panicked".into(), String::new())));
        let tail = tail.join().unwrap_or_default();
        (fed, read, tail)
    });
    let status = child
        .wait()
        .map_err(|e| fail(format!("could not be waited for: {e}"), tail.clone()))?;
    if !status.success() {
        let how = match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => format!("was killed ({status})"),
        };
        return Err(fail(how, tail));
    }
    read?;
    match fed {
        // The command may stop reading early; its exit status decides.
        Err(TaskError::Io { ref source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
            Ok(())
        }
        other => other,
    }
}

fn read_lines(
    stdout: impl Read,
    on_line: &mut impl FnMut(&[u8]) -> Result<(), TaskError>,
) -> Result<(), TaskError> {
    let mut reader = BufReader::with_capacity(256 * 1024, stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(TaskError::io("read output of", "command"))?;
        if n == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        on_line(&line)?;
    }
}

/// Splits a `key<TAB>value` line.
pub fn split_line(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b'\t') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[]),
    }
}

/// Writes `data` to a command's stdin, as an I/O error on "stdin".
pub fn write_all(w: &mut dyn Write, data: &[u8]) -> Result<(), TaskError> {
    w.write_all(data)
        .map_err(TaskError::io("write to", "command stdin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_back_and_failures_carry_the_stderr_tail() {
        let mut lines = Vec::new();
        run(
            "tr a-z A-Z",
            &[],
            |w| write_all(w, b"ab\ncd\n"),
            |l| {
                lines.push(l.to_vec());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(lines, [b"AB".to_vec(), b"CD".to_vec()]);
        let err = run("echo oops >&2; exit 3", &[], |_| Ok(()), |_| Ok(())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "command `echo oops >&2; exit 3` exited with status 3; stderr tail: oops"
        );
    }

    #[test]
    fn a_command_that_ignores_stdin_is_judged_by_its_status() {
        let big = vec![b'x'; 4 << 20];
        run("exit 0", &[], |w| write_all(w, &big), |_| Ok(())).unwrap();
        assert_eq!(split_line(b"k\tv\tw"), (&b"k"[..], &b"v\tw"[..]));
        assert_eq!(split_line(b"k"), (&b"k"[..], &b""[..]));
    }
}

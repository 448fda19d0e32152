//! A command whose reader left: `flotilla kv get --prefix a | head` closes
//! stdout early. A C tool ends there on SIGPIPE; Rust ignores SIGPIPE, so
//! a write fails with `BrokenPipe` instead (and `println!` panics). Either
//! way the command ends quietly with [`BROKEN_PIPE_EXIT`], as coreutils'
//! do, so a pipeline reads it as usual and nothing looks like a bug.
//!
//! SIGPIPE itself stays ignored: restoring it needs `unsafe`, which the
//! workspace forbids, and would also end a server whose log reader left
//! or a socket write to a peer that went away.

use std::io;

/// 128 + SIGPIPE: what a C tool's pipeline reports when its reader left.
pub const BROKEN_PIPE_EXIT: i32 = 141;

/// Makes a `println!` to a stdout whose reader left end the process with
/// [`BROKEN_PIPE_EXIT`] instead of a panic's message and backtrace.
pub fn quiet_on_broken_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // std's: "failed printing to stdout: Broken pipe (os error 32)".
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(BROKEN_PIPE_EXIT);
        }
        report(info);
    }));
}

/// `written`, the outcome of writing to stdout, unless its reader left:
/// then the process ends with [`BROKEN_PIPE_EXIT`].
pub fn stdout_written(written: io::Result<()>) -> io::Result<()> {
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(BROKEN_PIPE_EXIT),
        other => other,
    }
}

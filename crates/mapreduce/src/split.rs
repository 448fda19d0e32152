//! Cutting input files into byte-range splits at line boundaries, so that one
//! large file still runs as many map tasks in parallel.
//!
//! Rule: a split of nominal size `S` that would end at byte `e` is extended to
//! the next line start at or after `e` (the byte after a `\n`, or the end of
//! the file), so every line lies in exactly one split and no split is empty
//! unless the file is. The planner does no I/O: the caller supplies
//! `line_start(pos)`, which reads the file as far as it must.

use crate::task::Split;

/// Splits `file` (of `len` bytes) into ranges of about `split_bytes`.
///
/// `line_start(pos)` must return the smallest `p >= pos` such that `p == len`
/// or byte `p - 1` is `\n`. An empty file gives one empty split, so that the
/// app still sees the document (the indexer counts documents).
pub fn plan<E>(
    file: &str,
    len: u64,
    split_bytes: u64,
    mut line_start: impl FnMut(u64) -> Result<u64, E>,
) -> Result<Vec<Split>, E> {
    let split_bytes = split_bytes.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    if len == 0 {
        out.push(Split {
            file: file.to_string(),
            start: 0,
            end: 0,
        });
        return Ok(out);
    }
    while start < len {
        let nominal = start.saturating_add(split_bytes);
        let end = if nominal >= len {
            len
        } else {
            // `line_start` answers at least `nominal`, which is past `start`,
            // so the loop always advances.
            line_start(nominal)?.clamp(nominal, len)
        };
        out.push(Split {
            file: file.to_string(),
            start,
            end,
        });
        start = end;
    }
    Ok(out)
}

/// `line_start` over bytes held in memory (tests, and small files).
pub fn line_start_in(data: &[u8], pos: u64) -> u64 {
    let len = data.len() as u64;
    if pos == 0 || pos >= len {
        return pos.min(len);
    }
    let from = (pos - 1) as usize;
    match data[from..].iter().position(|&b| b == b'\n') {
        Some(i) => (from + i + 1) as u64,
        None => len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_mem(data: &[u8], size: u64) -> Vec<(u64, u64)> {
        let splits = plan("f", data.len() as u64, size, |p| {
            Ok::<_, ()>(line_start_in(data, p))
        })
        .unwrap();
        splits.iter().map(|s| (s.start, s.end)).collect()
    }

    #[test]
    fn splits_end_after_a_newline_and_cover_the_file() {
        let data = b"aa\nbbbb\ncc\nd";
        assert_eq!(plan_mem(data, 4), vec![(0, 8), (8, 12)]);
        assert_eq!(plan_mem(data, 3), vec![(0, 3), (3, 8), (8, 11), (11, 12)]);
        assert_eq!(plan_mem(data, 100), vec![(0, 12)]);
    }

    #[test]
    fn a_boundary_on_a_line_start_is_kept() {
        // Byte 3 follows the first newline, so it already is a line start.
        assert_eq!(plan_mem(b"aa\nbb\n", 3), vec![(0, 3), (3, 6)]);
    }

    #[test]
    fn a_line_longer_than_the_split_stays_whole() {
        assert_eq!(plan_mem(b"abcdefgh\nij", 2), vec![(0, 9), (9, 11)]);
        assert_eq!(plan_mem(b"abcdefgh", 2), vec![(0, 8)]);
    }

    #[test]
    fn an_empty_file_is_one_empty_split() {
        assert_eq!(plan_mem(b"", 10), vec![(0, 0)]);
    }
}

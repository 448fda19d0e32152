//! The two text apps: `wc` (word count, with a combiner) and `indexer`
//! (inverted index). Words are split by [`crate::words`].

use std::collections::BTreeSet;

use super::{App, AppError, Effects, Emit, sorted_join};
use crate::words::words;

/// Word count: map emits `(word, "1")` per occurrence; reduce outputs the
/// number of occurrences. The combiner sums partial counts, so reduce sums
/// the values (equal to counting them when nothing was combined).
#[derive(Debug, Clone, Copy, Default)]
pub struct WordCount;

/// Parses a partial count written by `wc`'s map or combiner.
fn count_of(key: &[u8], value: &[u8]) -> Result<u64, AppError> {
    if value == b"1" {
        return Ok(1);
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| AppError::BadValue {
            key: String::from_utf8_lossy(key).into_owned(),
            value: String::from_utf8_lossy(value).into_owned(),
            why: "not a count",
        })
}

impl App for WordCount {
    fn name(&self) -> &'static str {
        "wc"
    }

    fn map(
        &self,
        _: &dyn Effects,
        _: &str,
        contents: &[u8],
        emit: &mut Emit<'_>,
    ) -> Result<(), AppError> {
        let text = String::from_utf8_lossy(contents);
        for word in words(&text) {
            emit(word.as_bytes(), b"1");
        }
        Ok(())
    }

    fn reduce(&self, _: &dyn Effects, key: &[u8], values: &[Vec<u8>]) -> Result<Vec<u8>, AppError> {
        let mut total: u64 = 0;
        for v in values {
            total = total.saturating_add(count_of(key, v)?);
        }
        Ok(total.to_string().into_bytes())
    }

    fn has_combiner(&self) -> bool {
        true
    }

    fn combine(&self, key: &[u8], acc: &mut Vec<u8>, value: &[u8]) -> Result<(), AppError> {
        let sum = count_of(key, acc)?.saturating_add(count_of(key, value)?);
        acc.clear();
        // Digits written in place: this runs once per word occurrence.
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = sum;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        acc.extend_from_slice(&digits[at..]);
        Ok(())
    }
}

/// Inverted index: map emits `(word, doc)` once per distinct word of the
/// split; reduce outputs `"<n> <doc1>,<doc2>,..."` with the documents sorted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Indexer;

impl App for Indexer {
    fn name(&self) -> &'static str {
        "indexer"
    }

    fn map(
        &self,
        _: &dyn Effects,
        doc: &str,
        contents: &[u8],
        emit: &mut Emit<'_>,
    ) -> Result<(), AppError> {
        let text = String::from_utf8_lossy(contents);
        let distinct: BTreeSet<&str> = words(&text).collect();
        for word in distinct {
            emit(word.as_bytes(), doc.as_bytes());
        }
        Ok(())
    }

    fn reduce(&self, _: &dyn Effects, _: &[u8], values: &[Vec<u8>]) -> Result<Vec<u8>, AppError> {
        let mut out = values.len().to_string().into_bytes();
        out.push(b' ');
        out.extend(sorted_join(values, b","));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::testing::{FakeEffects, map_all};

    #[test]
    fn wc_counts_and_combines() {
        let fx = FakeEffects::default();
        let pairs = map_all(&WordCount, &fx, "d", b"a b a");
        assert_eq!(pairs, [("a", "1"), ("b", "1"), ("a", "1")]);
        let mut acc = b"2".to_vec();
        WordCount.combine(b"a", &mut acc, b"3").unwrap();
        assert_eq!(acc, b"5");
        let out = WordCount
            .reduce(&fx, b"a", &[b"5".to_vec(), b"1".to_vec()])
            .unwrap();
        assert_eq!(out, b"6");
        let err = WordCount.reduce(&fx, b"a", &[b"x".to_vec()]).unwrap_err();
        assert_eq!(err.to_string(), "bad value `x` for key `a`: not a count");
    }

    #[test]
    fn indexer_emits_each_word_once_and_sorts_documents() {
        let fx = FakeEffects::default();
        let pairs = map_all(&Indexer, &fx, "../pg-x.txt", b"b a b");
        assert_eq!(pairs, [("a", "../pg-x.txt"), ("b", "../pg-x.txt")]);
        let out = Indexer
            .reduce(
                &fx,
                b"a",
                &[b"z.txt".to_vec(), b"b.txt".to_vec(), b"b.txt".to_vec()],
            )
            .unwrap();
        assert_eq!(out, b"3 b.txt,b.txt,z.txt");
    }
}

//! A deterministic text corpus for benchmarks: words drawn with a skewed
//! (log-uniform, roughly Zipf-like) distribution from a generated
//! vocabulary that mixes ASCII words with accented Latin, Greek, Cyrillic and
//! CJK words, plus characters that test the letter rule (a letter number
//! `Ⅻ` and a combining mark, which are not letters). Same size, same bytes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;

use flotilla_raft::rng::SplitMix64 as Rng;

const SYLLABLES: [&str; 24] = [
    "ka", "to", "ri", "ne", "sa", "lo", "mi", "du", "the", "an", "er", "in", "qu", "ell", "or",
    "st", "é", "ü", "ñ", "ø", "ß", "ça", "ão", "ž",
];
const FOREIGN: [&str; 12] = [
    "λόγος",
    "ἀρχή",
    "слово",
    "Москва",
    "東京",
    "言葉",
    "서울",
    "שלום",
    "مرحبا",
    "नमस्ते",
    "ǅungla",
    "Ⅻvek",
];
const VOCABULARY: usize = 60_000;

fn vocabulary(rng: &mut Rng) -> Vec<String> {
    let mut words = Vec::with_capacity(VOCABULARY);
    for i in 0..VOCABULARY {
        if i % 50 == 49 {
            let base = FOREIGN[rng.range(0, FOREIGN.len() as u64) as usize];
            words.push(format!("{base}{}", SYLLABLES[i % 16]));
            continue;
        }
        let n = 1 + rng.range(0, 4);
        let mut w = String::new();
        for _ in 0..n {
            w.push_str(SYLLABLES[rng.range(0, SYLLABLES.len() as u64) as usize]);
        }
        if rng.range(0, 10) == 0 {
            // Capitalised variants are distinct words (case-sensitive).
            let mut c = w.chars();
            if let Some(first) = c.next() {
                w = first.to_uppercase().chain(c).collect();
            }
        }
        words.push(w);
    }
    words
}

/// Writes about `bytes` bytes of text to `path` (whole lines, so slightly
/// more); returns the exact size.
pub fn generate(path: &Path, bytes: u64, seed: u64) -> anyhow::Result<u64> {
    let mut rng = Rng::new(seed);
    let words = vocabulary(&mut rng);
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut line = String::with_capacity(256);
    let mut written = 0u64;
    let ln_vocab = (VOCABULARY as f64).ln();
    while written < bytes {
        line.clear();
        let n = 6 + rng.range(0, 10);
        for i in 0..n {
            // Log-uniform rank: frequent words are very frequent.
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let rank = ((u * ln_vocab).exp() as usize)
                .saturating_sub(1)
                .min(VOCABULARY - 1);
            line.push_str(&words[rank]);
            line.push_str(match (i + 1 == n, rng.range(0, 12)) {
                (true, _) => ".\n",
                (false, 0) => ", ",
                (false, 1) => "; ",
                (false, 2) => " \u{0301}",
                _ => " ",
            });
        }
        out.write_all(line.as_bytes())
            .context("writing the corpus")?;
        written += line.len() as u64;
    }
    out.flush().context("writing the corpus")?;
    Ok(written)
}

//! Word splitting for the `wc` and `indexer` apps: a word is a maximal run of
//! Unicode letters, where a letter is a character of general category Lu, Ll,
//! Lt, Lm or Lo (Go's `unicode.IsLetter`, which the course's apps use).
//!
//! `char::is_alphabetic` is not the same test: it also accepts letter numbers
//! (Nl, such as `Ⅻ`) and many combining marks (Mn/Mc, such as U+093E), which
//! would join or split words differently from the course's reference output.

use unicode_general_category::{GeneralCategory, get_general_category};

/// Whether `c` is a letter in Go's sense (categories L*).
pub fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    matches!(
        get_general_category(c),
        GeneralCategory::UppercaseLetter
            | GeneralCategory::LowercaseLetter
            | GeneralCategory::TitlecaseLetter
            | GeneralCategory::ModifierLetter
            | GeneralCategory::OtherLetter
    )
}

/// The words of `text`, in order.
pub fn words(text: &str) -> Words<'_> {
    Words { text, pos: 0 }
}

/// Iterator over the words of a text; see [`words`].
#[derive(Debug, Clone)]
pub struct Words<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Words<'a> {
    /// The letter-ness and byte length of the character at `pos`.
    fn at(&self, pos: usize) -> (bool, usize) {
        let b = self.text.as_bytes()[pos];
        if b < 0x80 {
            return (b.is_ascii_alphabetic(), 1);
        }
        match self.text[pos..].chars().next() {
            Some(c) => (is_letter(c), c.len_utf8()),
            None => (false, 1),
        }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let len = self.text.len();
        while self.pos < len {
            let (letter, n) = self.at(self.pos);
            if letter {
                break;
            }
            self.pos += n;
        }
        if self.pos >= len {
            return None;
        }
        let start = self.pos;
        while self.pos < len {
            let (letter, n) = self.at(self.pos);
            if !letter {
                break;
            }
            self.pos += n;
        }
        Some(&self.text[start..self.pos])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_maximal_runs_of_letters() {
        let w: Vec<_> = words("Hello, world! It's 2024: naïve café—ß").collect();
        assert_eq!(w, ["Hello", "world", "It", "s", "naïve", "café", "ß"]);
    }

    #[test]
    fn letters_are_exactly_categories_l_star() {
        // Lo (CJK, Hebrew), Lm (modifier), Lt (titlecase) are letters.
        assert!(is_letter('中') && is_letter('א') && is_letter('ʰ') && is_letter('ǅ'));
        // Nl and combining marks are alphabetic in Rust but not letters in Go.
        assert!('Ⅻ'.is_alphabetic() && !is_letter('Ⅻ'));
        assert!('\u{093E}'.is_alphabetic() && !is_letter('\u{093E}'));
        assert!('\u{0345}'.is_alphabetic() && !is_letter('\u{0345}'));
        let w: Vec<_> = words("\u{915}\u{92E}\u{93E}\u{932} \u{216B}V").collect();
        assert_eq!(w, ["कम", "ल", "V"]);
    }

    #[test]
    fn replacement_characters_split_words() {
        let text = String::from_utf8_lossy(b"ab\xffcd");
        let w: Vec<_> = words(&text).collect();
        assert_eq!(w, ["ab", "cd"]);
    }
}

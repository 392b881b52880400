//! A fast path for the standard BERT-uncased tokenizer (BertNormalizer, BertPreTokenizer,
//! WordPiece, `[CLS] $A [SEP]`) on ASCII text. Under load (64 connections, the fixture model)
//! 38% of the process's CPU was in `tokenizers`' `encode_fast`, about 45 µs per short sentence:
//! it builds normalized strings with per-character alignments, token strings and offsets that
//! hotserve never reads. [`FastBert`] computes only the ids, with no allocation per word.
//! The rule: it gives exactly the ids and type ids `tokenizers` gives, or it declines (`None`)
//! and the caller uses `tokenizers`. It accepts only a tokenizer of exactly that shape
//! ([`FastBert::from_tokenizer`]) and only pure ASCII text that cannot hold an added token
//! ([`FastBert::encode`]); the model gate also compares both paths on a few texts at load.

use std::collections::HashMap;

use serde_json::{json, Value};

/// The ids of a BERT-uncased tokenizer, computed without `tokenizers`' bookkeeping.
#[derive(Debug)]
pub struct FastBert {
    /// Every vocabulary entry, as a word's first piece is looked up.
    words: HashMap<Box<str>, u32>,
    /// The entries that start with the continuation prefix (`##`), without it, as a word's
    /// later pieces are looked up.
    continuations: HashMap<Box<str>, u32>,
    /// Longest key in `words`, in bytes: longer pieces need not be tried.
    longest_word: usize,
    /// Longest key in `continuations`, in bytes.
    longest_continuation: usize,
    /// `[UNK]`: a word with no split into vocabulary pieces, or too long.
    unk_id: u32,
    /// The template's first special token (`[CLS]`).
    cls_id: u32,
    /// The template's last special token (`[SEP]`).
    sep_id: u32,
    /// WordPiece's `max_input_chars_per_word`: longer words are one `[UNK]`.
    max_word_chars: usize,
    /// Content tokens kept (truncation's `max_length` less `[CLS]` and `[SEP]`), if truncating.
    max_content: Option<usize>,
    /// ASCII bytes an added token's content may start with (either case): a text holding
    /// one is left to `tokenizers`, which splits added tokens out before normalizing.
    added_starts: [bool; 128],
}

/// What BERT's normalizer and pre-tokenizer make of one ASCII byte.
enum Class {
    /// A control character: `clean_text` removes it (without splitting the word).
    Removed,
    /// Space, tab, newline or carriage return: ends a word.
    Space,
    /// ASCII punctuation: a word of its own.
    Punctuation,
    /// Part of a word (lowercased).
    Word,
}

fn class(byte: u8) -> Class {
    match byte {
        b' ' | b'\t' | b'\n' | b'\r' => Class::Space,
        // Every other C0 control and DEL is category Cc, which clean_text drops (vertical tab
        // and form feed too: they are dropped before whitespace is mapped).
        0x00..=0x1f | 0x7f => Class::Removed,
        33..=47 | 58..=64 | 91..=96 | 123..=126 => Class::Punctuation,
        _ => Class::Word,
    }
}

impl FastBert {
    /// The fast path for `tokenizer`, when its pipeline is exactly the BERT-uncased one (see
    /// the module doc) with no padding and no truncation or right-side `LongestFirst`
    /// truncation with stride 0; `None` for anything else.
    pub fn from_tokenizer(tokenizer: &tokenizers::Tokenizer) -> Option<FastBert> {
        let value = serde_json::to_value(tokenizer).ok()?;
        FastBert::from_json(&value)
    }

    /// As [`FastBert::from_tokenizer`], from the tokenizer's JSON form.
    pub fn from_json(value: &Value) -> Option<FastBert> {
        let normalizer = json!({
            "type": "BertNormalizer",
            "clean_text": true,
            "handle_chinese_chars": true,
            "strip_accents": null,
            "lowercase": true,
        });
        if value.get("normalizer")? != &normalizer
            || value.get("pre_tokenizer")? != &json!({"type": "BertPreTokenizer"})
            || !value.get("padding")?.is_null()
        {
            return None;
        }
        let max_content = match value.get("truncation")? {
            Value::Null => None,
            truncation => {
                let object = truncation.as_object()?;
                let max_length = object.get("max_length")?.as_u64()? as usize;
                let expected = json!({
                    "direction": "Right",
                    "max_length": max_length,
                    "strategy": "LongestFirst",
                    "stride": 0,
                });
                if truncation != &expected || max_length < 2 {
                    return None;
                }
                Some(max_length - 2)
            }
        };

        let model = value.get("model")?.as_object()?;
        let mut keys: Vec<&str> = model.keys().map(String::as_str).collect();
        keys.sort_unstable();
        if keys
            != [
                "continuing_subword_prefix",
                "max_input_chars_per_word",
                "type",
                "unk_token",
                "vocab",
            ]
            || model["type"] != "WordPiece"
            || model["unk_token"] != "[UNK]"
            || model["continuing_subword_prefix"] != "##"
        {
            return None;
        }
        let max_word_chars = model["max_input_chars_per_word"].as_u64()? as usize;
        let mut words = HashMap::new();
        let mut continuations = HashMap::new();
        for (token, id) in model["vocab"].as_object()? {
            let id = u32::try_from(id.as_u64()?).ok()?;
            if let Some(rest) = token.strip_prefix("##") {
                continuations.insert(Box::from(rest), id);
            }
            words.insert(Box::from(token.as_str()), id);
        }
        let unk_id = *words.get("[UNK]")?;
        let longest = |map: &HashMap<Box<str>, u32>| map.keys().map(|k| k.len()).max();
        let longest_word = longest(&words).unwrap_or(0);
        let longest_continuation = longest(&continuations).unwrap_or(0);

        let processor = value.get("post_processor")?;
        let single = json!([
            {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
        ]);
        if processor.get("type")? != "TemplateProcessing" || processor.get("single")? != &single {
            return None;
        }
        let special_id = |name: &str| -> Option<u32> {
            let ids = processor.get("special_tokens")?.get(name)?.get("ids")?;
            match ids.as_array()?.as_slice() {
                [id] => u32::try_from(id.as_u64()?).ok(),
                _ => None,
            }
        };
        let cls_id = special_id("[CLS]")?;
        let sep_id = special_id("[SEP]")?;

        let mut added_starts = [false; 128];
        for added in value.get("added_tokens")?.as_array()? {
            let content = added.get("content")?.as_str()?;
            let first = *content.as_bytes().first()?;
            if !first.is_ascii() {
                // An ASCII text, normalized or not, cannot hold it.
                continue;
            }
            if !matches!(class(first), Class::Word | Class::Punctuation) {
                // A token starting with a space or a control: too subtle to reason about.
                return None;
            }
            added_starts[first.to_ascii_lowercase() as usize] = true;
            added_starts[first.to_ascii_uppercase() as usize] = true;
        }

        Some(FastBert {
            words,
            continuations,
            longest_word,
            longest_continuation,
            unk_id,
            cls_id,
            sep_id,
            max_word_chars,
            max_content,
            added_starts,
        })
    }

    /// The ids and type ids of `text` with `[CLS]` and `[SEP]`, exactly as `tokenizers`'
    /// `encode_fast(text, true)` gives them; `None` when the text is not pure ASCII or holds a
    /// byte an added token starts with (the caller then uses `tokenizers`).
    pub fn encode(&self, text: &str) -> Option<(Vec<u32>, Vec<u32>)> {
        if !self.accepts(text) {
            return None;
        }
        let bytes = text.as_bytes();
        let limit = self.max_content.unwrap_or(usize::MAX);
        let mut ids = Vec::with_capacity(bytes.len().min(limit) / 3 + 3);
        ids.push(self.cls_id);
        let mut word = String::with_capacity(32);
        for &byte in bytes {
            if ids.len() > limit {
                break;
            }
            match class(byte) {
                Class::Removed => {}
                Class::Space => self.flush(&mut word, &mut ids),
                Class::Punctuation => {
                    self.flush(&mut word, &mut ids);
                    word.push(byte as char);
                    self.flush(&mut word, &mut ids);
                }
                Class::Word => word.push(byte.to_ascii_lowercase() as char),
            }
        }
        self.flush(&mut word, &mut ids);
        ids.truncate(limit.saturating_add(1));
        ids.push(self.sep_id);
        let type_ids = vec![0; ids.len()];
        Some((ids, type_ids))
    }

    /// Whether [`FastBert::encode`] answers for `text`: pure ASCII with no byte an added token
    /// starts with.
    pub fn accepts(&self, text: &str) -> bool {
        text.bytes()
            .all(|b| b.is_ascii() && !self.added_starts[b as usize])
    }

    /// Appends the WordPiece ids of `word` (if not empty) to `ids` and clears it.
    fn flush(&self, word: &mut String, ids: &mut Vec<u32>) {
        if !word.is_empty() {
            self.word_pieces(word, ids);
            word.clear();
        }
    }

    /// Greedy longest-match-first WordPiece, as `tokenizers` does it: a word longer than
    /// `max_word_chars`, or with a remainder no piece matches, is one `[UNK]`.
    fn word_pieces(&self, word: &str, ids: &mut Vec<u32>) {
        if word.len() > self.max_word_chars {
            ids.push(self.unk_id);
            return;
        }
        let mark = ids.len();
        let mut start = 0;
        while start < word.len() {
            let (map, longest) = if start == 0 {
                (&self.words, self.longest_word)
            } else {
                (&self.continuations, self.longest_continuation)
            };
            let mut end = word.len().min(start + longest);
            let found = loop {
                if end <= start {
                    break None;
                }
                if let Some(&id) = map.get(&word[start..end]) {
                    break Some(id);
                }
                end -= 1;
            };
            match found {
                Some(id) => {
                    ids.push(id);
                    start = end;
                }
                None => {
                    ids.truncate(mark);
                    ids.push(self.unk_id);
                    return;
                }
            }
        }
    }

    /// Whether the fast path agrees with `tokenizer` on `text` (declining counts as agreeing).
    pub fn agrees_with(&self, tokenizer: &tokenizers::Tokenizer, text: &str) -> bool {
        let Some((ids, type_ids)) = self.encode(text) else {
            return true;
        };
        match tokenizer.encode_fast(text, true) {
            Ok(encoding) => encoding.get_ids() == ids && encoding.get_type_ids() == type_ids,
            Err(_) => false,
        }
    }
}

/// Texts the gate encodes both ways at load, besides the model's own examples: punctuation
/// runs, digits, case, every kind of whitespace, controls, long and unknown words.
pub const CHECK_TEXTS: &[&str] = &[
    "",
    "hotserve warm-up",
    "The movie was GREAT!!! 10/10, would watch again...",
    "don't can't won't it's (really) \"quoted\" {braces} <angle> a+b=c; x:y @home #1 $5 %",
    "tabs\tnewlines\nreturns\r\x0bvertical\x0cfeed\x01control\x7fdel",
    "supercalifragilisticexpialidocious antidisestablishmentarianism qzxqzxqzx",
    "1234567890 3.14159 1,000,000 2026-11-29",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_classified_as_bert_does() {
        let check = |byte: u8, expected: &str| {
            let got = match class(byte) {
                Class::Removed => "removed",
                Class::Space => "space",
                Class::Punctuation => "punctuation",
                Class::Word => "word",
            };
            assert_eq!(got, expected, "byte {byte:#04x}");
        };
        check(b' ', "space");
        check(b'\t', "space");
        check(b'\n', "space");
        check(b'\r', "space");
        check(0x0b, "removed");
        check(0x0c, "removed");
        check(0x00, "removed");
        check(0x1f, "removed");
        check(0x7f, "removed");
        check(b'!', "punctuation");
        check(b'/', "punctuation");
        check(b'@', "punctuation");
        check(b'`', "punctuation");
        check(b'~', "punctuation");
        check(b'0', "word");
        check(b'A', "word");
        check(b'z', "word");
    }
}

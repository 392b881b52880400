//! Model names: what a name hotserve serves a model under may be ([`is_model_name`]; the
//! configuration checks names with it), and the name a registered model is served under when
//! it is found in the registry rather than configured ([`served_name`]).

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::files::hex;

/// The longest model name.
pub const MAX_MODEL_NAME: usize = 64;

/// Whether `name` may name a model: 1 to [`MAX_MODEL_NAME`] ASCII letters, digits, `_`, `.` or
/// `-`, starting with a letter or a digit. Such a name is one path segment of every route
/// (`/models/<name>/predict`, `/v2/models/<name>/infer`), a metric label and the start of a
/// cache folder's name, all without quoting.
pub fn is_model_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    first && rest && name.len() <= MAX_MODEL_NAME
}

/// How much of an escaped name the hashed form keeps before its `..` and hash.
const HASHED_PREFIX: usize = MAX_MODEL_NAME - 2 - 16;

/// The model name the registered model `registered` is served under: always a model name
/// ([`is_model_name`]), a different one for each registered name, and the registered name
/// itself when it is made of letters, digits, `_` and `-` (starting with a letter or digit) and
/// is 64 bytes at most, as most are.
///
/// Every other byte of its UTF-8 is written as two uppercase hex digits followed by a `.`
/// (`.` itself too, and `_` or `-` in first place): `Fraud Detector` is `Fraud20.Detector`,
/// `main.default.fraud` is `main2E.default2E.fraud`, `_internal` is `5F.internal`, `modèle`
/// is `modC3.A8.le`. A `.` thus always ends an escape and follows its two hex digits, so the
/// name can be read back and no two registered names share one. An escaped name longer than
/// 64 bytes (or an empty registered name, which MLflow refuses) is cut to its first 46 bytes
/// (`0` for an empty one), followed by `..` and the first 16 hex digits of the SHA-256 of the
/// registered name: `..` never appears in an escaped name, so these never meet one, and two of
/// them meet only if 64 bits of SHA-256 do.
pub fn served_name(registered: &str) -> String {
    let mut escaped = String::with_capacity(registered.len());
    for (index, byte) in registered.bytes().enumerate() {
        let kept = byte.is_ascii_alphanumeric() || (index > 0 && matches!(byte, b'_' | b'-'));
        if kept {
            escaped.push(char::from(byte));
        } else {
            let _ = write!(escaped, "{byte:02X}.");
        }
    }
    if !escaped.is_empty() && escaped.len() <= MAX_MODEL_NAME {
        return escaped;
    }
    escaped.truncate(HASHED_PREFIX);
    if escaped.is_empty() {
        escaped.push('0');
    }
    let hash = hex(&Sha256::digest(registered.as_bytes()));
    format!("{escaped}..{}", &hash[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(registered: &str, expected: &str) {
        let served = served_name(registered);
        assert_eq!(served, expected, "served_name({registered:?})");
        assert!(is_model_name(&served), "{served:?} is a model name");
    }

    #[test]
    fn served_names() {
        check("fraud", "fraud");
        check("fraud-detector_v2", "fraud-detector_v2");
        check("Fraud Detector", "Fraud20.Detector");
        check("main.default.fraud", "main2E.default2E.fraud");
        check("_internal", "5F.internal");
        check("-x", "2D.x");
        check("x_", "x_");
        check("modèle", "modC3.A8.le");
        check("a/b", "a2F.b");
        check("a%20b", "a25.20b");
        check("20.", "202E.");
        check(&"m".repeat(64), &"m".repeat(64));
        // Longer than 64 once escaped, or empty: cut, `..`, and a hash.
        let long = "m".repeat(65);
        let hash = |name: &str| hex(&Sha256::digest(name.as_bytes()))[..16].to_string();
        check(&long, &format!("{}..{}", "m".repeat(46), hash(&long)));
        check(
            &format!("{}.x", "m".repeat(60)),
            &format!("{}2E.x", "m".repeat(60)),
        );
        let dotted = format!("{}.x", "m".repeat(61));
        check(&dotted, &format!("{}..{}", "m".repeat(46), hash(&dotted)));
        check("", &format!("0..{}", hash("")));
    }

    /// Reads an escaped name back (not the hashed form); what makes `served_name` injective.
    fn unescape(served: &str) -> Vec<u8> {
        let bytes = served.as_bytes();
        let mut out = Vec::new();
        let mut index = 0;
        while index < bytes.len() {
            if bytes.get(index + 2) == Some(&b'.') {
                let hex = std::str::from_utf8(&bytes[index..index + 2]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                index += 3;
            } else {
                out.push(bytes[index]);
                index += 1;
            }
        }
        out
    }

    #[test]
    fn every_name_is_served_under_a_name_of_its_own() {
        // Every string of up to three characters from a small alphabet, where collisions would
        // show: escapes, the characters kept, and hex digits that look like escapes.
        let alphabet = ['a', 'F', '2', 'E', '.', '_', '-', ' ', 'é'];
        let mut names = vec![String::new()];
        for _ in 0..3 {
            let longer: Vec<String> = names
                .iter()
                .filter(|name| name.chars().count() == names.last().unwrap().chars().count())
                .flat_map(|name| alphabet.iter().map(move |c| format!("{name}{c}")))
                .collect();
            names.extend(longer);
        }
        let mut seen = std::collections::HashMap::new();
        for name in &names {
            let served = served_name(name);
            assert!(is_model_name(&served), "{name:?} -> {served:?}");
            if !served.contains("..") {
                assert_eq!(unescape(&served), name.as_bytes(), "{name:?} -> {served:?}");
            }
            if let Some(other) = seen.insert(served.clone(), name) {
                panic!("{other:?} and {name:?} are both served as {served:?}");
            }
        }
        assert_eq!(seen.len(), 1 + 9 + 81 + 729);
    }

    #[test]
    fn model_names() {
        let cases = [
            ("sentiment", true),
            ("a", true),
            ("9lives", true),
            ("a.b_c-d", true),
            ("", false),
            ("_a", false),
            (".a", false),
            ("-a", false),
            ("a b", false),
            ("a/b", false),
            ("é", false),
        ];
        for (name, valid) in cases {
            assert_eq!(is_model_name(name), valid, "{name:?}");
        }
        assert!(is_model_name(&"a".repeat(64)));
        assert!(!is_model_name(&"a".repeat(65)));
    }
}

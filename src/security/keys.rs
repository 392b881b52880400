//! API keys: with `api_keys_file` set, the routes that need one ([`crate::route::Route::needs_key`])
//! take `Authorization: Bearer <key>` with a key from that file. The keys file ([`ApiKeys`]) is a
//! [`Watched`] credential, reloaded when it changes; presented keys are compared by SHA-256
//! digest, in constant time (`subtle`), against every key. [`check`] is the one decision, and
//! its refusal ([`AuthError`]) is mapped to a 401 by HTTP and to UNAUTHENTICATED by gRPC.

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::credentials::{Credential, CredentialError, Watched};

/// The API keys in use, reloaded when `api_keys_file` changes.
pub type ApiKeysFile = Watched<ApiKeys>;

/// The keys of `api_keys_file`, kept as SHA-256 digests.
pub struct ApiKeys {
    /// One digest per key, in file order.
    digests: Vec<[u8; 32]>,
}

/// What `/health` shows of the API keys: how many there are (never the keys).
#[derive(Debug, serde::Serialize)]
pub struct KeysDetails {
    pub keys: usize,
}

/// Why a request was refused its API key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("this route needs an API key; send Authorization: Bearer <key> with a key from api_keys_file")]
    Missing,
    /// A key that is not in the file.
    #[error("the API key is not valid; send a key listed in api_keys_file")]
    Wrong,
}

/// Lets a request through when no keys are configured or the route needs none (`needs_key`),
/// or when its `Authorization` header value carries one of the keys; else says why not.
pub fn check(
    keys: Option<&ApiKeysFile>,
    needs_key: bool,
    authorization: Option<&[u8]>,
) -> Result<(), AuthError> {
    let Some(keys) = keys else {
        return Ok(());
    };
    if !needs_key {
        return Ok(());
    }
    match authorization.and_then(bearer) {
        None => Err(AuthError::Missing),
        Some(key) if keys.current().contains(key) => Ok(()),
        Some(_) => Err(AuthError::Wrong),
    }
}

/// Whether `given` is `expected`, in time that does not depend on where they differ (the admin
/// token).
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.ct_eq(expected).into()
}

/// The token of an `Authorization: Bearer <token>` value (the scheme in any case).
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, token) = value.split_at(space);
    let token = token.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty()).then_some(token)
}

impl ApiKeys {
    /// Whether `presented` is one of the keys. Every key is compared, in constant time, by
    /// digest: the time taken says neither which key matched nor how long the keys are.
    pub fn contains(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        self.digests.iter().fold(false, |found, digest| {
            found | bool::from(digest.ct_eq(&presented))
        })
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether there are none (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }
}

impl Credential for ApiKeys {
    const NAME: &'static str = "api_keys";
    const SETTINGS: &'static [&'static str] = &["api_keys_file"];
    const WHAT: &'static str = "API keys";

    fn parse(files: &[(PathBuf, Vec<u8>)]) -> Result<ApiKeys, CredentialError> {
        let [(path, text)] = files else {
            unreachable!("API keys are read from one file");
        };
        let keys = parse_keys(text).map_err(|(line, why)| CredentialError::BadApiKey {
            path: path.clone(),
            line,
            why,
        })?;
        if keys.is_empty() {
            return Err(CredentialError::NoApiKeys { path: path.clone() });
        }
        Ok(ApiKeys {
            digests: keys.iter().map(|key| Sha256::digest(key).into()).collect(),
        })
    }

    type Details = KeysDetails;

    fn describe(&self) -> KeysDetails {
        KeysDetails { keys: self.len() }
    }
}

/// The keys of a keys file: one per line, surrounding spaces ignored; blank lines and lines
/// starting with `#` skipped. A key is printable ASCII without spaces (what a bearer token
/// can carry). Errors name the line (from 1) and what is wrong with it. Pure.
pub fn parse_keys(text: &[u8]) -> Result<Vec<&[u8]>, (usize, &'static str)> {
    let mut keys = Vec::new();
    for (index, line) in text.split(|b| *b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        if line.iter().any(|b| b.is_ascii_whitespace()) {
            return Err((index + 1, "has a space inside the key"));
        }
        if !line.iter().all(|b| b.is_ascii_graphic()) {
            return Err((index + 1, "has a character that is not printable ASCII"));
        }
        keys.push(line);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[rustfmt::skip]
    fn keys_files() {
        let check = |text: &str, expected: Result<Vec<&str>, (usize, &str)>| {
            let expected = expected.map(|keys| keys.iter().map(|k| k.as_bytes()).collect::<Vec<_>>());
            assert_eq!(parse_keys(text.as_bytes()), expected, "{text:?}");
        };
        check("", Ok(vec![]));
        check("k1", Ok(vec!["k1"]));
        check("k1\nk2\n", Ok(vec!["k1", "k2"]));
        check("# team a\nk1\n\n  \n# team b\n  k2  \r\n", Ok(vec!["k1", "k2"]));
        check("k1#not-a-comment", Ok(vec!["k1#not-a-comment"]));
        check("  # indented comment\nk1", Ok(vec!["k1"]));
        check("k1\nk 2\n", Err((2, "has a space inside the key")));
        check("k1\tk2", Err((1, "has a space inside the key")));
        check("clé", Err((1, "has a character that is not printable ASCII")));
        check("k\u{7f}", Err((1, "has a character that is not printable ASCII")));
    }

    #[test]
    #[rustfmt::skip]
    fn bearer_tokens() {
        let check = |value: &str, expected: Option<&str>| {
            assert_eq!(bearer(value.as_bytes()), expected.map(str::as_bytes), "{value:?}");
        };
        check("Bearer abc", Some("abc"));
        check("bearer abc", Some("abc"));
        check("BEARER  abc ", Some("abc"));
        check("Bearer ", None);
        check("Bearer", None);
        check("Basic dXNlcjpwYXNz", None);
        check("Bearerabc", None);
        check("", None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"admin-secret", b"admin-secret"));
        assert!(!same_secret(b"admin-secre", b"admin-secret"));
        assert!(!same_secret(b"admin-secreT", b"admin-secret"));
        assert!(!same_secret(b"", b"admin-secret"));
    }

    #[test]
    fn keys_match_exactly() {
        let keys = ApiKeys::parse(&[(PathBuf::from("k"), b"alpha\nbeta-2\n".to_vec())]).unwrap();
        assert_eq!(keys.len(), 2);
        for (presented, expected) in [
            ("alpha", true),
            ("beta-2", true),
            ("alph", false),
            ("alphaa", false),
            ("ALPHA", false),
            ("", false),
        ] {
            assert_eq!(keys.contains(presented.as_bytes()), expected, "{presented}");
        }
    }

    #[test]
    fn keys_file_errors_name_the_file_and_line() {
        let parse = |text: &str| {
            ApiKeys::parse(&[(
                PathBuf::from("/etc/hotserve/keys"),
                text.as_bytes().to_vec(),
            )])
            .err()
            .map(|err| err.to_string())
        };
        assert_eq!(
            parse("# only a comment\n").as_deref(),
            Some("/etc/hotserve/keys holds no API key; put one key per line (an empty file would refuse every request)")
        );
        assert_eq!(
            parse("ok\nnot ok\n").as_deref(),
            Some("line 2 of /etc/hotserve/keys has a space inside the key; put one key per line, comments after # at the start of a line")
        );
        assert_eq!(parse("ok\n"), None);
    }
}

//! Who may call which route. With `api_keys_file` set, the model routes (predictions and
//! metadata) need `Authorization: Bearer <key>` with a key from that file; the probes and
//! `/metrics` stay open unless `auth_health` / `auth_metrics` say otherwise; the admin route
//! and the webhook keep their own credentials (the admin token, the HMAC signature). Which
//! class a route is in is [`access`], a pure function of the route's name, and it fails
//! closed: a route it does not name is a model route. The keys file ([`ApiKeys`]) is a
//! [`Watched`] credential, reloaded when it changes; presented keys are compared by SHA-256
//! digest, in constant time, against every key.

use std::path::PathBuf;

use hyper::header::{HeaderMap, AUTHORIZATION};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::credentials::{Credential, CredentialError, Watched};
use super::error::ApiError;
use super::routes::constant_time_eq;
use crate::config::Config;

/// The API keys in use, reloaded when `api_keys_file` changes.
pub type ApiKeysFile = Watched<ApiKeys>;

/// The keys of `api_keys_file`, kept as SHA-256 digests.
pub struct ApiKeys {
    /// One digest per key, in file order.
    digests: Vec<[u8; 32]>,
}

/// What a route needs before it is served, when `api_keys_file` is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Predictions and model metadata, and every route not named in [`access`]: an API key.
    Model,
    /// Health and readiness probes and `/version`: open unless `auth_health`.
    Probe,
    /// `/metrics`: open unless `auth_metrics`.
    Metrics,
    /// Routes with credentials of their own (`/admin/reload`: the admin token;
    /// `/hooks/mlflow`: the webhook signature): never an API key.
    OwnCredentials,
}

/// The class of the route named `route` (the name `routes::resolve` gives it, as in metrics).
/// Pure. A route added later is a model route until it is named here.
pub fn access(route: &str) -> Access {
    match route {
        "/health"
        | "/health/live"
        | "/health/ready"
        | "/ping"
        | "/version"
        | "/models/{name}/ready"
        | "/v2"
        | "/v2/health/live"
        | "/v2/health/ready"
        | "/v2/models/{name}/ready"
        | "/v2/models/{name}/versions/{version}/ready" => Access::Probe,
        "/metrics" => Access::Metrics,
        "/admin/reload" | "/admin/promote" | "/admin/reject" | "/hooks/mlflow" => {
            Access::OwnCredentials
        }
        _ => Access::Model,
    }
}

/// Whether a route of class `access` needs an API key under `config`.
pub fn needs_key(access: Access, config: &Config) -> bool {
    match access {
        Access::Model => true,
        Access::Probe => config.auth_health,
        Access::Metrics => config.auth_metrics,
        Access::OwnCredentials => false,
    }
}

/// Lets a request for `route` through, or says why not: a 401 with `WWW-Authenticate`.
pub fn check(
    keys: Option<&ApiKeysFile>,
    config: &Config,
    route: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(keys) = keys else {
        return Ok(());
    };
    if !needs_key(access(route), config) {
        return Ok(());
    }
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|value| bearer(value.as_bytes()));
    match presented {
        None => Err(ApiError::api_key_missing()),
        Some(key) if keys.current().contains(key) => Ok(()),
        Some(_) => Err(ApiError::api_key_wrong()),
    }
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
            found | constant_time_eq(digest, &presented)
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

    fn describe(&self) -> Value {
        json!({ "keys": self.len() })
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
    #[rustfmt::skip]
    fn route_classes() {
        let check = |route: &str, expected: Access| assert_eq!(access(route), expected, "{route}");
        check("/predict", Access::Model);
        check("/predict/batch", Access::Model);
        check("/invocations", Access::Model);
        check("/v1/model", Access::Model);
        check("/models/{name}", Access::Model);
        check("/models/{name}/predict", Access::Model);
        check("/models/{name}/predict/batch", Access::Model);
        check("/models/{name}/invocations", Access::Model);
        check("/models/{name}/ready", Access::Probe);
        check("/health", Access::Probe);
        check("/health/live", Access::Probe);
        check("/health/ready", Access::Probe);
        check("/ping", Access::Probe);
        check("/version", Access::Probe);
        check("/metrics", Access::Metrics);
        check("/admin/reload", Access::OwnCredentials);
        check("/hooks/mlflow", Access::OwnCredentials);
        check("/admin/promote", Access::OwnCredentials);
        check("/admin/reject", Access::OwnCredentials);
        check("/v2", Access::Probe);
        check("/v2/health/live", Access::Probe);
        check("/v2/health/ready", Access::Probe);
        check("/v2/models/{name}/ready", Access::Probe);
        check("/v2/models/{name}/versions/{version}/ready", Access::Probe);
        check("/v2/models/{name}", Access::Model);
        check("/v2/models/{name}/versions/{version}/infer", Access::Model);
        // Fails closed: unknown paths and routes not classified yet need a key.
        check("other", Access::Model);
        check("/v2/models/{name}/infer", Access::Model);
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

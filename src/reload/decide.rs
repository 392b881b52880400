//! What a check does with what it found: the decision, as a pure function of the live model,
//! the version found, what is known to be bad and what is cached.
//!
//! The rules, in order:
//! 1. The version found is the one already live (same name, version and listing or content
//!    digest): nothing to do. A re-registered version with other files is not "the same".
//! 2. It failed the gate before: skip it without downloading it again, until the registry
//!    points somewhere else (a new version, or the files under this version change).
//! 3. A validated copy with the same listing is in the cache (a rollback to a recent version,
//!    or a restart): load it from disk, no download.
//! 4. Otherwise fetch it (download from the registry, or stage a local copy), then validate.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::cache::Manifest;
use crate::files::hex;
use crate::registry::Resolution;

/// Which model a check is about. Two equal identities mean the same files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The registered model name (or logged-model id, run id, local directory name).
    pub name: String,
    /// The registry version (or logged-model id, run id, `local-<digest>`).
    pub version: String,
    /// The registry listing key ([`listing_key`]) or, for local models, the content digest.
    pub key: String,
}

/// What one check should do.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// The live model is already this one.
    KeepLive,
    /// This version failed the gate before; `why` is what went wrong then.
    SkipKnownBad { why: String },
    /// A validated copy with the same listing is in the cache: load it from there.
    LoadCached(Box<Manifest>),
    /// Download or stage it, then validate it.
    Fetch,
}

/// Decides what to do with `found` (rules in the module doc).
pub fn decide(
    live: Option<&Identity>,
    found: &Identity,
    known_bad: &HashMap<String, String>,
    cached: Option<&Manifest>,
) -> Action {
    if live == Some(found) {
        return Action::KeepLive;
    }
    if let Some(why) = known_bad.get(&found.key) {
        return Action::SkipKnownBad { why: why.clone() };
    }
    match cached {
        Some(manifest) if manifest.listing_key == found.key => {
            Action::LoadCached(Box::new(manifest.clone()))
        }
        _ => Action::Fetch,
    }
}

/// The identity of what the registry resolved to. Logged models (MLflow 3) and runs have no
/// registered name or version, so their id stands in for both.
pub fn identity_of(resolution: &Resolution) -> Identity {
    let fallback = || {
        resolution
            .model_id
            .clone()
            .or_else(|| resolution.run_id.clone())
    };
    Identity {
        name: resolution
            .name
            .clone()
            .or_else(fallback)
            .unwrap_or_else(|| "model".into()),
        version: resolution
            .version
            .clone()
            .or_else(fallback)
            .unwrap_or_else(|| "0".into()),
        key: listing_key(resolution),
    }
}

/// Identifies a registry listing: name, version, ids, artifact location and every
/// (path, size), in a stable order. Files changed under the same version change the key.
pub fn listing_key(resolution: &Resolution) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "{:?}|{:?}|{:?}|{:?}|{}\n",
        resolution.name,
        resolution.version,
        resolution.model_id,
        resolution.run_id,
        resolution.artifact_uri
    ));
    let mut files: Vec<_> = resolution
        .files
        .iter()
        .map(|f| (f.path.clone(), f.size))
        .collect();
    files.sort();
    for (path, size) in files {
        hasher.update(format!("{path} {size:?}\n"));
    }
    hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RemoteFile;

    fn id(version: &str, key: &str) -> Identity {
        Identity {
            name: "sentiment".into(),
            version: version.into(),
            key: key.into(),
        }
    }

    fn cached(key: &str) -> Manifest {
        Manifest {
            uri: "models:/sentiment@champion".into(),
            name: "sentiment".into(),
            version: "2".into(),
            aliases: vec![],
            model_id: None,
            run_id: None,
            listing_key: key.into(),
            digests: vec![],
            dir: "/cache/sentiment/2".into(),
            pointer_target: None,
        }
    }

    /// (live, found, known bad keys, cached listing key, expected action)
    fn check(
        live: Option<Identity>,
        found: Identity,
        bad: &[&str],
        cached_key: Option<&str>,
        expected: Action,
    ) {
        let known_bad: HashMap<String, String> = bad
            .iter()
            .map(|key| (key.to_string(), format!("{key} failed the gate")))
            .collect();
        let manifest = cached_key.map(cached);
        assert_eq!(
            decide(live.as_ref(), &found, &known_bad, manifest.as_ref()),
            expected,
            "live {live:?}, found {found:?}, bad {bad:?}, cached {cached_key:?}"
        );
    }

    #[test]
    fn decisions() {
        let skip = |key: &str| Action::SkipKnownBad {
            why: format!("{key} failed the gate"),
        };
        check(
            Some(id("2", "k2")),
            id("2", "k2"),
            &[],
            None,
            Action::KeepLive,
        );
        check(
            Some(id("2", "k2")),
            id("2", "k2"),
            &["k2"],
            None,
            Action::KeepLive,
        );
        check(Some(id("1", "k1")), id("2", "k2"), &[], None, Action::Fetch);
        check(None, id("2", "k2"), &[], None, Action::Fetch);
        check(
            Some(id("1", "k1")),
            id("2", "k2"),
            &["k2"],
            None,
            skip("k2"),
        );
        check(None, id("2", "k2"), &["k2"], Some("k2"), skip("k2"));
        check(
            Some(id("1", "k1")),
            id("2", "k2"),
            &["k1"],
            None,
            Action::Fetch,
        );
        check(
            Some(id("1", "k1")),
            id("2", "k2"),
            &[],
            Some("k2"),
            Action::LoadCached(Box::new(cached("k2"))),
        );
        check(
            None,
            id("2", "k2"),
            &[],
            Some("k2"),
            Action::LoadCached(Box::new(cached("k2"))),
        );
        // Same version, files changed in the registry: a new listing, fetched again.
        check(
            Some(id("2", "k2")),
            id("2", "k2b"),
            &[],
            Some("k2"),
            Action::Fetch,
        );
        // A version that was bad, re-registered with other files, is tried again.
        check(
            Some(id("1", "k1")),
            id("2", "k2b"),
            &["k2"],
            None,
            Action::Fetch,
        );
    }

    fn bare() -> Resolution {
        Resolution {
            uri: "models:/sentiment@champion".into(),
            name: None,
            version: None,
            aliases: vec![],
            stage: None,
            model_id: None,
            run_id: None,
            status: None,
            artifact_uri: "mlflow-artifacts:/1/models/m-1/artifacts".into(),
            files: vec![],
        }
    }

    fn resolution(files: &[(&str, Option<u64>)]) -> Resolution {
        Resolution {
            name: Some("sentiment".into()),
            version: Some("3".into()),
            files: files
                .iter()
                .map(|(path, size)| RemoteFile {
                    path: path.to_string(),
                    size: *size,
                })
                .collect(),
            ..bare()
        }
    }

    #[test]
    fn listing_keys_ignore_order_and_see_sizes() {
        let a = resolution(&[("MLmodel", Some(10)), ("model.onnx", Some(20))]);
        let b = resolution(&[("model.onnx", Some(20)), ("MLmodel", Some(10))]);
        let c = resolution(&[("MLmodel", Some(10)), ("model.onnx", Some(21))]);
        assert_eq!(listing_key(&a), listing_key(&b));
        assert_ne!(listing_key(&a), listing_key(&c));
    }

    #[test]
    fn identities_fall_back_to_ids() {
        let registered = identity_of(&resolution(&[]));
        assert_eq!(
            (registered.name.as_str(), registered.version.as_str()),
            ("sentiment", "3")
        );
        let logged = identity_of(&Resolution {
            model_id: Some("m-abc".into()),
            ..bare()
        });
        assert_eq!(
            (logged.name.as_str(), logged.version.as_str()),
            ("m-abc", "m-abc")
        );
        let run = identity_of(&Resolution {
            run_id: Some("r1".into()),
            ..bare()
        });
        assert_eq!((run.name.as_str(), run.version.as_str()), ("r1", "r1"));
        let bare = identity_of(&bare());
        assert_eq!((bare.name.as_str(), bare.version.as_str()), ("model", "0"));
    }
}

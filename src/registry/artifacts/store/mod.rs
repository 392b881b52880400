//! Object stores read directly, through the `object_store` crate: `s3://` (AWS and
//! S3-compatible stores such as MinIO or Ceph), `gs://`, `wasbs://` / `abfss://` (Azure Blob and
//! ADLS Gen2) and plain `http(s)://` servers that list with WebDAV. This is how hotserve reads an
//! MLflow server that does not proxy artifacts (`--no-serve-artifacts`), and a bucket named as
//! `MODEL_URI` without MLflow.
//!
//! Credentials come from the variables MLflow's own clients read (boto3, google-cloud-storage,
//! azure-storage-blob), through the same environment closure as the MLflow settings
//! ([`credentials`]: [`StoreSettings`], AWS profiles, one client per bucket); their values are
//! held in `Secret`s and never reach a message; error texts are redacted ([`redact`]). A
//! listing records each object's ETag (or last-modified time): downloads ask for exactly the
//! listed version (`If-Match`), and [`Snapshot`]s taken before and after a download must agree,
//! so a model that is being uploaded is never loaded. Retries with backoff and jitter are the
//! crate's, configured from `MLFLOW_HTTP_REQUEST_*`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt as _;
use object_store::path::Path as StorePath;
use object_store::GetOptions;
use sha2::{Digest as _, Sha256};

mod credentials;

pub(crate) use credentials::Stores;
pub use credentials::{StoreSettings, VARIABLES};

use super::sink::{unsafe_path, Sink, MAX_FILES};
use crate::files::{confine, hex, FileDigest};
pub use crate::registry::location::{Store, StoreLocation};
use crate::registry::{RegistryError, RemoteFile};

/// What reading an object store needs of the MLflow client settings: the store credentials
/// and the `MLFLOW_HTTP_REQUEST_*` timeout and retries (`MlflowSettings::store_access`).
#[derive(Clone, Debug)]
pub struct Access {
    /// The store variables (`AWS_*`, `MLFLOW_S3_*`, `GOOGLE_*`, `AZURE_*`).
    pub stores: StoreSettings,
    /// Connect timeout and longest silence while reading.
    pub request_timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Retry `n` (from 2) waits `factor * 2^(n-1)` s.
    pub backoff_factor: f64,
}

/// One object as listed, with what identifies its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    /// Path relative to the location's prefix.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The object's ETag, when the store has one.
    pub e_tag: Option<String>,
    /// Last-modified time, RFC 3339.
    pub modified: String,
}

/// A listing of a location, sorted by path: what a download is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot(pub Vec<Listed>);

impl Snapshot {
    /// The files, as the registry layer describes them.
    pub fn files(&self) -> Vec<RemoteFile> {
        self.0
            .iter()
            .map(|f| RemoteFile {
                path: f.path.clone(),
                size: Some(f.size),
            })
            .collect()
    }

    /// A short digest of every (path, size, ETag or last-modified): changes whenever any
    /// object is added, removed or rewritten. Bucket `MODEL_URI`s use it as their version.
    pub fn version(&self) -> String {
        let mut hasher = Sha256::new();
        for file in &self.0 {
            let tag = file.e_tag.as_deref().unwrap_or(&file.modified);
            hasher.update(format!("{} {} {tag}\n", file.path, file.size));
        }
        hex(&hasher.finalize())[..12].to_string()
    }

    /// What differs from `later`, in words, or `None` when nothing does.
    pub fn difference(&self, later: &Snapshot) -> Option<String> {
        let before: BTreeMap<&str, &Listed> = self.0.iter().map(|f| (f.path.as_str(), f)).collect();
        let after: BTreeMap<&str, &Listed> = later.0.iter().map(|f| (f.path.as_str(), f)).collect();
        let mut changes = Vec::new();
        for (path, file) in &before {
            match after.get(path) {
                None => changes.push(format!("'{path}' was removed")),
                Some(now) if now != file => changes.push(format!("'{path}' was rewritten")),
                Some(_) => {}
            }
        }
        for path in after.keys().filter(|p| !before.contains_key(*p)) {
            changes.push(format!("'{path}' was added"));
        }
        (!changes.is_empty()).then(|| changes.join(", "))
    }
}

/// Lists every object below `location`, sorted by path.
pub(crate) async fn list(
    stores: &Stores,
    settings: &Access,
    uri: &str,
    location: &StoreLocation,
) -> Result<Snapshot, RegistryError> {
    let store = stores.open(settings, uri, &location.store).await?;
    let prefix = (!location.prefix.is_empty()).then(|| StorePath::from(location.prefix.as_str()));
    let mut listing = store.list(prefix.as_ref());
    let mut files = Vec::new();
    loop {
        let next = tokio::time::timeout(settings.request_timeout, listing.next()).await;
        let meta = match next {
            Err(_) => return Err(silent(uri, &location.store, settings.request_timeout)),
            Ok(None) => break,
            Ok(Some(Err(err))) => return Err(store_error(uri, location, err)),
            Ok(Some(Ok(meta))) => meta,
        };
        let key = meta.location.as_ref();
        let path = match location.prefix.as_str() {
            "" => key,
            prefix => key
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or(key),
        };
        confine(path).map_err(|reason| unsafe_path(uri, path, reason.to_string()))?;
        if files.len() >= MAX_FILES {
            return Err(unsafe_path(
                uri,
                path,
                "the listing is implausibly large".into(),
            ));
        }
        files.push(Listed {
            path: path.to_string(),
            size: meta.size,
            e_tag: meta.e_tag,
            modified: meta.last_modified.to_rfc3339(),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Snapshot(files))
}

/// Streams `file` (listed in `location`) into `target`, which must not exist, asking for the
/// listed version only; stops as soon as more bytes arrive than were listed.
pub(crate) async fn fetch(
    stores: &Stores,
    settings: &Access,
    uri: &str,
    location: &StoreLocation,
    file: &Listed,
    target: &Path,
    progress: &crate::registry::Progress,
) -> Result<FileDigest, RegistryError> {
    let store = stores.open(settings, uri, &location.store).await?;
    let key = match location.prefix.as_str() {
        "" => file.path.clone(),
        prefix => format!("{prefix}/{}", file.path),
    };
    let options = GetOptions {
        if_match: file.e_tag.clone(),
        ..GetOptions::default()
    };
    let timeout = settings.request_timeout;
    let key = StorePath::from(key);
    let got = match tokio::time::timeout(timeout, store.get_opts(&key, options)).await {
        Err(_) => return Err(silent(uri, &location.store, timeout)),
        Ok(Ok(got)) => got,
        Ok(Err(err)) => {
            // Stores answer a failed If-Match with 412, some emulators with 403: either way,
            // an object whose ETag moved was rewritten, which is not a refusal.
            let rewritten = match (&file.e_tag, store.head(&key).await) {
                (Some(listed), Ok(now)) => now.e_tag.as_ref() != Some(listed),
                _ => false,
            };
            return Err(if rewritten {
                RegistryError::ListingChanged {
                    uri: uri.to_string(),
                    artifact_uri: location.display(),
                    what: format!("'{}' was rewritten", file.path),
                }
            } else {
                store_error(uri, location, err)
            });
        }
    };
    let mut body = got.into_stream();
    let mut sink = Sink::create(uri, target, progress).await?;
    loop {
        let chunk = match tokio::time::timeout(timeout, body.next()).await {
            Err(_) => return Err(silent(uri, &location.store, timeout)),
            Ok(None) => break,
            Ok(Some(Err(err))) => {
                return Err(RegistryError::StoreUnavailable {
                    uri: uri.to_string(),
                    store: location.store.display(),
                    reason: format!(
                        "the download of '{}' broke after {} bytes: {}",
                        file.path,
                        sink.received(),
                        redact(&error_chain(&err))
                    ),
                })
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        let received = sink.received() + chunk.len() as u64;
        if received > file.size {
            return Err(size_mismatch(uri, file, received));
        }
        sink.write(&chunk).await?;
    }
    if sink.received() != file.size {
        return Err(size_mismatch(uri, file, sink.received()));
    }
    sink.finish(&file.path).await
}

fn size_mismatch(uri: &str, file: &Listed, actual: u64) -> RegistryError {
    RegistryError::SizeMismatch {
        uri: uri.to_string(),
        path: file.path.clone(),
        expected: file.size,
        actual,
    }
}

/// The largest object read as a pointer.
const MAX_POINTER: u64 = 1024;

/// Follows a pointer object: when `location`'s whole prefix is the key of one small object
/// (`s3://bucket/sentiment/current`), its text names the model's location. `None` when there
/// is no such object. Publishing a version is then one atomic `PUT` of the pointer, after
/// every file of the version is in place under its own prefix.
pub(crate) async fn follow_pointer(
    stores: &Stores,
    settings: &Access,
    uri: &str,
    location: &StoreLocation,
) -> Result<Option<StoreLocation>, RegistryError> {
    if location.prefix.is_empty() {
        return Ok(None);
    }
    let store = stores.open(settings, uri, &location.store).await?;
    let key = StorePath::from(location.prefix.as_str());
    let timeout = settings.request_timeout;
    let meta = match tokio::time::timeout(timeout, store.head(&key)).await {
        Err(_) => return Err(silent(uri, &location.store, timeout)),
        Ok(Err(object_store::Error::NotFound { .. })) => return Ok(None),
        Ok(Err(err)) => return Err(store_error(uri, location, err)),
        Ok(Ok(meta)) => meta,
    };
    let refused = |reason: String| RegistryError::UnsupportedArtifactUri {
        uri: uri.to_string(),
        artifact_uri: location.display(),
        reason,
    };
    if meta.size > MAX_POINTER {
        return Err(refused(format!(
            "it is one object of {} bytes, not a folder of model files nor a pointer (at most \
             {MAX_POINTER} bytes naming the model's folder); point MODEL_URI at the folder",
            meta.size
        )));
    }
    let read = async {
        let got = store.get(&key).await?;
        got.bytes().await
    };
    let bytes = match tokio::time::timeout(timeout, read).await {
        Err(_) => return Err(silent(uri, &location.store, timeout)),
        Ok(Err(err)) => return Err(store_error(uri, location, err)),
        Ok(Ok(bytes)) => bytes,
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| refused("the pointer object is not text".into()))?;
    pointer_target(location, text).map(Some).map_err(refused)
}

/// The location a pointer's text names: a URI in the same store and bucket, or a folder
/// relative to the pointer's own folder (`versions/7` beside `sentiment/current` is
/// `sentiment/versions/7`).
pub(crate) fn pointer_target(pointer: &StoreLocation, text: &str) -> Result<StoreLocation, String> {
    let text = text.trim();
    let advice = "the pointer must hold one line: the folder of the current version, relative to \
                  the pointer (versions/7) or as a URI in the same bucket";
    if text.is_empty() || text.contains('\n') {
        return Err(format!(
            "the pointer object is empty or has several lines; {advice}"
        ));
    }
    if text.contains("://") {
        return match StoreLocation::parse(text) {
            Some(Ok(target)) if target.store == pointer.store && !target.prefix.is_empty() => {
                Ok(target)
            }
            _ => Err(format!(
                "the pointer names '{text}', which is not a folder in {}; {advice}",
                pointer.store.display()
            )),
        };
    }
    let relative = text.trim_matches('/');
    confine(relative).map_err(|why| format!("the pointer names '{text}': {why}; {advice}"))?;
    let prefix = match pointer.prefix.rsplit_once('/') {
        Some((folder, _)) => format!("{folder}/{relative}"),
        None => relative.to_string(),
    };
    Ok(StoreLocation {
        store: pointer.store.clone(),
        prefix,
    })
}

/// No byte within the request timeout.
fn silent(uri: &str, store: &Store, timeout: Duration) -> RegistryError {
    RegistryError::StoreUnavailable {
        uri: uri.to_string(),
        store: store.display(),
        reason: format!(
            "no answer within {} s (MLFLOW_HTTP_REQUEST_TIMEOUT)",
            timeout.as_secs_f64()
        ),
    }
}

/// Maps a store failure onto the layer's error: refusals (401, 403, a missing bucket, bad
/// credentials) tell the user what to set; throttling, 5xx and broken connections are
/// transient; an object rewritten since it was listed is a changed listing.
fn store_error(uri: &str, location: &StoreLocation, err: object_store::Error) -> RegistryError {
    let chain = error_chain(&err);
    let transient = is_transient_text(&chain);
    let reason = summarize(&chain);
    let store = location.store.display();
    match err {
        object_store::Error::Precondition { path, .. } => RegistryError::ListingChanged {
            uri: uri.to_string(),
            artifact_uri: location.display(),
            what: format!("'{path}' was rewritten"),
        },
        object_store::Error::Generic { .. } if transient => RegistryError::StoreUnavailable {
            uri: uri.to_string(),
            store,
            reason,
        },
        _ => RegistryError::StoreRefused {
            uri: uri.to_string(),
            store,
            reason,
            advice: location.store.advice().to_string(),
        },
    }
}

/// Whether a store error's text says it may pass: a 408/429/5xx status, throttling, or no
/// HTTP status at all (a connection that failed or broke).
fn is_transient_text(text: &str) -> bool {
    const MARK: &str = "status code: ";
    match text.find(MARK) {
        Some(at) => {
            let status: String = text[at + MARK.len()..].chars().take(3).collect();
            crate::registry::error::is_transient_status(status.parse().unwrap_or(0))
        }
        None => !text.contains("Error getting credentials") && !text.contains("credential"),
    }
}

/// A store failure in one line: `HTTP 403 AccessDenied: Access Denied (after 3 retries)` when
/// the store answered (S3 and Azure put `<Code>` and `<Message>` in their XML errors), the
/// redacted error chain otherwise (a connection that failed, missing credentials).
fn summarize(chain: &str) -> String {
    const MARK: &str = "status code: ";
    let Some(at) = chain.find(MARK) else {
        return redact(chain);
    };
    let status: String = chain[at + MARK.len()..].chars().take(3).collect();
    let element = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = chain.find(&open)? + open.len();
        let length = chain[start..].find(&close)?;
        Some(redact(chain[start..start + length].trim()))
    };
    let mut text = match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("HTTP {status} {code}: {message}"),
        (Some(code), None) => format!("HTTP {status} {code}"),
        _ => format!("HTTP {status}"),
    };
    if let Some(retries) = chain
        .split(", after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
    {
        text.push_str(&format!(" (after {retries} retries)"));
    }
    text
}

/// An error and its sources, `: `-separated, with repeated texts dropped.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = inner.source();
    }
    parts.join(": ")
}

/// Removes what may carry a credential from an error text: the query string and userinfo of
/// every URL (signed URLs and SAS tokens live there), and XML elements that echo signatures.
/// Long texts are cut.
pub(crate) fn redact(text: &str) -> String {
    let mut out = Vec::new();
    for word in text.split(' ') {
        if word.contains("://") {
            let cut = word.find('?').map_or(word, |at| &word[..at]);
            let cut = match (cut.find("://"), cut.find('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    format!("{}{}", &cut[..scheme + 3], &cut[at + 1..])
                }
                _ => cut.to_string(),
            };
            out.push(if cut.len() < word.len() && word.contains('?') {
                format!("{cut}?<redacted>")
            } else {
                cut
            });
        } else if word.to_ascii_lowercase().contains("signature")
            || word.contains("sig=")
            || word.contains("X-Amz-")
        {
            out.push("<redacted>".into());
        } else {
            out.push(word.to_string());
        }
    }
    let mut text = out.join(" ").replace('\n', " ");
    if text.len() > 400 {
        let mut end = 400;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(uri: &str, expected: Option<Result<(&str, &str), &str>>) {
        let got = StoreLocation::parse(uri);
        match (got, expected) {
            (None, None) => {}
            (Some(Ok(location)), Some(Ok((store, prefix)))) => {
                assert_eq!(
                    (location.store.display().as_str(), location.prefix.as_str()),
                    (store, prefix),
                    "{uri}"
                );
            }
            (Some(Err(why)), Some(Err(want))) => {
                assert!(why.contains(want), "{uri}: {why:?} lacks {want:?}")
            }
            (got, want) => panic!("{uri}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn locations() {
        check(
            "s3://models/sentiment/v3",
            Some(Ok(("s3://models", "sentiment/v3"))),
        );
        check(
            "s3://models/sentiment/",
            Some(Ok(("s3://models", "sentiment"))),
        );
        check("S3://models", Some(Ok(("s3://models", ""))));
        check("s3a://b/x", Some(Ok(("s3://b", "x"))));
        check("gs://b/1/x", Some(Ok(("gs://b", "1/x"))));
        check(
            "wasbs://c@acct.blob.core.windows.net/0/x",
            Some(Ok(("wasbs://c@acct", "0/x"))),
        );
        check(
            "abfss://c@acct.dfs.core.windows.net/x",
            Some(Ok(("abfss://c@acct", "x"))),
        );
        check(
            "https://files.example:8443/m/1",
            Some(Ok(("https://files.example:8443", "m/1"))),
        );
        check("s3:///x", Some(Err("the bucket is missing")));
        check("s3://Bad_Bucket/x", Some(Err("not a bucket name")));
        check("s3://b/a/../c", Some(Err("'..' segments")));
        check("s3://b/a//c", Some(Err("empty")));
        check("s3://b/x?versionId=1", Some(Err("query strings")));
        check(
            "wasbs://acct.blob.core.windows.net/x",
            Some(Err("container or account")),
        );
        check("https://u:p@h/x", Some(Err("credentials")));
        check("dbfs:/x", None);
        check("hdfs://nn/x", None);
        check("models:/x/1", None);
    }

    #[test]
    fn redaction() {
        let check = |text: &str, expected: &str| assert_eq!(redact(text), expected, "{text}");
        check(
            "Error performing GET https://a.blob.core.windows.net/c/x?sv=1&sig=abc in 1s",
            "Error performing GET https://a.blob.core.windows.net/c/x?<redacted> in 1s",
        );
        check("GET http://user:pw@h/x failed", "GET http://h/x failed");
        check("bad Signature=abc here", "bad <redacted> here");
        check("plain", "plain");
    }

    #[test]
    fn summaries() {
        let check = |chain: &str, expected: &str| assert_eq!(summarize(chain), expected);
        check(
            "Generic S3 error: Error performing GET http://h/models?list-type=2 in 1ms - Server \
             returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?><Error>\
             <Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
            "HTTP 403 AccessDenied: Access Denied",
        );
        check(
            "Error performing GET http://h/m/x in 100ms, after 3 retries, max_retries: 3, \
             retry_timeout: 300s  - Server returned non-2xx status code: 503 Service Unavailable: ",
            "HTTP 503 (after 3 retries)",
        );
        check(
            "Generic S3 error: HTTP error: error sending request for url (http://h/x?sig=1)",
            "Generic S3 error: HTTP error: error sending request for url (http://h/x?<redacted>",
        );
    }

    #[test]
    fn transient_texts() {
        let check =
            |text: &str, expected: bool| assert_eq!(is_transient_text(text), expected, "{text}");
        check(
            "Server returned non-2xx status code: 503 Service Unavailable: SlowDown",
            true,
        );
        check(
            "Server returned non-2xx status code: 500 Internal Server Error",
            true,
        );
        check(
            "Server returned non-2xx status code: 400 Bad Request",
            false,
        );
        check("HTTP error: error sending request", true);
        check("Error getting credentials from provider", false);
    }

    #[test]
    fn pointers() {
        let pointer = StoreLocation::parse("s3://models/sentiment/current")
            .unwrap()
            .unwrap();
        let check = |text: &str, expected: Result<&str, &str>| match (
            pointer_target(&pointer, text),
            expected,
        ) {
            (Ok(target), Ok(want)) => assert_eq!(target.display(), want, "{text:?}"),
            (Err(why), Err(want)) => assert!(why.contains(want), "{text:?}: {why}"),
            (got, want) => panic!("{text:?}: got {got:?}, expected {want:?}"),
        };
        check("versions/7\n", Ok("s3://models/sentiment/versions/7"));
        check("/versions/7/", Ok("s3://models/sentiment/versions/7"));
        check("s3://models/elsewhere/7", Ok("s3://models/elsewhere/7"));
        check("s3://other/7", Err("not a folder in s3://models"));
        check("s3://models", Err("not a folder in s3://models"));
        check("../x", Err("'..' segments"));
        check("", Err("empty"));
        check("a\nb", Err("several lines"));
        let top = StoreLocation::parse("s3://models/current")
            .unwrap()
            .unwrap();
        assert_eq!(
            pointer_target(&top, "v7").unwrap().display(),
            "s3://models/v7"
        );
    }

    #[test]
    fn snapshots_see_every_change() {
        let file = |path: &str, size: u64, tag: &str| Listed {
            path: path.into(),
            size,
            e_tag: Some(tag.into()),
            modified: "2026-01-01T00:00:00+00:00".into(),
        };
        let before = Snapshot(vec![file("MLmodel", 3, "a"), file("model.onnx", 9, "b")]);
        let check = |after: Vec<Listed>, expected: Option<&str>| {
            let after = Snapshot(after);
            assert_eq!(before.difference(&after).as_deref(), expected);
            assert_eq!(before.version() == after.version(), expected.is_none());
        };
        check(
            vec![file("MLmodel", 3, "a"), file("model.onnx", 9, "b")],
            None,
        );
        check(
            vec![file("MLmodel", 3, "a"), file("model.onnx", 9, "c")],
            Some("'model.onnx' was rewritten"),
        );
        check(
            vec![file("MLmodel", 3, "a")],
            Some("'model.onnx' was removed"),
        );
        check(
            vec![
                file("MLmodel", 3, "a"),
                file("model.onnx", 9, "b"),
                file("x", 1, "d"),
            ],
            Some("'x' was added"),
        );
    }
}

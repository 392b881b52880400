//! Model artifacts: where an artifact URI's files live, listing them recursively, and
//! [`download()`] — streamed, size-checked, SHA-256 hashed, confined to a staging directory
//! beside the destination and renamed into place only when every file is complete.
//!
//! Two kinds of artifact location are readable: the tracking server's artifact proxy
//! (`mlflow-artifacts:/...`, `mlflow-artifacts://host/...`, or an `http(s)://` URL of
//! `/api/2.0/mlflow-artifacts/artifacts`), and local directories (`file://` or an absolute path,
//! as a server with a local artifact store reports them). Object stores (`s3://`, `gs://`, ...)
//! are refused with advice to serve artifacts through the tracking server.
//!
//! Every listed path goes through [`confine`] before anything is written, and local sources may
//! not contain symbolic links, so a hostile listing cannot write outside the model directory.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use futures_util::{stream, StreamExt as _, TryStreamExt as _};
use reqwest::Url;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::client::{error_chain, Api, MlflowClient};
use super::{rest, FileDigest, RegistryError, RemoteFile, Resolution};

/// Files downloaded at the same time.
const CONCURRENT_FILES: usize = 4;
/// Listings beyond these bounds are treated as hostile.
const MAX_FILES: usize = 100_000;
const MAX_DIRECTORIES: usize = 10_000;
/// The proxy's route, below the tracking server's base URL.
const PROXY_ROUTE: [&str; 4] = ["api", "2.0", "mlflow-artifacts", "artifacts"];
const PROXY_ANCHOR: &str = "/api/2.0/mlflow-artifacts/artifacts";

/// A readable artifact location.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ArtifactRoot {
    /// Behind the tracking server's artifact proxy: `proxy` is the route's URL, `path` the
    /// location below it (no leading or trailing slash).
    Proxied { proxy: Url, path: String },
    /// A directory on this machine.
    Local(PathBuf),
}

/// Why an artifact URI cannot be read.
#[derive(Debug, PartialEq)]
pub(crate) enum RootError {
    /// The proxy needs the tracking server, and none is configured.
    NoServer(String),
    Unsupported(String),
}

/// Maps an artifact URI onto a readable location. `tracking` is the tracking server's base URL
/// (or why there is none); `mlflow-artifacts:` URIs take its scheme and path prefix, and its
/// host unless they name their own, as MLflow's `MlflowArtifactsRepository.resolve_uri` does.
pub(crate) fn artifact_root(
    artifact_uri: &str,
    tracking: Result<&Url, &str>,
) -> Result<ArtifactRoot, RootError> {
    let unsupported = |why: &str| RootError::Unsupported(why.to_string());
    if let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") {
        let tracking = tracking.map_err(|why| RootError::NoServer(why.to_string()))?;
        let (host, path) = match rest.strip_prefix("//") {
            Some(authority_and_path) => authority_and_path.split_at(
                authority_and_path
                    .find('/')
                    .unwrap_or(authority_and_path.len()),
            ),
            None => ("", rest),
        };
        let mut proxy = tracking.clone();
        if !host.is_empty() {
            let authority = Url::parse(&format!("{}://{host}", tracking.scheme()))
                .ok()
                .filter(|u| u.username().is_empty() && u.path() == "/")
                .ok_or_else(|| unsupported("the host in the URI is not a valid host[:port]"))?;
            proxy
                .set_host(authority.host_str())
                .map_err(|_| unsupported("the host in the URI is not valid"))?;
            proxy
                .set_port(authority.port())
                .map_err(|_| unsupported("the port in the URI is not valid"))?;
        }
        proxy
            .path_segments_mut()
            .map_err(|_| unsupported("the tracking URI cannot take a path"))?
            .pop_if_empty()
            .extend(PROXY_ROUTE);
        return Ok(ArtifactRoot::Proxied {
            proxy,
            path: path.trim_matches('/').to_string(),
        });
    }
    if artifact_uri.starts_with("http://") || artifact_uri.starts_with("https://") {
        let url = Url::parse(artifact_uri).map_err(|_| unsupported("it is not a valid URL"))?;
        let Some((before, after)) = url.path().split_once(PROXY_ANCHOR) else {
            return Err(unsupported(
                "plain http(s) artifact stores are not supported; serve artifacts through the \
                 MLflow tracking server (mlflow server --serve-artifacts)",
            ));
        };
        let path = super::uri::percent_decode(after.trim_matches('/'))
            .ok_or_else(|| unsupported("the path has an invalid percent escape"))?;
        let mut proxy = url.clone();
        proxy.set_path(&format!("{before}{PROXY_ANCHOR}"));
        proxy.set_query(None);
        return Ok(ArtifactRoot::Proxied { proxy, path });
    }
    match super::ModelUri::parse(artifact_uri) {
        Ok(super::ModelUri::Local(path) | super::ModelUri::Zip(path)) if path.is_absolute() => {
            Ok(ArtifactRoot::Local(path))
        }
        Ok(super::ModelUri::Local(_) | super::ModelUri::Zip(_)) => Err(unsupported(
            "it is a path relative to the MLflow server's working directory; run the server \
             with --artifacts-destination (proxied artifacts) or an absolute \
             --default-artifact-root",
        )),
        _ => Err(unsupported(
            "hotserve reads artifacts only through the MLflow tracking server's artifact proxy \
             (mlflow-artifacts:/) or from local directories; run the server with \
             --serve-artifacts --artifacts-destination <store> so that it proxies this store",
        )),
    }
}

/// Checks a listed artifact path and returns it as a relative path that stays inside the
/// model directory: `/`-separated, no empty, `.` or `..` segments, not absolute, no NUL,
/// backslash or other control characters.
pub fn confine(path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    if path.starts_with('/') {
        return Err("absolute paths are not allowed".into());
    }
    if path.contains('\\') {
        return Err("backslashes are not allowed".into());
    }
    if path.chars().any(char::is_control) {
        return Err("NUL and control characters are not allowed".into());
    }
    let mut relative = PathBuf::new();
    for segment in path.split('/') {
        match segment {
            "" => {
                return Err("empty path segments ('//' or a trailing '/') are not allowed".into())
            }
            "." | ".." => return Err(format!("'{segment}' segments are not allowed")),
            _ => relative.push(segment),
        }
    }
    Ok(relative)
}

/// Lists every file under `artifact_uri`, sorted by path; an empty list when there are none.
pub(crate) async fn list_files(
    client: &MlflowClient,
    uri: &str,
    artifact_uri: &str,
) -> Result<Vec<RemoteFile>, RegistryError> {
    let mut files = match root(client, uri, artifact_uri)? {
        ArtifactRoot::Proxied { proxy, path } => list_proxied(client, uri, &proxy, &path).await?,
        ArtifactRoot::Local(dir) => {
            let uri_owned = uri.to_string();
            let artifact_uri = artifact_uri.to_string();
            tokio::task::spawn_blocking(move || list_local(&uri_owned, &artifact_uri, &dir))
                .await
                .expect("listing a local directory does not panic")?
        }
    };
    files.sort_by(|a, b| a.path.cmp(&b.path));
    check_listing(uri, &files)?;
    Ok(files)
}

/// Downloads every listed file into `dest`, which must not exist. Files are streamed into a
/// staging directory beside `dest` (same filesystem), hashed on the way, checked against their
/// listed sizes, and the directory is renamed to `dest` only when all of them are complete; on
/// any failure (or if the future is dropped) the staging directory is removed. Returns the
/// digests sorted by path.
pub async fn download(
    client: &MlflowClient,
    resolution: &Resolution,
    dest: &Path,
) -> Result<Vec<FileDigest>, RegistryError> {
    let uri = resolution.uri.as_str();
    let io_error = |action: &'static str, path: &Path, source: std::io::Error| RegistryError::Io {
        uri: uri.to_string(),
        action,
        path: path.to_path_buf(),
        source,
    };
    if tokio::fs::symlink_metadata(dest).await.is_ok() {
        return Err(RegistryError::DestinationExists {
            uri: uri.to_string(),
            dest: dest.into(),
        });
    }
    if resolution.files.is_empty() {
        return Err(RegistryError::NoFiles {
            uri: uri.to_string(),
            artifact_uri: resolution.artifact_uri.clone(),
        });
    }
    let root = root(client, uri, &resolution.artifact_uri)?;
    check_listing(uri, &resolution.files)?;
    let plan: Vec<(&RemoteFile, PathBuf)> = resolution
        .files
        .iter()
        .map(|file| {
            Ok((
                file,
                confine(&file.path).map_err(|r| unsafe_path(uri, &file.path, r))?,
            ))
        })
        .collect::<Result<_, RegistryError>>()?;

    let parent = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tokio::fs::create_dir_all(&parent)
        .await
        .map_err(|e| io_error("create", &parent, e))?;
    let staging = parent.join(format!(".{name}.partial-{:016x}", fastrand::u64(..)));
    tokio::fs::create_dir(&staging)
        .await
        .map_err(|e| io_error("create", &staging, e))?;
    let mut guard = StagingGuard(Some(staging.clone()));

    // Directories first, so that no concurrent task creates one after a failure cleaned up.
    let directories: BTreeSet<PathBuf> = plan
        .iter()
        .filter_map(|(_, relative)| relative.parent().map(Path::to_path_buf))
        .collect();
    for directory in directories.iter().filter(|d| !d.as_os_str().is_empty()) {
        let path = staging.join(directory);
        tokio::fs::create_dir_all(&path)
            .await
            .map_err(|e| io_error("create", &path, e))?;
    }

    // The futures are built before they enter the stream: a closure inside the stream would
    // make the download future's Send-ness depend on higher-ranked lifetimes rustc cannot prove.
    let fetches: Vec<_> = plan
        .into_iter()
        .map(|(file, relative)| fetch(client, uri, &root, &staging, file, relative))
        .collect();
    let fetched = stream::iter(fetches)
        .buffer_unordered(CONCURRENT_FILES)
        .try_collect::<Vec<FileDigest>>()
        .await;
    let mut digests = match fetched {
        Ok(digests) => digests,
        Err(err) => {
            guard.remove().await;
            return Err(err);
        }
    };
    if tokio::fs::symlink_metadata(dest).await.is_ok() {
        guard.remove().await;
        return Err(RegistryError::DestinationExists {
            uri: uri.to_string(),
            dest: dest.into(),
        });
    }
    if let Err(err) = tokio::fs::rename(&staging, dest).await {
        guard.remove().await;
        return Err(io_error("move the finished download to", dest, err));
    }
    guard.0 = None;
    digests.sort_by(|a, b| a.path.cmp(&b.path));
    tracing::debug!(uri, dest = %dest.display(), files = digests.len(), "downloaded");
    Ok(digests)
}

/// Removes the staging directory unless the download completed, also when the download future
/// is dropped half-way.
struct StagingGuard(Option<PathBuf>);

impl StagingGuard {
    async fn remove(&mut self) {
        if let Some(path) = self.0.take() {
            if let Err(err) = tokio::fs::remove_dir_all(&path).await {
                tracing::warn!(path = %path.display(), %err, "cannot remove a failed download");
            }
        }
    }
}

impl Drop for StagingGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

fn root(
    client: &MlflowClient,
    uri: &str,
    artifact_uri: &str,
) -> Result<ArtifactRoot, RegistryError> {
    let tracking = client.base(Api::Tracking);
    let tracking = match &tracking {
        Ok(url) => Ok(url),
        Err(super::client::CallError::NoServer(why)) => Err(why.as_str()),
        Err(_) => Err("the tracking server is not usable"),
    };
    artifact_root(artifact_uri, tracking).map_err(|err| match err {
        RootError::NoServer(reason) => RegistryError::NoServer {
            uri: uri.to_string(),
            reason,
        },
        RootError::Unsupported(reason) => RegistryError::UnsupportedArtifactUri {
            uri: uri.to_string(),
            artifact_uri: artifact_uri.to_string(),
            reason,
        },
    })
}

fn unsafe_path(uri: &str, path: &str, reason: String) -> RegistryError {
    RegistryError::UnsafePath {
        uri: uri.to_string(),
        path: path.to_string(),
        reason,
    }
}

/// Every path confined, no path listed twice, no path both a file and a directory. `files`
/// must be sorted by path.
fn check_listing(uri: &str, files: &[RemoteFile]) -> Result<(), RegistryError> {
    for file in files {
        confine(&file.path).map_err(|reason| unsafe_path(uri, &file.path, reason))?;
    }
    let paths: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    if paths.len() != files.len() {
        let mut seen = BTreeSet::new();
        let twice = files
            .iter()
            .find(|f| !seen.insert(f.path.as_str()))
            .map(|f| f.path.as_str());
        return Err(unsafe_path(
            uri,
            twice.unwrap_or(""),
            "it is listed twice".into(),
        ));
    }
    for path in &paths {
        let mut prefix = String::new();
        for segment in path.split('/') {
            if !prefix.is_empty() && paths.contains(prefix.as_str()) {
                return Err(unsafe_path(
                    uri,
                    path,
                    format!("'{prefix}' is listed as a file"),
                ));
            }
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(segment);
        }
    }
    Ok(())
}

async fn list_proxied(
    client: &MlflowClient,
    uri: &str,
    proxy: &Url,
    root: &str,
) -> Result<Vec<RemoteFile>, RegistryError> {
    let mut files = Vec::new();
    let mut pending = vec![String::new()];
    let mut directories_seen = 0;
    while let Some(directory) = pending.pop() {
        directories_seen += 1;
        if directories_seen > MAX_DIRECTORIES || files.len() > MAX_FILES {
            return Err(unsafe_path(
                uri,
                &directory,
                "the listing is implausibly large".into(),
            ));
        }
        let location = [root, directory.as_str()]
            .iter()
            .filter(|part| !part.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let entries = rest::list_artifacts(client, proxy, &location)
            .await
            .map_err(|err| err.into_registry(uri, client.request_timeout()))?;
        for entry in entries {
            let path = if directory.is_empty() {
                entry.path
            } else {
                format!("{directory}/{}", entry.path)
            };
            confine(&path).map_err(|reason| unsafe_path(uri, &path, reason))?;
            if entry.is_dir {
                pending.push(path);
            } else {
                files.push(RemoteFile {
                    path,
                    size: entry.file_size,
                });
            }
        }
    }
    Ok(files)
}

fn list_local(
    uri: &str,
    artifact_uri: &str,
    root: &Path,
) -> Result<Vec<RemoteFile>, RegistryError> {
    match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(RegistryError::UnsupportedArtifactUri {
                uri: uri.to_string(),
                artifact_uri: artifact_uri.to_string(),
                reason: "it is a single file; point the URI at the model directory".into(),
            })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(RegistryError::UnsupportedArtifactUri {
                uri: uri.to_string(),
                artifact_uri: artifact_uri.to_string(),
                reason: "no such directory on this machine; the MLflow server keeps artifacts \
                         on its own disk, run it with --serve-artifacts --artifacts-destination \
                         so that hotserve can fetch them over HTTP"
                    .into(),
            })
        }
        Err(source) => {
            return Err(RegistryError::Io {
                uri: uri.to_string(),
                action: "read",
                path: root.to_path_buf(),
                source,
            })
        }
    }
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let directory = root.join(&relative);
        let io_error = |source| RegistryError::Io {
            uri: uri.to_string(),
            action: "read",
            path: directory.clone(),
            source,
        };
        for entry in std::fs::read_dir(&directory).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            let child = relative.join(entry.file_name());
            let shown = child.to_string_lossy().into_owned();
            let Some(path) = child.to_str().map(str::to_string) else {
                return Err(unsafe_path(
                    uri,
                    &shown,
                    "the name is not valid UTF-8".into(),
                ));
            };
            let meta = entry.metadata().map_err(io_error)?;
            if meta.file_type().is_symlink() {
                return Err(unsafe_path(
                    uri,
                    &path,
                    "it is a symbolic link; copy the real file into the model directory".into(),
                ));
            } else if meta.is_dir() {
                pending.push(child);
            } else if !meta.is_file() {
                return Err(unsafe_path(uri, &path, "it is not a regular file".into()));
            } else if files.len() >= MAX_FILES {
                return Err(unsafe_path(
                    uri,
                    &path,
                    "the directory is implausibly large".into(),
                ));
            } else {
                files.push(RemoteFile {
                    path,
                    size: Some(meta.len()),
                });
            }
        }
    }
    Ok(files)
}

/// Fetches one file into `staging/relative`, hashing it and checking its size.
async fn fetch(
    client: &MlflowClient,
    uri: &str,
    root: &ArtifactRoot,
    staging: &Path,
    file: &RemoteFile,
    relative: PathBuf,
) -> Result<FileDigest, RegistryError> {
    let target = staging.join(&relative);
    let digest = match root {
        ArtifactRoot::Proxied { proxy, path } => {
            fetch_proxied(client, uri, proxy, path, file, &target).await?
        }
        ArtifactRoot::Local(dir) => {
            let (uri_owned, source, file_owned) =
                (uri.to_string(), dir.join(&relative), file.clone());
            tokio::task::spawn_blocking(move || {
                copy_local(&uri_owned, &source, &file_owned, &target)
            })
            .await
            .expect("copying a local file does not panic")?
        }
    };
    if let Some(expected) = file.size {
        if expected != digest.size {
            return Err(RegistryError::SizeMismatch {
                uri: uri.to_string(),
                path: file.path.clone(),
                expected,
                actual: digest.size,
            });
        }
    }
    Ok(digest)
}

async fn fetch_proxied(
    client: &MlflowClient,
    uri: &str,
    proxy: &Url,
    root: &str,
    file: &RemoteFile,
    target: &Path,
) -> Result<FileDigest, RegistryError> {
    let mut url = proxy.clone();
    url.path_segments_mut()
        .expect("proxy URLs are http(s) URLs, which have paths")
        .pop_if_empty()
        .extend(root.split('/').filter(|s| !s.is_empty()))
        .extend(file.path.split('/'));
    let mut response = client
        .get_stream(url)
        .await
        .map_err(|err| err.into_registry(uri, client.request_timeout()))?;
    let io_error = |source| RegistryError::Io {
        uri: uri.to_string(),
        action: "write",
        path: target.to_path_buf(),
        source,
    };
    let handle = tokio::fs::File::create_new(target)
        .await
        .map_err(io_error)?;
    let mut writer = tokio::io::BufWriter::with_capacity(256 * 1024, handle);
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(err) => {
                return Err(RegistryError::Interrupted {
                    uri: uri.to_string(),
                    path: file.path.clone(),
                    received,
                    reason: error_chain(&err),
                })
            }
        };
        received += chunk.len() as u64;
        if file.size.is_some_and(|expected| received > expected) {
            return Err(RegistryError::SizeMismatch {
                uri: uri.to_string(),
                path: file.path.clone(),
                expected: file.size.unwrap_or(0),
                actual: received,
            });
        }
        hasher.update(&chunk);
        writer.write_all(&chunk).await.map_err(io_error)?;
    }
    writer.flush().await.map_err(io_error)?;
    writer.get_ref().sync_all().await.map_err(io_error)?;
    Ok(FileDigest {
        path: file.path.clone(),
        size: received,
        sha256: hex(&hasher.finalize()),
    })
}

fn copy_local(
    uri: &str,
    source: &Path,
    file: &RemoteFile,
    target: &Path,
) -> Result<FileDigest, RegistryError> {
    let io_error = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| RegistryError::Io {
            uri: uri.to_string(),
            action,
            path,
            source,
        }
    };
    let meta = std::fs::symlink_metadata(source).map_err(io_error("read", source))?;
    if !meta.is_file() {
        return Err(unsafe_path(
            uri,
            &file.path,
            "it is a symbolic link or not a regular file; copy the real file into the model \
             directory"
                .into(),
        ));
    }
    let mut input = std::fs::File::open(source).map_err(io_error("read", source))?;
    let mut output = std::fs::File::create_new(target).map_err(io_error("write", target))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut copied: u64 = 0;
    loop {
        let read = input.read(&mut buffer).map_err(io_error("read", source))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        output
            .write_all(&buffer[..read])
            .map_err(io_error("write", target))?;
        copied += read as u64;
    }
    output.sync_all().map_err(io_error("write", target))?;
    Ok(FileDigest {
        path: file.path.clone(),
        size: copied,
        sha256: hex(&hasher.finalize()),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::MlflowSettings;

    #[test]
    fn confinement() {
        let check = |path: &str, expected: Result<&str, &str>| match (confine(path), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, PathBuf::from(want), "{path:?}"),
            (Err(why), Err(want)) => {
                assert!(why.contains(want), "{path:?}: {why:?} lacks {want:?}")
            }
            (got, want) => panic!("confine({path:?}) = {got:?}, expected {want:?}"),
        };
        check("MLmodel", Ok("MLmodel"));
        check("tokenizer/tokenizer.json", Ok("tokenizer/tokenizer.json"));
        check("a b/..c/d..", Ok("a b/..c/d.."));
        check("", Err("empty"));
        check("../evil", Err("'..' segments"));
        check("a/../../evil", Err("'..' segments"));
        check("./MLmodel", Err("'.' segments"));
        check("/etc/passwd", Err("absolute"));
        check("a//b", Err("empty path segments"));
        check("dir/", Err("empty path segments"));
        check("..\\evil", Err("backslashes"));
        check("a\0b", Err("NUL"));
        check("a\nb", Err("control characters"));
    }

    #[test]
    fn listings_are_checked_as_a_whole() {
        let files = |paths: &[&str]| -> Vec<RemoteFile> {
            paths
                .iter()
                .map(|p| RemoteFile {
                    path: p.to_string(),
                    size: None,
                })
                .collect()
        };
        let check = |paths: &[&str], expected: Result<(), &str>| match (
            check_listing("models:/s/1", &files(paths)),
            expected,
        ) {
            (Ok(()), Ok(())) => {}
            (Err(err), Err(want)) => {
                let text = err.to_string();
                assert!(
                    text.contains(want) && text.contains("models:/s/1"),
                    "{paths:?}: {text}"
                );
                assert!(!err.is_transient());
            }
            (got, want) => panic!("{paths:?}: got {got:?}, expected {want:?}"),
        };
        check(&["MLmodel", "model.onnx", "tok/t.json"], Ok(()));
        check(
            &["MLmodel", "../evil"],
            Err("refusing artifact path '../evil'"),
        );
        check(&["a", "a"], Err("listed twice"));
        check(&["a", "a/b"], Err("'a' is listed as a file"));
        check(&["x/a", "x/a/b/c"], Err("'x/a' is listed as a file"));
    }

    #[test]
    fn artifact_roots() {
        let tracking = Url::parse("http://mlflow.internal:5000").unwrap();
        let prefixed = Url::parse("https://h.example/mlflow").unwrap();
        let proxied = |proxy: &str, path: &str| {
            Ok(ArtifactRoot::Proxied {
                proxy: Url::parse(proxy).unwrap(),
                path: path.into(),
            })
        };
        let check = |uri: &str, tracking: &Url, expected: Result<ArtifactRoot, &str>| match (
            artifact_root(uri, Ok(tracking)),
            expected,
        ) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{uri}"),
            (Err(RootError::Unsupported(why)), Err(want)) => {
                assert!(why.contains(want), "{uri}: {why:?} lacks {want:?}")
            }
            (got, want) => panic!("{uri}: got {got:?}, expected {want:?}"),
        };
        check(
            "mlflow-artifacts:/0/models/m-1/artifacts",
            &tracking,
            proxied(
                "http://mlflow.internal:5000/api/2.0/mlflow-artifacts/artifacts",
                "0/models/m-1/artifacts",
            ),
        );
        check(
            "mlflow-artifacts:/0/r/artifacts/model/",
            &prefixed,
            proxied(
                "https://h.example/mlflow/api/2.0/mlflow-artifacts/artifacts",
                "0/r/artifacts/model",
            ),
        );
        check(
            "mlflow-artifacts://other:8080/1/x",
            &tracking,
            proxied(
                "http://other:8080/api/2.0/mlflow-artifacts/artifacts",
                "1/x",
            ),
        );
        check(
            "http://h:5000/api/2.0/mlflow-artifacts/artifacts/0/a%20b",
            &tracking,
            proxied("http://h:5000/api/2.0/mlflow-artifacts/artifacts", "0/a b"),
        );
        check(
            "file:///srv/mlruns/0/x",
            &tracking,
            Ok(ArtifactRoot::Local("/srv/mlruns/0/x".into())),
        );
        check(
            "/srv/mlruns/0/x",
            &tracking,
            Ok(ArtifactRoot::Local("/srv/mlruns/0/x".into())),
        );
        check(
            "./mlruns/0/x",
            &tracking,
            Err("relative to the MLflow server's working directory"),
        );
        check("s3://bucket/0/x", &tracking, Err("--serve-artifacts"));
        check(
            "https://bucket.example/model",
            &tracking,
            Err("plain http(s) artifact stores"),
        );
        assert_eq!(
            artifact_root(
                "mlflow-artifacts:/0/x",
                Err("MLFLOW_TRACKING_URI is not set")
            ),
            Err(RootError::NoServer("MLFLOW_TRACKING_URI is not set".into()))
        );
    }

    fn local_resolution(dir: &Path, files: Vec<RemoteFile>) -> Resolution {
        Resolution {
            uri: "mlflow-artifacts:/0/x".into(),
            name: None,
            version: None,
            aliases: vec![],
            stage: None,
            model_id: None,
            run_id: None,
            status: None,
            artifact_uri: format!("file://{}", dir.display()),
            files,
        }
    }

    #[tokio::test]
    async fn local_download_hashes_and_renames() {
        let source = tempfile::tempdir().unwrap();
        std::fs::create_dir(source.path().join("sub")).unwrap();
        std::fs::write(source.path().join("MLmodel"), "abc").unwrap();
        std::fs::write(source.path().join("sub/t.json"), "").unwrap();
        let client = MlflowClient::new(MlflowSettings::default()).unwrap();
        let artifact_uri = format!("file://{}", source.path().display());
        let files = list_files(&client, "u", &artifact_uri).await.unwrap();
        assert_eq!(
            files,
            vec![
                RemoteFile {
                    path: "MLmodel".into(),
                    size: Some(3)
                },
                RemoteFile {
                    path: "sub/t.json".into(),
                    size: Some(0)
                },
            ]
        );
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("models/v1");
        let digests = download(&client, &local_resolution(source.path(), files), &dest)
            .await
            .unwrap();
        assert_eq!(
            digests,
            vec![
                FileDigest {
                    path: "MLmodel".into(),
                    size: 3,
                    sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                        .into(),
                },
                FileDigest {
                    path: "sub/t.json".into(),
                    size: 0,
                    sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                        .into(),
                },
            ]
        );
        assert_eq!(
            std::fs::read_to_string(dest.join("MLmodel")).unwrap(),
            "abc"
        );
        let leftovers: Vec<_> = std::fs::read_dir(out.path().join("models"))
            .unwrap()
            .collect();
        assert_eq!(leftovers.len(), 1, "only the destination remains");
    }

    #[tokio::test]
    async fn local_failures_leave_nothing_behind() {
        let source = tempfile::tempdir().unwrap();
        std::fs::write(source.path().join("MLmodel"), "abc").unwrap();
        let client = MlflowClient::new(MlflowSettings::default()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("v1");
        let check = |files: Vec<RemoteFile>, want: &'static str| {
            let resolution = local_resolution(source.path(), files);
            let (client, dest, out) = (client.clone(), dest.clone(), out.path().to_path_buf());
            async move {
                let err = download(&client, &resolution, &dest).await.unwrap_err();
                assert!(err.to_string().contains(want), "{err}");
                assert_eq!(
                    std::fs::read_dir(&out).unwrap().count(),
                    0,
                    "{want}: leftovers"
                );
            }
        };
        check(
            vec![RemoteFile {
                path: "MLmodel".into(),
                size: Some(4),
            }],
            "listing says 4",
        )
        .await;
        check(
            vec![RemoteFile {
                path: "missing".into(),
                size: None,
            }],
            "cannot read",
        )
        .await;
        check(vec![], "there are no files at").await;
        check(
            vec![RemoteFile {
                path: "../MLmodel".into(),
                size: None,
            }],
            "'..' segments",
        )
        .await;

        std::os::unix::fs::symlink(source.path().join("MLmodel"), source.path().join("link"))
            .unwrap();
        let err = list_files(&client, "u", &format!("file://{}", source.path().display()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        check(
            vec![RemoteFile {
                path: "link".into(),
                size: None,
            }],
            "symbolic link",
        )
        .await;

        std::fs::create_dir(&dest).unwrap();
        let resolution = local_resolution(source.path(), vec![]);
        let err = download(&client, &resolution, &dest).await.unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
    }
}

//! Model artifacts: where an artifact URI's files live ([`artifact_root`]), listing them
//! recursively ([`list_files`]), and [`download()`]: streamed, size-checked, SHA-256 hashed,
//! confined to a staging directory beside the destination and renamed into place only when
//! every file is complete.
//!
//! Three kinds of artifact location are readable, one backend each: the tracking server's
//! artifact proxy ([`proxied`]: `mlflow-artifacts:/...`, `mlflow-artifacts://host/...`, or an
//! `http(s)://` URL of `/api/2.0/mlflow-artifacts/artifacts`), local directories ([`local`]:
//! `file://` or an absolute path, as a server with a local artifact store reports them), and
//! object stores read directly with the user's own cloud credentials ([`store`]: `s3://`,
//! `gs://`, `wasbs://`, `abfss://` and other `http(s)://` URLs, as a server run with
//! `--no-serve-artifacts` reports them, or a bucket named as `MODEL_URI`). This module maps URIs
//! onto backends, checks listings and runs the download; the backends only list and fetch.
//!
//! Every listed path goes through [`confine`] before anything is written, and local sources may
//! not contain symbolic links, so a hostile listing cannot write outside the model directory.
//! Object store downloads are also checked against a listing taken just before and just after
//! them, so files that change meanwhile (a version being uploaded) are never kept.

mod local;
mod proxied;
mod sink;
pub mod store;

pub(crate) use sink::{unsafe_path, Sink, MAX_DIRECTORIES, MAX_FILES};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{stream, StreamExt as _, TryStreamExt as _};
use reqwest::Url;

use super::client::{Api, MlflowClient};
use super::{Progress, RegistryError, RemoteFile, Resolution};
use crate::files::{confine, FileDigest};
use store::{Listed, Snapshot, StoreLocation};

/// Files downloaded at the same time.
const CONCURRENT_FILES: usize = 4;

/// A readable artifact location.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ArtifactRoot {
    /// Behind the tracking server's artifact proxy: `proxy` is the route's URL, `path` the
    /// location below it (no leading or trailing slash).
    Proxied { proxy: Url, path: String },
    /// A directory on this machine.
    Local(PathBuf),
    /// An object store, read directly.
    Store(StoreLocation),
}

/// Why an artifact URI cannot be read.
#[derive(Debug, PartialEq)]
pub(crate) enum RootError {
    /// The proxy needs the tracking server, and none is configured.
    NoServer(String),
    /// No backend reads this URI; the text says why and what to do.
    Unsupported(String),
}

/// Maps an artifact URI onto a readable location. `tracking` is the tracking server's base URL
/// (or why there is none), which `mlflow-artifacts:` URIs need ([`proxied::locate`]).
pub(crate) fn artifact_root(
    artifact_uri: &str,
    tracking: Result<&Url, &str>,
) -> Result<ArtifactRoot, RootError> {
    if let Some(proxied) = proxied::locate(artifact_uri, tracking) {
        match proxied {
            // Any other http(s) URL is a plain file server, read like an object store.
            Err(RootError::Unsupported(_)) if !artifact_uri.contains(proxied::ANCHOR) => {}
            found => return found,
        }
    }
    if let Some(location) = StoreLocation::parse(artifact_uri) {
        return location
            .map(ArtifactRoot::Store)
            .map_err(RootError::Unsupported);
    }
    let unsupported = |why: &str| RootError::Unsupported(why.to_string());
    match super::ModelUri::parse(artifact_uri) {
        Ok(super::ModelUri::Local(path) | super::ModelUri::Zip(path)) if path.is_absolute() => {
            Ok(ArtifactRoot::Local(path))
        }
        Ok(super::ModelUri::Local(_) | super::ModelUri::Zip(_)) => Err(unsupported(
            "it is a path relative to the MLflow server's working directory; run the server \
             with --artifacts-destination (proxied artifacts) or an absolute \
             --default-artifact-root",
        )),
        _ => {
            let scheme = artifact_uri.split(':').next().unwrap_or(artifact_uri);
            let what = match scheme.to_ascii_lowercase().as_str() {
                "dbfs" => "dbfs:/ is the Databricks file system, which hotserve cannot read".into(),
                _ => format!("hotserve cannot read '{scheme}:' locations"),
            };
            Err(RootError::Unsupported(format!(
                "{what}; it reads s3://, gs://, wasbs://, abfss://, http(s)://, mlflow-artifacts:/ \
                 and local directories; log the model to one of those, or run the MLflow server \
                 with --serve-artifacts --artifacts-destination <store> so that it proxies this \
                 store"
            )))
        }
    }
}

/// Lists every file under `artifact_uri`, sorted by path; an empty list when there are none.
pub(crate) async fn list_files(
    client: &MlflowClient,
    uri: &str,
    artifact_uri: &str,
) -> Result<Vec<RemoteFile>, RegistryError> {
    let mut files = match root(client, uri, artifact_uri)? {
        ArtifactRoot::Proxied { proxy, path } => proxied::list(client, uri, &proxy, &path).await?,
        ArtifactRoot::Local(dir) => local::list(uri, artifact_uri, &dir).await?,
        ArtifactRoot::Store(location) => store_snapshot(client, uri, &location).await?.files(),
    };
    files.sort_by(|a, b| a.path.cmp(&b.path));
    check_listing(uri, &files)?;
    Ok(files)
}

/// Lists an object store location, with what identifies each object's content.
pub(crate) async fn store_snapshot(
    client: &MlflowClient,
    uri: &str,
    location: &StoreLocation,
) -> Result<Snapshot, RegistryError> {
    let snapshot = store::list(
        client.stores(),
        &client.settings().store_access(),
        uri,
        location,
    )
    .await?;
    check_listing(uri, &snapshot.files())?;
    Ok(snapshot)
}

/// Downloads every listed file into `dest`, which must not exist. Files are streamed into a
/// staging directory beside `dest` (same filesystem), hashed on the way, checked against their
/// listed sizes, and the directory is renamed to `dest` only when all of them are complete; on
/// any failure (or if the future is dropped) the staging directory is removed. Returns the
/// digests sorted by path. `progress` counts the bytes and files as they are written.
pub async fn download(
    client: &MlflowClient,
    resolution: &Resolution,
    dest: &Path,
    progress: &Arc<Progress>,
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
    let before = match &root {
        ArtifactRoot::Store(location) => {
            Some(unchanged_since_resolve(client, resolution, location).await?)
        }
        _ => None,
    };
    let plan: Vec<(&RemoteFile, PathBuf)> = resolution
        .files
        .iter()
        .map(|file| {
            Ok((
                file,
                confine(&file.path)
                    .map_err(|reason| unsafe_path(uri, &file.path, reason.to_string()))?,
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
    let guard = StagingGuard::new(staging.clone());
    progress.start(
        plan.len() as u64,
        plan.iter().filter_map(|(file, _)| file.size).sum(),
    );
    match fill(
        client,
        uri,
        &root,
        before.as_ref(),
        &staging,
        plan,
        dest,
        progress,
    )
    .await
    {
        Ok(mut digests) => {
            guard.keep();
            digests.sort_by(|a, b| a.path.cmp(&b.path));
            tracing::debug!(uri, dest = %dest.display(), files = digests.len(), "downloaded");
            Ok(digests)
        }
        Err(err) => {
            guard.remove().await;
            Err(err)
        }
    }
}

/// An object store location listed again as the download starts: the same files and sizes
/// as the resolution (and, for a bucket `MODEL_URI`, the same content version), or the files
/// are changing and nothing is fetched.
async fn unchanged_since_resolve(
    client: &MlflowClient,
    resolution: &Resolution,
    location: &StoreLocation,
) -> Result<Snapshot, RegistryError> {
    let uri = resolution.uri.as_str();
    let now = store_snapshot(client, uri, location).await?;
    let changed = |what: String| RegistryError::ListingChanged {
        uri: uri.to_string(),
        artifact_uri: resolution.artifact_uri.clone(),
        what,
    };
    if now.files() != resolution.files {
        return Err(changed(
            "the files or their sizes differ from the listing".into(),
        ));
    }
    let is_bucket = matches!(
        super::RemoteUri::parse(uri),
        Ok(super::RemoteUri::Bucket { .. })
    );
    if is_bucket && resolution.version.as_deref() != Some(now.version().as_str()) {
        return Err(changed("an object was rewritten".into()));
    }
    Ok(now)
}

/// Fetches every planned file into `staging` and renames it to `dest`. Object store files are
/// fetched as listed in `before` and listed again before the rename.
#[allow(clippy::too_many_arguments)]
async fn fill(
    client: &MlflowClient,
    uri: &str,
    root: &ArtifactRoot,
    before: Option<&Snapshot>,
    staging: &Path,
    plan: Vec<(&RemoteFile, PathBuf)>,
    dest: &Path,
    progress: &Arc<Progress>,
) -> Result<Vec<FileDigest>, RegistryError> {
    let io_error = |action: &'static str, path: &Path, source: std::io::Error| RegistryError::Io {
        uri: uri.to_string(),
        action,
        path: path.to_path_buf(),
        source,
    };
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
    let by_path: std::collections::HashMap<&str, &Listed> = before
        .map(|snapshot| snapshot.0.iter().map(|l| (l.path.as_str(), l)).collect())
        .unwrap_or_default();
    let listed = |file: &RemoteFile| by_path.get(file.path.as_str()).copied();
    let fetches: Vec<_> = plan
        .into_iter()
        .map(|(file, relative)| {
            let progress = progress.clone();
            fetch(
                client,
                uri,
                root,
                listed(file),
                staging,
                file,
                relative,
                progress,
            )
        })
        .collect();
    let digests = stream::iter(fetches)
        .buffer_unordered(CONCURRENT_FILES)
        .try_collect::<Vec<FileDigest>>()
        .await?;
    if let (ArtifactRoot::Store(location), Some(before)) = (root, before) {
        let after = store_snapshot(client, uri, location).await?;
        if let Some(what) = before.difference(&after) {
            return Err(RegistryError::ListingChanged {
                uri: uri.to_string(),
                artifact_uri: location.display(),
                what,
            });
        }
    }
    if tokio::fs::symlink_metadata(dest).await.is_ok() {
        return Err(RegistryError::DestinationExists {
            uri: uri.to_string(),
            dest: dest.into(),
        });
    }
    tokio::fs::rename(staging, dest)
        .await
        .map_err(|e| io_error("move the finished download to", dest, e))?;
    Ok(digests)
}

/// The staging directory of a download in progress: removed unless the download completed,
/// also when the download future is dropped half-way (the reload loop cancelled, the runtime
/// shutting down).
///
/// Removing a directory tree is blocking IO, and a `Drop` cannot await, so a drop on the
/// runtime hands the removal to tokio's blocking pool. The pool may discard jobs it has not
/// started when the runtime shuts down; the job owns a [`Removal`], whose own `Drop` then
/// removes the directory where the pool discards it, so a dropped download leaves nothing
/// behind in every case. Outside a runtime the removal happens in place.
struct StagingGuard(Option<PathBuf>);

/// A directory to remove when this value is dropped, wherever that happens.
struct Removal(PathBuf);

impl StagingGuard {
    fn new(staging: PathBuf) -> StagingGuard {
        StagingGuard(Some(staging))
    }

    /// The download completed and the directory was renamed: nothing to remove.
    fn keep(mut self) {
        self.0 = None;
    }

    /// Removes the directory now, on the blocking pool, and waits for it.
    async fn remove(mut self) {
        if let Some(path) = self.0.take() {
            let removal = Removal(path);
            let _ = tokio::task::spawn_blocking(move || drop(removal)).await;
        }
    }
}

impl Drop for StagingGuard {
    fn drop(&mut self) {
        let Some(path) = self.0.take() else {
            return;
        };
        let removal = Removal(path);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(removal))),
            Err(_) => drop(removal),
        }
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.0) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(path = %self.0.display(), %err, "cannot remove a failed download")
            }
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

/// Every path confined, no path listed twice, no path both a file and a directory. `files`
/// must be sorted by path.
fn check_listing(uri: &str, files: &[RemoteFile]) -> Result<(), RegistryError> {
    for file in files {
        confine(&file.path).map_err(|reason| unsafe_path(uri, &file.path, reason.to_string()))?;
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

/// Fetches one file into `staging/relative`, hashing it and checking its size.
#[allow(clippy::too_many_arguments)]
async fn fetch(
    client: &MlflowClient,
    uri: &str,
    root: &ArtifactRoot,
    listed: Option<&Listed>,
    staging: &Path,
    file: &RemoteFile,
    relative: PathBuf,
    progress: Arc<Progress>,
) -> Result<FileDigest, RegistryError> {
    let target = staging.join(&relative);
    let digest = match root {
        ArtifactRoot::Proxied { proxy, path } => {
            proxied::fetch(client, uri, proxy, path, file, &target, &progress).await?
        }
        ArtifactRoot::Local(dir) => {
            local::fetch(uri, dir, &relative, file, target, progress).await?
        }
        ArtifactRoot::Store(location) => {
            let listed = listed.expect("object store downloads are planned from a snapshot");
            store::fetch(
                client.stores(),
                &client.settings().store_access(),
                uri,
                location,
                listed,
                &target,
                &progress,
            )
            .await?
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::MlflowSettings;

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
        let store = |uri: &str| {
            Ok(ArtifactRoot::Store(
                StoreLocation::parse(uri).unwrap().unwrap(),
            ))
        };
        check("s3://bucket/0/x", &tracking, store("s3://bucket/0/x"));
        check("gs://bucket/0/x", &tracking, store("gs://bucket/0/x"));
        check(
            "https://bucket.example/model",
            &tracking,
            store("https://bucket.example/model"),
        );
        check("s3://Bucket/0/x", &tracking, Err("not a bucket name"));
        check(
            "dbfs:/databricks/x",
            &tracking,
            Err("dbfs:/ is the Databricks file system"),
        );
        check(
            "hdfs://nn/x",
            &tracking,
            Err("cannot read 'hdfs:' locations"),
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

    /// Entries of `dir`, by name.
    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_dropped_staging_guard_removes_its_directory() {
        let out = tempfile::tempdir().unwrap();
        let staging = out.path().join(".v1.partial-0");

        // Outside a runtime: in place.
        std::fs::create_dir_all(staging.join("sub")).unwrap();
        drop(StagingGuard::new(staging.clone()));
        assert_eq!(
            entries(out.path()),
            Vec::<String>::new(),
            "outside a runtime"
        );

        // Held by a task that the runtime drops as it shuts down: gone with the runtime.
        std::fs::create_dir_all(staging.join("sub")).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let (held, is_held) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let _guard = StagingGuard::new(staging);
            held.send(()).unwrap();
            std::future::pending::<()>().await
        });
        is_held.recv().unwrap();
        drop(runtime);
        assert_eq!(entries(out.path()), Vec::<String>::new(), "at shutdown");
    }

    #[test]
    fn a_dropped_download_leaves_nothing_behind() {
        // A proxy that accepts the file's connection and never answers holds the download
        // half-way, with its staging directory on disk.
        let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let resolution = Resolution {
            artifact_uri: format!(
                "http://{}/api/2.0/mlflow-artifacts/artifacts/0/x",
                proxy.local_addr().unwrap()
            ),
            ..local_resolution(
                Path::new("/unused"),
                vec![RemoteFile {
                    path: "MLmodel".into(),
                    size: Some(3),
                }],
            )
        };
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("v1");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let client = MlflowClient::new(MlflowSettings::default()).unwrap();
        let task = runtime
            .spawn(async move { download(&client, &resolution, &dest, &Default::default()).await });
        let _connection = proxy.accept().unwrap();
        let staged = entries(out.path());
        assert!(
            staged.len() == 1 && staged[0].starts_with(".v1.partial-"),
            "{staged:?}"
        );
        task.abort();
        drop(runtime);
        assert_eq!(entries(out.path()), Vec::<String>::new());
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
        let digests = download(
            &client,
            &local_resolution(source.path(), files),
            &dest,
            &Default::default(),
        )
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
                let err = download(&client, &resolution, &dest, &Default::default())
                    .await
                    .unwrap_err();
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
        let err = download(&client, &resolution, &dest, &Default::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
    }
}

/// Properties of listings and artifact URIs on generated inputs (`proptest`), beside the
/// examples in `tests`.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A listed path: mostly plain, sometimes each kind of hostile spelling.
    fn listed_path() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "([a-c]{1,2}/){0,2}[a-c]{1,2}",
            1 => prop::sample::select(vec![
                "../x", "a/../../x", "/etc/passwd", "a\\b", "./a", "a//b", "a/", "", "a\0b",
            ])
            .prop_map(str::to_string),
            1 => ".{0,8}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// A listing passes exactly when every path is confined, none is listed twice and none
        /// is the directory of another; a listing that passes can be written out as files.
        #[test]
        fn listings_pass_exactly_when_they_can_be_written(
            paths in prop::collection::vec(listed_path(), 0..8),
        ) {
            let files: Vec<RemoteFile> = paths
                .iter()
                .map(|p| RemoteFile { path: p.clone(), size: Some(1) })
                .collect();
            let unique = paths.iter().collect::<BTreeSet<_>>().len() == paths.len();
            let nested = paths
                .iter()
                .any(|a| paths.iter().any(|b| b.starts_with(&format!("{a}/"))));
            let confined = paths.iter().all(|p| confine(p).is_ok());
            match check_listing("models:/s/1", &files) {
                Ok(()) => {
                    prop_assert!(confined && unique && !nested, "{paths:?} passed");
                    let dir = tempfile::tempdir().unwrap();
                    for path in &paths {
                        let target = dir.path().join(confine(path).unwrap());
                        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                        std::fs::write(&target, b"x").unwrap();
                    }
                }
                Err(error) => {
                    prop_assert!(!(confined && unique && !nested), "{paths:?}: {error}");
                    prop_assert!(!error.is_transient());
                    prop_assert!(error.to_string().contains("models:/s/1"), "{error}");
                }
            }
        }

        /// Any artifact URI maps onto a backend or is refused with a reason; a local root is
        /// always absolute.
        #[test]
        fn artifact_uris_map_or_are_refused(uri in prop_oneof![
            ".{0,30}",
            "(s3|gs|wasbs|abfss|https?|file|mlflow-artifacts|dbfs|runs|models):/{0,3}[a-z0-9@./_-]{0,20}",
        ]) {
            let tracking = Url::parse("http://127.0.0.1:5000/").unwrap();
            for server in [Ok(&tracking), Err("no tracking server")] {
                match artifact_root(&uri, server) {
                    Ok(ArtifactRoot::Local(dir)) => prop_assert!(dir.is_absolute(), "{uri:?}: {dir:?}"),
                    Ok(_) => {}
                    Err(RootError::NoServer(why) | RootError::Unsupported(why)) => {
                        prop_assert!(!why.is_empty());
                    }
                }
            }
        }
    }
}

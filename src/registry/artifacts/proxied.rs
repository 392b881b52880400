//! The tracking server's artifact proxy (`/api/2.0/mlflow-artifacts/artifacts`): listing a
//! directory tree with `GET .../artifacts?path=` one level at a time, and streaming each file
//! from `GET .../artifacts/<path>` into the staging directory, hashed and size-checked on the
//! way. Every request goes through [`MlflowClient`], so auth, TLS, timeouts and retries are
//! the same as for the registry's own calls.

use std::path::Path;

use reqwest::Url;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::{unsafe_path, MAX_DIRECTORIES, MAX_FILES};
use crate::files::{confine, hex, FileDigest};
use crate::registry::client::{error_chain, MlflowClient};
use crate::registry::{rest, RegistryError, RemoteFile};

/// Lists every file below `root` on the proxy at `proxy`, directories walked depth first.
pub(super) async fn list(
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
            confine(&path).map_err(|reason| unsafe_path(uri, &path, reason.to_string()))?;
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

/// Streams `file` (below `root` on the proxy) into `target`, which must not exist; stops as
/// soon as more bytes arrive than the listing announced.
pub(super) async fn fetch(
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

//! The tracking server's artifact proxy (`/api/2.0/mlflow-artifacts/artifacts`): which URIs
//! name it ([`locate`]: `mlflow-artifacts:` and proxy `http(s)://` URLs), listing a directory
//! tree with `GET .../artifacts?path=` one level at a time, and streaming each file from
//! `GET .../artifacts/<path>` into the staging directory, hashed and size-checked on the way.
//! Every request goes through [`MlflowClient`], so auth, TLS, timeouts and retries are the
//! same as for the registry's own calls.

use std::path::Path;

use reqwest::Url;

use super::{unsafe_path, ArtifactRoot, RootError, Sink, MAX_DIRECTORIES, MAX_FILES};
use crate::files::{confine, FileDigest};
use crate::registry::client::{error_chain, MlflowClient};
use crate::registry::{rest, uri, Progress, RegistryError, RemoteFile};

/// The proxy's route, below the tracking server's base URL.
const ROUTE: [&str; 4] = ["api", "2.0", "mlflow-artifacts", "artifacts"];
pub(super) const ANCHOR: &str = "/api/2.0/mlflow-artifacts/artifacts";

/// The proxy location an artifact URI names, or `None` when it does not name the proxy.
/// `mlflow-artifacts:` URIs take the tracking server's scheme and path prefix, and its host
/// unless they name their own, as MLflow's `MlflowArtifactsRepository.resolve_uri` does;
/// `http(s)://` URLs must contain the proxy's route.
pub(super) fn locate(
    artifact_uri: &str,
    tracking: Result<&Url, &str>,
) -> Option<Result<ArtifactRoot, RootError>> {
    if let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") {
        return Some(from_scheme(rest, tracking));
    }
    if artifact_uri.starts_with("http://") || artifact_uri.starts_with("https://") {
        return Some(from_url(artifact_uri));
    }
    None
}

/// `rest` is everything after `mlflow-artifacts:`.
fn from_scheme(rest: &str, tracking: Result<&Url, &str>) -> Result<ArtifactRoot, RootError> {
    let unsupported = |why: &str| RootError::Unsupported(why.to_string());
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
        .extend(ROUTE);
    Ok(ArtifactRoot::Proxied {
        proxy,
        path: path.trim_matches('/').to_string(),
    })
}

fn from_url(artifact_uri: &str) -> Result<ArtifactRoot, RootError> {
    let unsupported = |why: &str| RootError::Unsupported(why.to_string());
    let url = Url::parse(artifact_uri).map_err(|_| unsupported("it is not a valid URL"))?;
    let Some((before, after)) = url.path().split_once(ANCHOR) else {
        return Err(unsupported(
            "plain http(s) artifact stores are not supported; serve artifacts through the \
             MLflow tracking server (mlflow server --serve-artifacts)",
        ));
    };
    let path = uri::percent_decode(after.trim_matches('/'))
        .ok_or_else(|| unsupported("the path has an invalid percent escape"))?;
    let mut proxy = url.clone();
    proxy.set_path(&format!("{before}{ANCHOR}"));
    proxy.set_query(None);
    Ok(ArtifactRoot::Proxied { proxy, path })
}

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
    progress: &Progress,
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
    let mut sink = Sink::create(uri, target, progress).await?;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(err) => {
                return Err(RegistryError::Interrupted {
                    uri: uri.to_string(),
                    path: file.path.clone(),
                    received: sink.received(),
                    reason: error_chain(&err),
                })
            }
        };
        let received = sink.received() + chunk.len() as u64;
        if file.size.is_some_and(|expected| received > expected) {
            return Err(RegistryError::SizeMismatch {
                uri: uri.to_string(),
                path: file.path.clone(),
                expected: file.size.unwrap_or(0),
                actual: received,
            });
        }
        sink.write(&chunk).await?;
    }
    sink.finish(&file.path).await
}

//! Artifact locations on this machine (`file://` URIs or absolute paths, as a tracking server
//! with a local artifact store reports them): listing a directory tree and copying each file
//! into the staging directory, hashed on the way. Symbolic links and special files are refused
//! rather than followed, so a listing cannot reach outside the model directory. The work is
//! blocking file IO, so both entry points run it on tokio's blocking pool.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::{unsafe_path, MAX_FILES};
use crate::files::{hex, FileDigest};
use crate::registry::{Progress, RegistryError, RemoteFile};

/// Lists every regular file below `root` (unsorted).
pub(super) async fn list(
    uri: &str,
    artifact_uri: &str,
    root: &Path,
) -> Result<Vec<RemoteFile>, RegistryError> {
    let (uri, artifact_uri, root) = (uri.to_string(), artifact_uri.to_string(), root.to_owned());
    tokio::task::spawn_blocking(move || list_blocking(&uri, &artifact_uri, &root))
        .await
        .expect("listing a local directory does not panic")
}

/// Copies `root/relative` (listed as `file`) to `target`, which must not exist.
pub(super) async fn fetch(
    uri: &str,
    root: &Path,
    relative: &Path,
    file: &RemoteFile,
    target: PathBuf,
    progress: Arc<Progress>,
) -> Result<FileDigest, RegistryError> {
    let (uri, source, file) = (uri.to_string(), root.join(relative), file.clone());
    tokio::task::spawn_blocking(move || copy_blocking(&uri, &source, &file, &target, &progress))
        .await
        .expect("copying a local file does not panic")
}

fn list_blocking(
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

fn copy_blocking(
    uri: &str,
    source: &Path,
    file: &RemoteFile,
    target: &Path,
    progress: &Progress,
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
        progress.add(read as u64);
    }
    output.sync_all().map_err(io_error("write", target))?;
    progress.file_done();
    Ok(FileDigest {
        path: file.path.clone(),
        size: copied,
        sha256: hex(&hasher.finalize()),
    })
}

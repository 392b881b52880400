//! Local sources: a model directory (or `file://` path) and a `.zip` bundle. Each check
//! copies or extracts the source into staging first, so the gate never reads a directory that
//! is being rewritten, then identifies it by the digest of its files; a directory that changed
//! during the copy is discarded and retried. All file work runs on the blocking pool.

use std::path::{Path, PathBuf};

use super::cache::Manifest;
use super::decide::{Action, Identity};
use super::report::Outcome;
use super::{on_disk, publish, ReloadError, Reloader};
use crate::model::load::{combined_digest, digest_dir};
use crate::model::{self, FileDigest};

/// What kind of local source.
#[derive(Clone, Copy, Debug)]
pub enum Form {
    Directory,
    Zip,
}

/// A local source copied into staging.
struct Staged {
    /// The model root inside staging (a bundle may hold it one folder down).
    root: PathBuf,
    /// The staging directory to remove once done.
    staging: PathBuf,
    digests: Vec<FileDigest>,
    /// Digest of every file's path and content: the version of a local model.
    digest: String,
}

/// One check of a local source.
pub async fn check(reloader: &Reloader, path: &Path, form: Form) -> Outcome {
    let staging = reloader.cache.staging_path();
    let max_bundle_bytes = reloader.config.max_bundle_bytes;
    let source = path.to_path_buf();
    let staged = match on_disk(move || stage(&source, staging, form, max_bundle_bytes)).await {
        Ok(Ok(staged)) => staged,
        Ok(Err(error)) | Err(error) => {
            return Outcome::Failed {
                version: None,
                error,
            }
        }
    };
    let found = Identity {
        name: reloader.local_name.clone(),
        version: format!("local-{}", &staged.digest[..12]),
        key: staged.digest.clone(),
    };
    match reloader.decide(&found, None) {
        Action::KeepLive => {
            discard(staged.staging).await;
            Outcome::Unchanged {
                version: found.version,
            }
        }
        Action::SkipKnownBad { why } => {
            discard(staged.staging).await;
            Outcome::SkippedBad {
                version: found.version,
                why,
            }
        }
        Action::LoadCached(_) | Action::Fetch => {
            let dest = reloader
                .cache
                .model_dir(&format!("local-{}", found.name), &staged.digest[..12]);
            let cache = reloader.cache.clone();
            let moved_dest = dest.clone();
            let root = staged.root;
            let staging = staged.staging;
            let moved = on_disk(move || {
                cache.remove(&moved_dest);
                let moved = move_into(&root, &moved_dest);
                let _ = std::fs::remove_dir_all(&staging);
                moved
            })
            .await;
            if let Err(error) = moved.and_then(|moved| moved) {
                return Outcome::Failed {
                    version: Some(found.version),
                    error,
                };
            }
            let manifest = Manifest {
                uri: reloader.uri.clone(),
                name: found.name.clone(),
                version: found.version.clone(),
                aliases: Vec::new(),
                model_id: None,
                run_id: None,
                listing_key: found.key.clone(),
                digests: staged.digests,
                dir: dest,
            };
            publish::load_and_publish(reloader, manifest, found).await
        }
    }
}

/// Copies or extracts `source` into `staging` and digests it. Blocking. On failure nothing
/// is left in staging.
fn stage(
    source: &Path,
    staging: PathBuf,
    form: Form,
    max_bundle_bytes: u64,
) -> Result<Staged, ReloadError> {
    let staged = (|| {
        let root = match form {
            Form::Zip => model::bundle::extract(source, &staging, max_bundle_bytes)?,
            Form::Directory => {
                copy_stable(source, &staging)?;
                staging.clone()
            }
        };
        let digests = digest_dir(&root)?;
        Ok::<_, ReloadError>((root, digests))
    })();
    match staged {
        Ok((root, digests)) => Ok(Staged {
            root,
            staging,
            digest: combined_digest(&digests),
            digests,
        }),
        Err(error) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(error)
        }
    }
}

/// Copies `dir` to `to`, and fails with [`ReloadError::StillChanging`] if any file's name,
/// size or modification time changed during the copy.
fn copy_stable(dir: &Path, to: &Path) -> Result<(), ReloadError> {
    let copy_error = |source| ReloadError::Copy {
        dir: dir.to_path_buf(),
        source,
    };
    let before = super::watch::snapshot(dir).map_err(copy_error)?;
    copy_dir(dir, to).map_err(copy_error)?;
    if super::watch::snapshot(dir).map_err(copy_error)? != before {
        return Err(ReloadError::StillChanging {
            dir: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// Copies a directory tree. Symbolic links are followed and their targets copied (mounted
/// volumes such as Kubernetes ConfigMaps are made of links); other special files are skipped.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    if !from.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such directory",
        ));
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let file_type = entry.file_type()?;
        let target = to.join(entry.file_name());
        if file_type.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if file_type.is_file() {
            std::fs::copy(entry.path(), &target)?;
        } else if file_type.is_symlink() {
            let resolved = std::fs::canonicalize(entry.path())?;
            if resolved.is_dir() {
                copy_dir(&resolved, &target)?;
            } else {
                std::fs::copy(resolved, &target)?;
            }
        }
    }
    Ok(())
}

/// Moves a staged model root into its cache directory. Blocking.
fn move_into(root: &Path, dest: &Path) -> Result<(), ReloadError> {
    let cache_error = |source| ReloadError::Cache {
        dir: dest.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dest.parent().expect("cache directories have parents"))
        .map_err(cache_error)?;
    std::fs::rename(root, dest).map_err(cache_error)
}

/// Removes a staging directory that is not needed.
async fn discard(staging: PathBuf) {
    let _ = on_disk(move || std::fs::remove_dir_all(staging)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (path, content) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
    }

    #[test]
    fn staging_a_directory_copies_and_digests_it() {
        let source = tempfile::tempdir().unwrap();
        write(source.path(), &[("MLmodel", "m"), ("sub/model.onnx", "g")]);
        let area = tempfile::tempdir().unwrap();
        let staging = area.path().join("s1");
        let staged = stage(source.path(), staging.clone(), Form::Directory, 1 << 20).unwrap();
        assert_eq!(staged.root, staging);
        assert_eq!(
            std::fs::read_to_string(staging.join("sub/model.onnx")).unwrap(),
            "g"
        );
        let paths: Vec<&str> = staged.digests.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["MLmodel", "sub/model.onnx"]);

        // The same content staged again has the same digest; other content another one.
        let again = stage(
            source.path(),
            area.path().join("s2"),
            Form::Directory,
            1 << 20,
        )
        .unwrap();
        assert_eq!(again.digest, staged.digest);
        write(source.path(), &[("MLmodel", "m2")]);
        let changed = stage(
            source.path(),
            area.path().join("s3"),
            Form::Directory,
            1 << 20,
        )
        .unwrap();
        assert_ne!(changed.digest, staged.digest);
    }

    #[test]
    fn a_failed_stage_leaves_nothing_behind() {
        let area = tempfile::tempdir().unwrap();
        let staging = area.path().join("s");
        let missing = area.path().join("no-such-model");
        let error = stage(&missing, staging.clone(), Form::Directory, 1 << 20)
            .err()
            .expect("a missing directory cannot be staged");
        assert!(matches!(error, ReloadError::Copy { .. }), "{error}");
        assert!(!error.is_transient());
        assert!(!staging.exists());
        let error = stage(
            &missing.with_extension("zip"),
            staging.clone(),
            Form::Zip,
            1 << 20,
        )
        .err()
        .expect("a missing bundle cannot be staged");
        assert!(matches!(error, ReloadError::Bundle(_)), "{error}");
        assert!(!staging.exists());
    }

    #[test]
    fn moving_into_the_cache_creates_the_model_folder() {
        let area = tempfile::tempdir().unwrap();
        let root = area.path().join("staged");
        write(&root, &[("MLmodel", "m")]);
        let dest = area.path().join("cache/local-m/abc");
        move_into(&root, &dest).unwrap();
        assert!(dest.join("MLmodel").is_file());
        assert!(!root.exists());
    }
}

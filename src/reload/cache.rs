//! The model cache: validated models on disk, keyed by name and version, with a manifest of
//! their digests beside each, plus a "last known good" record per `MODEL_URI` so a restart
//! with the registry down still serves. Only the reload pipeline writes here.
//!
//! Layout under `cache_dir`:
//! - `<name>/<version>/` — the model files (only complete downloads get here, renamed in);
//! - `<name>/<version>.json` — its [`Manifest`], written once the model passed the gate, so a
//!   version without one is not trusted (it is downloaded again);
//! - `last-good/<sha256 of MODEL_URI>.json` — the manifest of what that URI last served;
//! - `.staging/` — local copies in progress, and `<name>/.<version>.partial-<n>/` — downloads
//!   in progress (both removed at startup: a crash can leave them behind).
//!
//! Manifests and last-good records are written durably (temporary file, fsync, rename, fsync
//! of the directory), so a crash or power loss leaves the old record or the new, never a torn
//! one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::files::{hex, FileDigest};

/// What is known about a cached model.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// The `MODEL_URI` it was resolved from.
    pub uri: String,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub model_id: Option<String>,
    pub run_id: Option<String>,
    /// Identifies the registry listing (paths and sizes) the files came from.
    pub listing_key: String,
    pub digests: Vec<FileDigest>,
    /// The model directory.
    pub dir: PathBuf,
}

/// The cache rooted at `cache_dir`.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// Opens (creating) the cache and clears leftovers of interrupted downloads.
    pub fn open(root: &Path) -> std::io::Result<Cache> {
        std::fs::create_dir_all(root)?;
        let staging = root.join(".staging");
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        std::fs::create_dir_all(&staging)?;
        for leftover in leftovers(root)? {
            tracing::info!(path = %leftover.display(), "removing what an interrupted process left");
            if leftover.is_dir() {
                std::fs::remove_dir_all(&leftover)?;
            } else {
                std::fs::remove_file(&leftover)?;
            }
        }
        Ok(Cache {
            root: root.to_path_buf(),
        })
    }

    /// Where a model version lives.
    pub fn model_dir(&self, name: &str, version: &str) -> PathBuf {
        self.root.join(sanitize(name)).join(sanitize(version))
    }

    /// A fresh path under `.staging` (not created).
    pub fn staging_path(&self) -> PathBuf {
        self.root
            .join(".staging")
            .join(format!("{:016x}", fastrand::u64(..)))
    }

    /// The manifest of a cached model, if the model and its manifest are both there.
    pub fn manifest(&self, name: &str, version: &str) -> Option<Manifest> {
        let dir = self.model_dir(name, version);
        let text = std::fs::read_to_string(manifest_path(&dir)).ok()?;
        let manifest: Manifest = serde_json::from_str(&text).ok()?;
        (dir.join("MLmodel").is_file() && manifest.dir == dir).then_some(manifest)
    }

    /// Records a validated model's manifest (atomically: write then rename).
    pub fn write_manifest(&self, manifest: &Manifest) -> std::io::Result<()> {
        write_atomic(
            &manifest_path(&manifest.dir),
            &serde_json::to_vec_pretty(manifest)?,
        )
    }

    /// Removes a model version and its manifest.
    pub fn remove(&self, dir: &Path) {
        let _ = std::fs::remove_file(manifest_path(dir));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Remembers what `manifest.uri` served last.
    pub fn record_last_good(&self, manifest: &Manifest) -> std::io::Result<()> {
        let dir = self.root.join("last-good");
        std::fs::create_dir_all(&dir)?;
        write_atomic(
            &dir.join(last_good_name(&manifest.uri)),
            &serde_json::to_vec_pretty(manifest)?,
        )
    }

    /// What `uri` served last, if its files are still cached.
    pub fn last_good(&self, uri: &str) -> Option<Manifest> {
        let text =
            std::fs::read_to_string(self.root.join("last-good").join(last_good_name(uri))).ok()?;
        let manifest: Manifest = serde_json::from_str(&text).ok()?;
        manifest.dir.join("MLmodel").is_file().then_some(manifest)
    }

    /// Keeps the `keep` most recently written versions beside `live_dir` (the live one
    /// always), removing older ones, so rollbacks to recent versions need no download while
    /// the disk stays bounded.
    pub fn prune(&self, live_dir: &Path, keep: usize) {
        let Some(folder) = live_dir.parent() else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(folder) else {
            return;
        };
        let mut versions: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| {
                let modified = std::fs::metadata(manifest_path(&e.path()))
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (modified, e.path())
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        for (_, dir) in versions.into_iter().skip(keep) {
            if dir != live_dir {
                tracing::info!(dir = %dir.display(), "pruning an old cached model");
                self.remove(&dir);
            }
        }
    }
}

/// What an interrupted process can leave in the model folders and `last-good/`: download
/// directories (`.<version>.partial-<n>/`) and temporary files of atomic writes
/// (`.<name>.tmp-<n>`).
fn leftovers(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for model in std::fs::read_dir(root)? {
        let model = model?;
        if !model.file_type()?.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(model.path())? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && (name.contains(".partial-") || name.contains(TEMPORARY)) {
                found.push(entry.path());
            }
        }
    }
    Ok(found)
}

fn manifest_path(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".json");
    dir.with_file_name(name)
}

fn last_good_name(uri: &str) -> String {
    format!("{}.json", &hex(&Sha256::digest(uri.as_bytes()))[..32])
}

/// Writes `path` so that a crash or power loss at any moment leaves either the old content
/// or the new one, never a torn or empty file: write a temporary file beside it, flush it to
/// the disk, rename it over `path`, then flush the directory so the rename itself is durable.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = temporary_path(path);
    let written = (|| {
        let mut file = std::fs::File::create_new(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(err) = written.and_then(|()| std::fs::rename(&temporary, path)) {
        let _ = std::fs::remove_file(&temporary);
        return Err(err);
    }
    sync_parent(path)
}

/// Where [`write_atomic`] writes before the rename: `.<name>.tmp-<n>` beside `path`.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}{TEMPORARY}{:08x}", fastrand::u32(..)))
}

/// Marks the temporary files of [`write_atomic`].
const TEMPORARY: &str = ".tmp-";

/// Flushes the directory holding `path`, so that a rename into it survives a power loss.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) => std::fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// A path component from a registry name or version: `[A-Za-z0-9._-]` kept, the rest `_`,
/// never `.` or `..`.
pub fn sanitize(part: &str) -> String {
    let cleaned: String = part
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match cleaned.as_str() {
        "" | "." | ".." => "_".to_string(),
        _ => cleaned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizing() {
        let cases = [
            ("sentiment", "sentiment"),
            ("my model/v2", "my_model_v2"),
            ("..", "_"),
            ("", "_"),
            ("a..b", "a..b"),
            ("é", "_"),
        ];
        for (input, expected) in cases {
            assert_eq!(sanitize(input), expected);
        }
    }

    #[test]
    fn manifests_and_last_good_round_trip() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let dir = cache.model_dir("sentiment", "3");
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(
            cache.manifest("sentiment", "3"),
            None,
            "no manifest, no model"
        );
        std::fs::write(dir.join("MLmodel"), "flavors: {}").unwrap();
        let manifest = Manifest {
            uri: "models:/sentiment@champion".into(),
            name: "sentiment".into(),
            version: "3".into(),
            aliases: vec!["champion".into()],
            model_id: None,
            run_id: None,
            listing_key: "k".into(),
            digests: vec![],
            dir: dir.clone(),
        };
        cache.write_manifest(&manifest).unwrap();
        assert_eq!(cache.manifest("sentiment", "3"), Some(manifest.clone()));
        cache.record_last_good(&manifest).unwrap();
        assert_eq!(
            cache.last_good("models:/sentiment@champion"),
            Some(manifest.clone())
        );
        assert_eq!(cache.last_good("models:/other@champion"), None);
        cache.remove(&dir);
        assert_eq!(
            cache.last_good("models:/sentiment@champion"),
            None,
            "files gone, record unusable"
        );
    }

    #[test]
    fn prune_keeps_the_newest_and_the_live_version() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let mut dirs = Vec::new();
        for version in 1..=4 {
            let dir = cache.model_dir("m", &version.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(manifest_path(&dir), "{}").unwrap();
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000 * version);
            std::fs::File::options()
                .write(true)
                .open(manifest_path(&dir))
                .unwrap()
                .set_modified(at)
                .unwrap();
            dirs.push(dir);
        }
        cache.prune(&dirs[0], 2);
        let kept: Vec<bool> = dirs.iter().map(|d| d.exists()).collect();
        assert_eq!(
            kept,
            [true, false, true, true],
            "v4 and v3 are newest, v1 is live"
        );
    }

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporaries() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("m.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new content").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new content");
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["m.json"]);
        let missing = root.path().join("no-such-dir/m.json");
        assert!(write_atomic(&missing, b"x").is_err());
    }

    #[test]
    fn staging_and_interrupted_downloads_are_cleared_on_open() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let partial = cache.staging_path();
        std::fs::create_dir_all(&partial).unwrap();
        let download = root.path().join("sentiment/.3.partial-00ff00ff00ff00ff");
        std::fs::create_dir_all(download.join("sub")).unwrap();
        let kept = cache.model_dir("sentiment", "2");
        std::fs::create_dir_all(&kept).unwrap();
        std::fs::create_dir_all(root.path().join("last-good")).unwrap();
        let torn = temporary_path(&root.path().join("last-good/abc.json"));
        std::fs::write(&torn, "{\"uri\":").unwrap();
        Cache::open(root.path()).unwrap();
        assert!(!partial.exists());
        assert!(!download.exists());
        assert!(!torn.exists());
        assert!(kept.exists(), "complete versions stay");
    }
}

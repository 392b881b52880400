//! The model cache: validated models on disk, one folder per configured source, each with its
//! versions, a manifest of their digests beside each, and a "last known good" record so a
//! restart with the registry down still serves. Only the reload pipeline writes here.
//!
//! Layout under `cache_dir`, one folder per source (`<name>-<hash>`: the configured model name
//! for people, and the first 12 hex digits of the SHA-256 of the URI as configured, so two
//! sources with the same name never share a folder):
//! - `<folder>/versions/<version>/` — the model files (only complete downloads get here,
//!   renamed in);
//! - `<folder>/versions/<version>.json` — its [`Manifest`], written once the model passed the
//!   gate, so a version without one is not trusted (it is downloaded again);
//! - `<folder>/last-good.json` — the manifest of what this source last served;
//! - `<folder>/.lock` — held (`flock`) by the process that uses the folder, with its pid in it:
//!   a second process serving the same source from the same `cache_dir` is refused at start,
//!   so no process ever prunes or clears what another one serves;
//! - `<folder>/.staging/` — local copies in progress, and `versions/.<version>.partial-<n>/` —
//!   downloads in progress (both removed when the folder is opened: a crash can leave them).
//!
//! A version is removed only for what is wrong with the version itself (it failed the gate), by
//! pruning beyond the newest few, or to keep every source's versions together within
//! `cache_max_bytes` ([`super::disk`], which says how "least recently used" is recorded: the
//! manifest's modification time); never the live version or the last known good one, and
//! pruning or the budget never one a check holds ([`Cache::hold`]). Removals go through one
//! lock per folder, for a rename out of `versions/` (to `.<version>.evicted-<n>`, deleted right
//! after, or at the next open after a crash) and the manifest's removal, so a version is either
//! whole with its manifest or gone, whoever looks.
//!
//! Manifests and last-good records are written durably (temporary file, fsync, rename, fsync
//! of the directory), so a crash or power loss leaves the old record or the new, never a torn
//! one.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::disk::{Cached, DiskBudget, Folder};
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
    /// For a bucket `MODEL_URI` that is a pointer object: the location it named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer_target: Option<String>,
}

impl Manifest {
    /// What is needed to load `model`, served for `uri`, again from its directory (without
    /// the listing key, which only the check that found it knows).
    pub fn of(model: &crate::model::Model, uri: &str) -> Manifest {
        Manifest {
            uri: uri.to_string(),
            name: model.info.name.clone(),
            version: model.info.version.clone(),
            aliases: model.info.aliases.clone(),
            model_id: model.info.model_id.clone(),
            run_id: model.info.run_id.clone(),
            listing_key: String::new(),
            digests: model.info.digests.clone(),
            dir: model.info.dir.clone(),
            pointer_target: model.info.pointer_target.clone(),
        }
    }
}

/// Why a source's cache folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The folder cannot be created, locked, read or cleared.
    #[error("cannot use the model cache at {dir}: {source}; set HOTSERVE_CACHE_DIR (or --cache-dir) to a writable directory")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the folder's lock: it serves the same source from the same
    /// `cache_dir`, and each would prune and clear what the other serves.
    #[error("the model cache folder {dir} is in use by another hotserve{holder} serving the same model; give each hotserve its own cache directory (HOTSERVE_CACHE_DIR or --cache-dir)")]
    InUse {
        dir: PathBuf,
        /// ` (pid N)` when the lock file names it, else empty.
        holder: String,
    },
}

/// One source's folder of the cache, locked for this process while any clone lives.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

/// What the clones of a [`Cache`] share.
struct Inner {
    /// `<cache_dir>/<name>-<hash>`.
    root: PathBuf,
    /// The URI as configured: the key of the folder, and the only URI its records hold.
    uri: String,
    /// The open, locked `.lock` file; the lock ends when the last clone is dropped.
    _lock: File,
    /// The versions checks hold ([`Hold`]; a version held twice is listed twice). Removals
    /// decide and rename under this lock.
    held: Mutex<Vec<PathBuf>>,
    /// Where the live version of this folder's source is ([`Cache::follow_live`]): it stays.
    live: OnceLock<LiveDir>,
    /// The process's disk budget, settled after each prune.
    budget: Arc<DiskBudget>,
}

/// The directory of a source's live version, when it has one.
type LiveDir = Box<dyn Fn() -> Option<PathBuf> + Send + Sync>;

/// Keeps a version in the cache while it lives: pruning and the disk budget leave it alone
/// (what is wrong with it can still remove it). Made by [`Cache::hold`].
#[must_use = "the version is held only while the Hold lives"]
pub struct Hold {
    inner: Arc<Inner>,
    dir: PathBuf,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut held = self.inner.held();
        if let Some(index) = held.iter().position(|dir| *dir == self.dir) {
            held.swap_remove(index);
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("root", &self.inner.root)
            .field("uri", &self.inner.uri)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// Opens (creating and locking) the folder of `uri`, configured as `name`, under
    /// `cache_dir`; clears leftovers of interrupted work, and adopts the last known good version
    /// a previous release kept in its own layout (so an upgrade with the registry down still
    /// serves); then registers the folder with `budget`. Blocking.
    pub fn open(
        cache_dir: &Path,
        name: &str,
        uri: &str,
        budget: &Arc<DiskBudget>,
    ) -> Result<Cache, CacheError> {
        let root = folder(cache_dir, name, uri);
        let io = |source| CacheError::Io {
            dir: root.clone(),
            source,
        };
        std::fs::create_dir_all(root.join(VERSIONS)).map_err(io)?;
        let lock = lock(&root)?;
        let cache = Cache {
            inner: Arc::new(Inner {
                root: root.clone(),
                uri: uri.to_string(),
                _lock: lock,
                held: Mutex::default(),
                live: OnceLock::new(),
                budget: budget.clone(),
            }),
        };
        let staging = root.join(".staging");
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io)?;
        }
        std::fs::create_dir_all(&staging).map_err(io)?;
        for leftover in leftovers(&root).map_err(io)? {
            tracing::info!(path = %leftover.display(), "removing what an interrupted process left");
            let removed = if leftover.is_dir() {
                std::fs::remove_dir_all(&leftover)
            } else {
                std::fs::remove_file(&leftover)
            };
            removed.map_err(io)?;
        }
        if cache.last_good().is_none() {
            for legacy in [cache_dir.to_path_buf(), cache_dir.join(sanitize(name))] {
                if cache.adopt_legacy(&legacy) {
                    break;
                }
            }
        }
        let folder: Arc<dyn Folder> = cache.inner.clone();
        budget.register(Arc::downgrade(&folder));
        Ok(cache)
    }

    /// Tells the folder where its source's live version is (the live model's directory), so
    /// that it stays. Once; later calls are ignored.
    pub fn follow_live(&self, live_dir: impl Fn() -> Option<PathBuf> + Send + Sync + 'static) {
        let _ = self.inner.live.set(Box::new(live_dir));
    }

    /// Holds the version in `dir` until the returned [`Hold`] is dropped: pruning and the disk
    /// budget leave it alone meanwhile.
    pub fn hold(&self, dir: &Path) -> Hold {
        self.inner.held().push(dir.to_path_buf());
        Hold {
            inner: self.inner.clone(),
            dir: dir.to_path_buf(),
        }
    }

    /// The folder of this source.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Where a version lives.
    pub fn version_dir(&self, version: &str) -> PathBuf {
        self.root().join(VERSIONS).join(sanitize(version))
    }

    /// A fresh path under `.staging` (not created).
    pub fn staging_path(&self) -> PathBuf {
        self.root()
            .join(".staging")
            .join(format!("{:016x}", fastrand::u64(..)))
    }

    /// The manifest of a cached version, if the model and its manifest are both there.
    pub fn manifest(&self, version: &str) -> Option<Manifest> {
        let dir = self.version_dir(version);
        let manifest = read_manifest(&manifest_path(&dir))?;
        (dir.join("MLmodel").is_file() && manifest.dir == dir).then_some(manifest)
    }

    /// Records a validated model's manifest (atomically: write then rename).
    pub fn write_manifest(&self, manifest: &Manifest) -> std::io::Result<()> {
        write_atomic(
            &manifest_path(&manifest.dir),
            &serde_json::to_vec_pretty(manifest)?,
        )
    }

    /// Removes a version and its manifest, unless it is `live` or the last known good one
    /// (then it stays, and false is returned).
    pub fn remove(&self, dir: &Path, live: Option<&Path>) -> bool {
        self.discard(dir, |_| live == Some(dir)).is_some()
    }

    /// Remembers what this source served last. The version it served until now (when another)
    /// was used until now: its manifest's time, which orders versions by use ([`super::disk`]),
    /// is set to now.
    pub fn record_last_good(&self, manifest: &Manifest) -> std::io::Result<()> {
        let previous = self.last_good();
        write_atomic(
            &self.root().join(LAST_GOOD),
            &serde_json::to_vec_pretty(manifest)?,
        )?;
        if let Some(previous) = previous.filter(|previous| previous.dir != manifest.dir) {
            if let Err(err) = touch(&manifest_path(&previous.dir)) {
                tracing::debug!(dir = %previous.dir.display(), %err, "cannot mark the model served until now as used");
            }
        }
        Ok(())
    }

    /// What this source served last, if its files are still cached.
    pub fn last_good(&self) -> Option<Manifest> {
        let manifest = read_manifest(&self.root().join(LAST_GOOD))?;
        (manifest.uri == self.inner.uri && manifest.dir.join("MLmodel").is_file())
            .then_some(manifest)
    }

    /// Keeps the `keep` most recently used versions (and always `live_dir`, the live and the last
    /// known good one, and those held), removing older ones, so rollbacks to recent versions need
    /// no download while the disk stays bounded; then settles the disk budget of every source
    /// (`cache_max_bytes`). Only versions with a manifest of this source count; nothing else in
    /// the folder is touched.
    pub fn prune(&self, live_dir: &Path, keep: usize) {
        let mut versions = self.versions();
        versions.sort_by_key(|(used, _)| std::cmp::Reverse(*used));
        for (_, dir) in versions.into_iter().skip(keep) {
            let kept = |held: &[PathBuf]| live_dir == dir || held.contains(&dir);
            if self.discard(&dir, kept) == Some(true) {
                tracing::info!(dir = %dir.display(), "pruning an old cached model");
            }
        }
        let _ = self.inner.budget.settle();
    }

    /// This source's cached versions (with a manifest of this source) and when each was last
    /// used.
    fn versions(&self) -> Vec<(SystemTime, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(self.root().join(VERSIONS)) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|dir| dir.is_dir())
            .filter_map(|dir| {
                let (manifest, used) = self.manifest_at(&dir)?;
                (manifest.dir == dir).then_some((used, dir))
            })
            .collect()
    }

    /// The manifest of the version in `dir` if it is one of this source's, and its time.
    fn manifest_at(&self, dir: &Path) -> Option<(Manifest, SystemTime)> {
        let path = manifest_path(dir);
        let manifest = read_manifest(&path)?;
        let used = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
        (manifest.uri == self.inner.uri).then_some((manifest, used))
    }

    /// The live version's directory, when the source has one.
    fn live_dir(&self) -> Option<PathBuf> {
        (self.inner.live.get()?)()
    }

    /// Removes the version in `dir` and its manifest unless it is the last known good one or
    /// `keep` says it stays (given the held versions): `None` when it stays, else whether it is
    /// gone (or was not there). Decided and renamed away under the folder's lock, deleted after.
    fn discard(&self, dir: &Path, keep: impl FnOnce(&[PathBuf]) -> bool) -> Option<bool> {
        let (gone, trash) = {
            let held = self.inner.held();
            if keep(&held) || self.last_good().is_some_and(|good| good.dir == dir) {
                return None;
            }
            let name = dir.file_name().unwrap_or_default().to_string_lossy();
            let trash = dir.with_file_name(format!(".{name}{EVICTED}{:08x}", fastrand::u32(..)));
            let moved = std::fs::rename(dir, &trash).is_ok();
            if !moved {
                let _ = std::fs::remove_dir_all(dir);
            }
            let _ = std::fs::remove_file(manifest_path(dir));
            (moved || !dir.exists(), moved.then_some(trash))
        };
        if let Some(trash) = trash {
            let _ = std::fs::remove_dir_all(trash);
        }
        Some(gone)
    }

    /// Moves the last known good version of this URI that a previous release recorded under
    /// `legacy` (its `last-good/<sha256 of the URI>.json` and the version directory it names)
    /// into this folder. True when one was adopted.
    fn adopt_legacy(&self, legacy: &Path) -> bool {
        let record = legacy.join("last-good").join(format!(
            "{}.json",
            &hex(&Sha256::digest(self.inner.uri.as_bytes()))[..32]
        ));
        let Some(old) = read_manifest(&record) else {
            return false;
        };
        if old.uri != self.inner.uri || !old.dir.join("MLmodel").is_file() {
            return false;
        }
        let dir = self.version_dir(&old.version);
        let manifest = Manifest {
            dir: dir.clone(),
            ..old.clone()
        };
        let adopted = (|| {
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            std::fs::rename(&old.dir, &dir)?;
            let _ = std::fs::remove_file(manifest_path(&old.dir));
            self.write_manifest(&manifest)?;
            self.record_last_good(&manifest)?;
            std::fs::remove_file(&record)
        })();
        match adopted {
            Ok(()) => {
                tracing::info!(from = %old.dir.display(), to = %dir.display(), version = %old.version, "moved the last known good model of an earlier release's cache layout");
                true
            }
            Err(err) => {
                tracing::warn!(from = %old.dir.display(), %err, "cannot move the last known good model of an earlier release's cache layout; it will be downloaded again");
                false
            }
        }
    }
}

impl Inner {
    fn held(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Folder for Inner {
    fn cached(self: Arc<Self>) -> Vec<Cached> {
        let cache = Cache { inner: self };
        let mut kept: Vec<PathBuf> = cache.inner.held().clone();
        kept.extend(cache.live_dir());
        kept.extend(cache.last_good().map(|good| good.dir));
        cache
            .versions()
            .into_iter()
            .map(|(used, dir)| Cached {
                bytes: size_of_dir(&dir),
                kept: kept.contains(&dir),
                used,
                dir,
            })
            .collect()
    }

    fn evict(self: Arc<Self>, dir: &Path) -> bool {
        let cache = Cache { inner: self };
        let kept = |held: &[PathBuf]| {
            held.iter().any(|held| held == dir)
                || cache.live_dir().as_deref() == Some(dir)
                || cache.manifest_at(dir).is_none()
        };
        cache.discard(dir, kept) == Some(true)
    }
}

/// Where the versions of a folder live.
const VERSIONS: &str = "versions";

/// Marks a version being removed (renamed out of the way first, then deleted).
const EVICTED: &str = ".evicted-";

/// The last known good record of a folder.
const LAST_GOOD: &str = "last-good.json";

/// The folder of `uri`, configured as `name`, under `cache_dir`.
pub fn folder(cache_dir: &Path, name: &str, uri: &str) -> PathBuf {
    let hash = hex(&Sha256::digest(uri.as_bytes()));
    cache_dir.join(format!("{}-{}", sanitize(name), &hash[..12]))
}

/// Takes the folder's lock without waiting and writes this process's pid into the lock file.
fn lock(root: &Path) -> Result<File, CacheError> {
    let path = root.join(".lock");
    let io = |source| CacheError::Io {
        dir: root.to_path_buf(),
        source,
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!(" (pid {pid})"),
                Err(_) => String::new(),
            };
            return Err(CacheError::InUse {
                dir: root.to_path_buf(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(err)) => return Err(io(err)),
    }
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    written.map_err(io)?;
    Ok(file)
}

/// What an interrupted process can leave in a folder: download directories
/// (`versions/.<version>.partial-<n>/`), versions being removed (`versions/.<version>.evicted-<n>/`)
/// and temporary files of atomic writes (`.<name>.tmp-<n>`, in the folder or in `versions/`).
fn leftovers(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for dir in [root.to_path_buf(), root.join(VERSIONS)] {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let interrupted = [".partial-", TEMPORARY, EVICTED]
                .iter()
                .any(|mark| name.contains(mark));
            if name.starts_with('.') && interrupted {
                found.push(entry.path());
            }
        }
    }
    Ok(found)
}

/// The bytes of the files under `dir` (their lengths; symbolic links not followed).
fn size_of_dir(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => size_of_dir(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Sets the modification time of the file at `path` to now, durably.
fn touch(path: &Path) -> std::io::Result<()> {
    let file = File::options().write(true).open(path)?;
    file.set_modified(SystemTime::now())?;
    file.sync_all()
}

fn read_manifest(path: &Path) -> Option<Manifest> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn manifest_path(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".json");
    dir.with_file_name(name)
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
    use std::sync::atomic::Ordering;

    use super::super::disk::Settled;
    use super::*;

    const URI: &str = "models:/sentiment@champion";

    /// The folder of `uri` under `root`, configured as `sentiment`, in an unbounded budget.
    fn open(root: &Path, uri: &str) -> Result<Cache, CacheError> {
        Cache::open(
            root,
            "sentiment",
            uri,
            &DiskBudget::new(None, Arc::default()),
        )
    }

    fn manifest(cache: &Cache, version: &str) -> Manifest {
        Manifest {
            uri: cache.inner.uri.clone(),
            name: "sentiment".into(),
            version: version.into(),
            aliases: vec!["champion".into()],
            model_id: None,
            run_id: None,
            listing_key: format!("k{version}"),
            digests: vec![],
            dir: cache.version_dir(version),
            pointer_target: None,
        }
    }

    /// A cached version with its manifest, last used `at` seconds after the epoch.
    fn cached(cache: &Cache, version: &str, at: u64) -> Manifest {
        sized(cache, version, at, 11)
    }

    /// [`cached`], its files `bytes` long together (at least 11: its `MLmodel`).
    fn sized(cache: &Cache, version: &str, at: u64, bytes: usize) -> Manifest {
        let manifest = manifest(cache, version);
        std::fs::create_dir_all(manifest.dir.join("data")).unwrap();
        std::fs::write(manifest.dir.join("MLmodel"), "flavors: {}").unwrap();
        std::fs::write(manifest.dir.join("data/weights"), vec![0; bytes - 11]).unwrap();
        cache.write_manifest(&manifest).unwrap();
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(at);
        File::options()
            .write(true)
            .open(manifest_path(&manifest.dir))
            .unwrap()
            .set_modified(at)
            .unwrap();
        manifest
    }

    /// When the version in `dir` was last used.
    fn used(dir: &Path) -> std::time::SystemTime {
        std::fs::metadata(manifest_path(dir))
            .unwrap()
            .modified()
            .unwrap()
    }

    /// What is in `<folder>/versions/`, sorted.
    fn listed(cache: &Cache) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(cache.root().join(VERSIONS))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_budget_removes_the_least_recently_used_versions_of_every_source() {
        let root = tempfile::tempdir().unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let budget = DiskBudget::new(Some(500), metrics.clone());
        let a = Cache::open(root.path(), "a", "models:/a@champion", &budget).unwrap();
        let b = Cache::open(root.path(), "b", "s3://models/b", &budget).unwrap();
        let (a1, a2, a3) = (
            sized(&a, "1", 1_000, 100),
            sized(&a, "2", 3_000, 100),
            sized(&a, "3", 5_000, 100),
        );
        let (b1, b2, b3, b4) = (
            sized(&b, "1", 2_000, 100),
            sized(&b, "2", 4_000, 100),
            sized(&b, "3", 6_000, 100),
            sized(&b, "4", 7_000, 100),
        );
        // a serves 2 after 3 (a rollback, say); b serves nothing (not loaded) and a check holds
        // its version 1.
        let a_live = Arc::new(Mutex::new(a2.dir.clone()));
        let serving = a_live.clone();
        a.follow_live(move || Some(serving.lock().unwrap().clone()));
        b.follow_live(|| None);
        a.record_last_good(&a3).unwrap();
        b.record_last_good(&b3).unwrap();
        let held = b.hold(&b1.dir);
        assert_eq!(
            budget.settle(),
            Settled {
                bytes: 500,
                evicted: 2,
                warned: false
            }
        );
        let kept = |versions: &[&Manifest]| -> Vec<bool> {
            versions.iter().map(|m| m.dir.exists()).collect()
        };
        assert_eq!(
            kept(&[&a1, &a2, &a3, &b1, &b2, &b3, &b4]),
            [false, true, true, true, false, true, true],
            "a1 and b2 are the least recently used of those that need not stay"
        );
        assert_eq!(listed(&a), ["2", "2.json", "3", "3.json"], "no trash left");
        assert_eq!(metrics.cache.bytes.load(Ordering::Relaxed), 500);
        assert_eq!(metrics.cache.evictions.load(Ordering::Relaxed), 2);
        assert_eq!(metrics.cache.max_bytes.load(Ordering::Relaxed), 500);

        // Released, b1 is the oldest. A new version of a, made live (and so its last known
        // good), makes room for itself; a3, its last known good until then, was used until now
        // and outlasts b4.
        drop(held);
        let a4 = sized(&a, "4", 8_000, 300);
        a.record_last_good(&a4).unwrap();
        *a_live.lock().unwrap() = a4.dir.clone();
        assert_eq!(budget.settle().evicted, 3);
        assert_eq!(
            kept(&[&a2, &a3, &a4, &b1, &b3, &b4]),
            [false, true, true, false, true, false]
        );
    }

    #[test]
    fn what_must_stay_is_never_removed_even_above_the_bound() {
        let root = tempfile::tempdir().unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let budget = DiskBudget::new(Some(150), metrics.clone());
        let cache = Cache::open(root.path(), "sentiment", URI, &budget).unwrap();
        let (one, two, three) = (
            sized(&cache, "1", 1_000, 100),
            sized(&cache, "2", 2_000, 100),
            sized(&cache, "3", 3_000, 100),
        );
        let live = one.dir.clone();
        cache.follow_live(move || Some(live.clone()));
        cache.record_last_good(&two).unwrap();
        let first = budget.settle();
        assert_eq!((first.bytes, first.evicted, first.warned), (200, 1, true));
        assert!(one.dir.exists() && two.dir.exists() && !three.dir.exists());
        let again = budget.settle();
        assert_eq!(
            (again.bytes, again.evicted, again.warned),
            (200, 0, false),
            "warned once"
        );
    }

    #[test]
    fn unbounded_the_budget_only_adds_up() {
        let root = tempfile::tempdir().unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let budget = DiskBudget::new(None, metrics.clone());
        let cache = Cache::open(root.path(), "sentiment", URI, &budget).unwrap();
        let versions: Vec<Manifest> = (1..=3)
            .map(|v| sized(&cache, &v.to_string(), v * 1_000, 1_000))
            .collect();
        // Without a manifest, a version is not cached yet (a download, the gate): not counted.
        std::fs::create_dir_all(cache.version_dir("4")).unwrap();
        std::fs::write(cache.version_dir("4").join("MLmodel"), "x".repeat(500)).unwrap();
        let settled = budget.settle();
        assert_eq!((settled.bytes, settled.evicted), (3_000, 0));
        assert_eq!(metrics.cache.max_bytes.load(Ordering::Relaxed), 0);
        assert!(versions.iter().all(|m| m.dir.exists()));
        drop(cache);
        assert_eq!(
            budget.settle().bytes,
            0,
            "a folder no longer served leaves the budget"
        );
    }

    #[test]
    fn a_version_held_is_not_pruned_and_the_last_good_one_is_used_until_replaced() {
        let root = tempfile::tempdir().unwrap();
        let cache = open(root.path(), URI).unwrap();
        let versions: Vec<Manifest> = (1..=4)
            .map(|v| cached(&cache, &v.to_string(), 1_000 * v))
            .collect();
        let held = cache.hold(&versions[0].dir);
        cache.prune(&versions[3].dir, 1);
        let kept: Vec<bool> = versions.iter().map(|m| m.dir.exists()).collect();
        assert_eq!(kept, [true, false, false, true], "v1 is held, v4 live");
        drop(held);

        let started = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
        cache.record_last_good(&versions[0]).unwrap();
        assert!(
            used(&versions[0].dir) < started,
            "made last good: its manifest is the gate's"
        );
        cache.record_last_good(&versions[3]).unwrap();
        assert!(
            used(&versions[0].dir) >= started,
            "served until now: used now"
        );
        assert!(used(&versions[3].dir) < started);
    }

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
    fn each_source_has_a_folder_of_its_own() {
        let root = Path::new("/c");
        let mlflow = folder(root, "sentiment", "models:/sentiment@champion");
        let bucket = folder(root, "sentiment", "s3://models/sentiment");
        assert_ne!(mlflow, bucket, "same name, different sources");
        assert!(mlflow.starts_with("/c"));
        let name = mlflow.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("sentiment-") && name.len() == "sentiment-".len() + 12);
        assert_eq!(
            mlflow,
            folder(root, "sentiment", "models:/sentiment@champion")
        );
        assert_ne!(mlflow, folder(root, "other", "models:/sentiment@champion"));
    }

    #[test]
    fn manifests_and_last_good_round_trip() {
        let root = tempfile::tempdir().unwrap();
        let cache = open(root.path(), URI).unwrap();
        let dir = cache.version_dir("3");
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(cache.manifest("3"), None, "no manifest, no model");
        let manifest = cached(&cache, "3", 1_000);
        assert_eq!(cache.manifest("3"), Some(manifest.clone()));
        assert_eq!(cache.last_good(), None);
        cache.record_last_good(&manifest).unwrap();
        assert_eq!(cache.last_good(), Some(manifest.clone()));
        assert!(!cache.remove(&dir, None), "the last known good stays");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(cache.last_good(), None, "files gone, record unusable");
    }

    #[test]
    fn live_and_last_good_versions_are_never_removed() {
        let root = tempfile::tempdir().unwrap();
        let cache = open(root.path(), URI).unwrap();
        let (one, two, three) = (
            cached(&cache, "1", 1_000),
            cached(&cache, "2", 2_000),
            cached(&cache, "3", 3_000),
        );
        cache.record_last_good(&one).unwrap();
        assert!(!cache.remove(&one.dir, Some(&two.dir)));
        assert!(!cache.remove(&two.dir, Some(&two.dir)));
        assert!(cache.remove(&three.dir, Some(&two.dir)));
        assert!(one.dir.exists() && two.dir.exists() && !three.dir.exists());
        assert!(!manifest_path(&three.dir).exists());
    }

    #[test]
    fn prune_keeps_the_newest_the_live_and_the_last_good_version() {
        let root = tempfile::tempdir().unwrap();
        let cache = open(root.path(), URI).unwrap();
        let versions: Vec<Manifest> = (1..=6)
            .map(|v| cached(&cache, &v.to_string(), 1_000 * v))
            .collect();
        cache.record_last_good(&versions[1]).unwrap();
        // Something that is not a version of this source: another URI's manifest, a folder
        // without one. Neither is touched.
        let foreign = Manifest {
            uri: "s3://models/sentiment".into(),
            ..cached(&cache, "foreign", 0)
        };
        cache.write_manifest(&foreign).unwrap();
        std::fs::create_dir_all(cache.root().join(VERSIONS).join("stray")).unwrap();
        cache.prune(&versions[0].dir, 2);
        let kept: Vec<bool> = versions.iter().map(|m| m.dir.exists()).collect();
        assert_eq!(
            kept,
            [true, true, false, false, true, true],
            "v6 and v5 are newest, v1 is live, v2 the last known good"
        );
        assert!(foreign.dir.exists());
        assert!(cache.root().join(VERSIONS).join("stray").exists());
    }

    #[test]
    fn a_folder_in_use_is_refused_and_free_again_when_dropped() {
        let root = tempfile::tempdir().unwrap();
        let first = open(root.path(), URI).unwrap();
        let clone = first.clone();
        drop(first);
        let err = open(root.path(), URI).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("is in use by another hotserve (pid ")
                && message.contains("give each hotserve its own cache directory"),
            "{message}"
        );
        open(root.path(), "s3://models/sentiment")
            .expect("another source under the same name has a folder of its own");
        drop(clone);
        open(root.path(), URI).expect("the lock ends with the last clone");
    }

    #[test]
    fn the_last_good_version_of_the_earlier_layout_is_adopted() {
        for legacy in ["", "sentiment"] {
            let root = tempfile::tempdir().unwrap();
            let old_root = root.path().join(legacy);
            let old_dir = old_root.join("sentiment/3");
            std::fs::create_dir_all(&old_dir).unwrap();
            std::fs::write(old_dir.join("MLmodel"), "flavors: {}").unwrap();
            let old = Manifest {
                uri: URI.into(),
                name: "sentiment".into(),
                version: "3".into(),
                aliases: vec![],
                model_id: None,
                run_id: None,
                listing_key: "k".into(),
                digests: vec![],
                dir: old_dir.clone(),
                pointer_target: None,
            };
            std::fs::create_dir_all(old_root.join("last-good")).unwrap();
            let record = old_root.join("last-good").join(format!(
                "{}.json",
                &hex(&Sha256::digest(URI.as_bytes()))[..32]
            ));
            std::fs::write(&record, serde_json::to_vec(&old).unwrap()).unwrap();
            let cache = open(root.path(), URI).unwrap();
            let good = cache.last_good().expect("adopted");
            assert_eq!(good.dir, cache.version_dir("3"), "{legacy:?}");
            assert_eq!(cache.manifest("3"), Some(good));
            assert!(!old_dir.exists() && !record.exists());
        }
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
        let cache = open(root.path(), URI).unwrap();
        let partial = cache.staging_path();
        std::fs::create_dir_all(&partial).unwrap();
        let download = cache.root().join("versions/.3.partial-00ff00ff00ff00ff");
        std::fs::create_dir_all(download.join("sub")).unwrap();
        let kept = cache.version_dir("2");
        std::fs::create_dir_all(&kept).unwrap();
        let torn = temporary_path(&cache.root().join(LAST_GOOD));
        std::fs::write(&torn, "{\"uri\":").unwrap();
        let evicting = cache.root().join("versions/.1.evicted-00ff00ff");
        std::fs::create_dir_all(&evicting).unwrap();
        drop(cache);
        open(root.path(), URI).unwrap();
        assert!(!partial.exists());
        assert!(!download.exists());
        assert!(!torn.exists());
        assert!(!evicting.exists());
        assert!(kept.exists(), "complete versions stay");
    }
}

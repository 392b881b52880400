//! The disk budget (`cache_max_bytes`): one per process, shared by the cache folder of every
//! configured source ([`super::cache::Cache`] registers its folder when it opens it). It is
//! settled at start and each time a version goes live (after the source's own pruning,
//! `Cache::prune`): it adds up the cached versions of every folder and, while the total is above
//! the bound, removes the least recently used ones, whichever source they belong to. A version
//! that must stay is never removed: the live version of any model, any source's last known good
//! one, and one a check is using ([`super::cache::Hold`]: being downloaded, staged, loaded, in
//! shadow, or kept resident through a guard window). When what must stay is already above the
//! bound, nothing more can go: a warning says so once, with the numbers, until the cache fits
//! again. Unbounded (the default) it removes nothing and only adds up `hotserve_cache_bytes`.
//!
//! When a version was last used is its manifest's modification time, so it is on disk and
//! survives restarts with no record of its own: the manifest is written again (durably) each
//! time the version goes live, and when a source's last known good record moves to another
//! version, the one it leaves (served until that moment) has its manifest's time set to now and
//! flushed. "Used" is therefore "made live by this process, or served until now"; a download
//! counts from the moment it passes the gate (before that it has no manifest, and is not a cached
//! version: neither counted nor removed). The source's own pruning keeps its newest five by the
//! same time, so both agree on what is old.
//!
//! A cached version counts for the bytes of its files (their lengths, symbolic links not
//! followed); staging, downloads in progress and folders without a manifest do not count.
//! Which versions go is decided purely ([`plan`]); the folders do the file work ([`Folder`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use crate::metrics::Metrics;

/// A cached version as the budget sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Cached {
    /// The version's directory.
    pub dir: PathBuf,
    /// The bytes of its files.
    pub bytes: u64,
    /// When it was last used.
    pub used: SystemTime,
    /// It must stay: live, its source's last known good, or held by a check.
    pub kept: bool,
}

/// A source's cache folder, as the budget uses it (implemented by `cache.rs`).
pub trait Folder: Send + Sync {
    /// The folder's cached versions.
    fn cached(self: Arc<Self>) -> Vec<Cached>;
    /// Removes `dir` unless it must stay by now; true when it was removed.
    fn evict(self: Arc<Self>, dir: &Path) -> bool;
}

/// What one settling does, decided from the cached versions alone.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// Indices of the versions to remove, least recently used first.
    pub evict: Vec<usize>,
    /// The bytes of every cached version.
    pub total: u64,
    /// The bytes of the versions that must stay.
    pub kept: u64,
}

/// What one settling did.
#[derive(Debug, PartialEq)]
pub struct Settled {
    /// The bytes of the cached versions after it.
    pub bytes: u64,
    /// How many versions it removed.
    pub evicted: usize,
    /// Whether it warned that what must stay is above the bound (once until the cache fits).
    pub warned: bool,
}

/// The process's bound on its cached versions; see the module doc.
pub struct DiskBudget {
    /// `cache_max_bytes`; `None`: unbounded.
    max_bytes: Option<u64>,
    /// Every registered folder; one settling at a time holds this lock. A folder dropped (its
    /// source no longer served) leaves the list at the next settling.
    folders: Mutex<Vec<Weak<dyn Folder>>>,
    /// `hotserve_cache_*`.
    metrics: Arc<Metrics>,
    /// Whether the warning that what must stay is above the bound was given, so it is given
    /// once until the cache fits again.
    warned: AtomicBool,
}

impl DiskBudget {
    /// A budget of `max_bytes` (`None`: unbounded), shown in `metrics`.
    pub fn new(max_bytes: Option<u64>, metrics: Arc<Metrics>) -> Arc<DiskBudget> {
        metrics
            .cache
            .max_bytes
            .store(max_bytes.unwrap_or(0), Ordering::Relaxed);
        Arc::new(DiskBudget {
            max_bytes,
            folders: Mutex::default(),
            metrics,
            warned: AtomicBool::new(false),
        })
    }

    /// Adds a folder to those the budget bounds.
    pub fn register(&self, folder: Weak<dyn Folder>) {
        self.folders().push(folder);
    }

    /// Adds up every folder's cached versions and removes the least recently used ones while
    /// the total is above the bound, never one that must stay. Blocking (file work).
    pub fn settle(&self) -> Settled {
        let mut registered = self.folders();
        registered.retain(|folder| folder.strong_count() > 0);
        let folders: Vec<Arc<dyn Folder>> = registered.iter().filter_map(Weak::upgrade).collect();
        let mut cached = Vec::new();
        for (index, folder) in folders.iter().enumerate() {
            cached.extend(folder.clone().cached().into_iter().map(|c| (index, c)));
        }
        let versions: Vec<Cached> = cached.iter().map(|(_, c)| c.clone()).collect();
        let plan = plan(&versions, self.max_bytes);
        let mut total = plan.total;
        let mut evicted = 0;
        for index in plan.evict {
            let (folder, version) = &cached[index];
            if !folders[*folder].clone().evict(&version.dir) {
                continue;
            }
            total -= version.bytes;
            evicted += 1;
            self.metrics.cache.evictions.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                dir = %version.dir.display(),
                bytes = version.bytes,
                "removed the least recently used cached model to keep the cache within cache_max_bytes"
            );
        }
        self.metrics.cache.bytes.store(total, Ordering::Relaxed);
        let mut settled = Settled {
            bytes: total,
            evicted,
            warned: false,
        };
        let Some(max_bytes) = self.max_bytes else {
            return settled;
        };
        if plan.kept <= max_bytes {
            self.warned.store(false, Ordering::Relaxed);
        } else if !self.warned.swap(true, Ordering::Relaxed) {
            settled.warned = true;
            tracing::warn!(
                kept_bytes = plan.kept,
                total_bytes = total,
                max_bytes,
                "the cached models that must stay (live, last known good or in use) take {} bytes, more than cache_max_bytes ({max_bytes}); nothing more can be removed: raise cache_max_bytes or serve fewer models",
                plan.kept
            );
        }
        settled
    }

    fn folders(&self) -> std::sync::MutexGuard<'_, Vec<Weak<dyn Folder>>> {
        self.folders.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Which of `cached` to remove so their total fits `max_bytes`: none when it fits already (or
/// nothing bounds it); otherwise those that need not stay, least recently used first (then by
/// directory, so equal times give one answer), until it fits or none is left.
pub fn plan(cached: &[Cached], max_bytes: Option<u64>) -> Plan {
    let total: u64 = cached.iter().map(|c| c.bytes).sum();
    let kept: u64 = cached.iter().filter(|c| c.kept).map(|c| c.bytes).sum();
    let mut evict = Vec::new();
    if let Some(max_bytes) = max_bytes.filter(|max| total > *max) {
        let mut candidates: Vec<usize> = (0..cached.len()).filter(|&i| !cached[i].kept).collect();
        candidates.sort_by(|&a, &b| {
            (cached[a].used, &cached[a].dir).cmp(&(cached[b].used, &cached[b].dir))
        });
        let mut left = total;
        for index in candidates {
            if left <= max_bytes {
                break;
            }
            left -= cached[index].bytes;
            evict.push(index);
        }
    }
    Plan { evict, total, kept }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// `name:bytes@used`, with a `!` at the end when it must stay.
    fn cached(spec: &str) -> Cached {
        let (spec, kept) = match spec.strip_suffix('!') {
            Some(spec) => (spec, true),
            None => (spec, false),
        };
        let (name, rest) = spec.split_once(':').unwrap();
        let (bytes, used) = rest.split_once('@').unwrap();
        Cached {
            dir: PathBuf::from(name),
            bytes: bytes.parse().unwrap(),
            used: UNIX_EPOCH + Duration::from_secs(used.parse().unwrap()),
            kept,
        }
    }

    /// The names `plan` removes from `specs` under `max_bytes`, and its total and kept bytes.
    fn check(specs: &[&str], max_bytes: Option<u64>, expected: (&[&str], u64, u64)) {
        let versions: Vec<Cached> = specs.iter().map(|spec| cached(spec)).collect();
        let plan = plan(&versions, max_bytes);
        let evicted: Vec<&str> = plan
            .evict
            .iter()
            .map(|&i| versions[i].dir.to_str().unwrap())
            .collect();
        assert_eq!(
            (evicted.as_slice(), plan.total, plan.kept),
            expected,
            "{specs:?} within {max_bytes:?}"
        );
    }

    #[test]
    #[rustfmt::skip]
    fn plans() {
        // Unbounded, or within the bound: nothing goes.
        check(&["a:10@1", "b:10@2"], None, (&[], 20, 0));
        check(&["a:10@1", "b:10@2"], Some(20), (&[], 20, 0));
        check(&[], Some(1), (&[], 0, 0));
        // The least recently used go first, just enough of them.
        check(&["a:10@3", "b:10@1", "c:10@2"], Some(25), (&["b"], 30, 0));
        check(&["a:10@3", "b:10@1", "c:10@2"], Some(10), (&["b", "c"], 30, 0));
        check(&["a:10@3", "b:10@1", "c:10@2"], Some(9), (&["b", "c", "a"], 30, 0));
        // A big old one may be enough on its own; a small old one is not skipped for it.
        check(&["small:1@1", "big:50@2", "new:10@3"], Some(20), (&["small", "big"], 61, 0));
        // What must stay stays, even when it is the oldest.
        check(&["live:10@1!", "b:10@2", "c:10@3"], Some(20), (&["b"], 30, 10));
        check(&["live:10@1!", "good:10@2!", "c:10@3"], Some(20), (&["c"], 30, 20));
        // What must stay is above the bound by itself: every other one goes, and no more.
        check(&["live:30@5!", "b:10@1", "c:10@2"], Some(20), (&["b", "c"], 50, 30));
        check(&["live:30@5!", "good:30@1!"], Some(20), (&[], 60, 60));
        // Equal times: by directory.
        check(&["b:10@1", "a:10@1", "c:10@9"], Some(15), (&["a", "b"], 30, 0));
    }
}

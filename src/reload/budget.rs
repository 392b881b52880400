//! The memory budget (`memory_budget`) and the residency of models: which are in memory,
//! which are set aside on disk, and the loads and unloads between the two.
//!
//! **How a model's memory is measured.** Every load runs on the one loading thread
//! ([`super::loader`]), one at a time; the bytes glibc's allocator has handed out (arenas and
//! mappings, `mallinfo2`) are read before and after it, and the difference, taken after the
//! gate's warm-up run, is the model's cost: its graph, weights (one shared copy), prepacked
//! weights, tokenizer and the sessions' first arenas. It is the memory that leaves with the
//! model (frees are measured the same way in tests, and `bench/fleet.sh` compares the sum with
//! the process RSS). What a request allocates while the load runs is counted too, which is
//! noise at most (kilobytes against megabytes).
//!
//! **Admission.** A load first asks [`Budget::admit`] for room: the model's last measured cost,
//! or for a first load its files' size times [`FIRST_LOAD_FACTOR`]. While the models loaded plus
//! the new one would exceed the budget, the least recently used model that is idle (no request
//! in flight or queued holds it) and not pinned is parked (unloaded, kept valid on disk, loaded
//! again by its next request). A model with requests keeps its memory; the load waits for one
//! to become idle, up to [`ADMISSION_PATIENCE`], then fails with the reason. A model larger
//! than the whole budget is refused at once. One admission at a time: the room is made and the
//! load measured before the next load decides.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cache::Manifest;
use super::loader;
use crate::live::{Live, Parked};
use crate::metrics::ModelMetrics;
use crate::model::Model;

/// A first load is admitted on its files' size times this (ONNX Runtime's optimized graph and
/// prepacked weights beside the weights); later loads on their measured cost.
pub const FIRST_LOAD_FACTOR: u64 = 2;

/// How long a load waits for a model to become idle so that it can be unloaded.
pub const ADMISSION_PATIENCE: Duration = Duration::from_secs(10);

/// The daemon's memory budget and the models it counts.
pub struct Budget {
    /// `None`: unbounded (costs are still measured and shown).
    limit: Option<u64>,
    members: Mutex<Vec<Arc<Member>>>,
    admission: tokio::sync::Mutex<()>,
}

/// Why a model cannot be loaded within the budget.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BudgetError {
    #[error("the model needs {need} bytes, more than the whole memory_budget of {limit} bytes; raise memory_budget (HOTSERVE_MEMORY_BUDGET)")]
    TooLarge { need: u64, limit: u64 },
    #[error("memory_budget of {limit} bytes is held by models in use ({used} bytes loaded, {need} more needed, none idle for {}s); retry, or raise memory_budget", ADMISSION_PATIENCE.as_secs())]
    Busy { need: u64, used: u64, limit: u64 },
}

/// Held while a load that was admitted runs; the next admission waits for it.
pub struct Admitted<'a> {
    _turn: tokio::sync::MutexGuard<'a, ()>,
}

impl Budget {
    pub fn new(limit: Option<u64>) -> Budget {
        Budget {
            limit,
            members: Mutex::new(Vec::new()),
            admission: tokio::sync::Mutex::new(()),
        }
    }

    /// The budget in bytes, if there is one.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Counts `member` in the budget (and makes it a candidate for unloading).
    pub fn join(&self, member: Arc<Member>) {
        self.lock().push(member);
    }

    /// No longer counts `member` (a model discovery removed).
    pub fn leave(&self, member: &Arc<Member>) {
        self.lock().retain(|m| !Arc::ptr_eq(m, member));
    }

    /// The memory the models hold now (live versions and candidates).
    pub fn used(&self) -> u64 {
        self.members().iter().map(|m| m.live.held_bytes()).sum()
    }

    /// Makes room for `need` bytes of `me`'s next load (`me`'s own live version is counted
    /// unless `replacing` says it goes first), unloading the least recently used idle models
    /// that are not pinned. Held until the load has been measured.
    pub async fn admit(
        &self,
        me: &Member,
        need: u64,
        replacing: bool,
    ) -> Result<Admitted<'_>, BudgetError> {
        let turn = self.admission.lock().await;
        let Some(limit) = self.limit else {
            return Ok(Admitted { _turn: turn });
        };
        if need > limit {
            return Err(BudgetError::TooLarge { need, limit });
        }
        let started = Instant::now();
        loop {
            let members = self.members();
            let mine = if replacing { me.live.held_bytes() } else { 0 };
            let used: u64 = members.iter().map(|m| m.live.held_bytes()).sum::<u64>() - mine;
            if used + need <= limit {
                return Ok(Admitted { _turn: turn });
            }
            let victim = members
                .iter()
                .filter(|m| !std::ptr::eq(m.as_ref(), me) && !m.pin)
                .filter(|m| m.live.loaded_bytes() > 0 && m.live.is_idle())
                .min_by_key(|m| m.live.last_used());
            match victim {
                Some(victim) => {
                    let why = format!(
                        "unloaded to make room for {} under memory_budget; loads again on its next request",
                        me.name
                    );
                    if let Some(model) = victim.park(why, true) {
                        victim.metrics.unloads.inc(&[("reason", "evicted")]);
                        tracing::info!(model = %victim.name, for_model = %me.name, used, need, limit, "unloaded the least recently used idle model to make room");
                        loader::release(model, loader::PATIENCE).await;
                    }
                }
                None if started.elapsed() < ADMISSION_PATIENCE => {
                    // A request ends in milliseconds: look again soon.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                None => return Err(BudgetError::Busy { need, used, limit }),
            }
        }
    }

    /// Whether a new version of `me` of `need` bytes fits only once `me`'s live version has
    /// left: then it is swapped as the `resource` reload policy does (old out, new in).
    pub fn needs_gap(&self, me: &Member, need: u64) -> bool {
        let Some(limit) = self.limit else {
            return false;
        };
        // What cannot leave to make room: pinned models and models with requests.
        let fixed: u64 = self
            .members()
            .iter()
            .filter(|m| !std::ptr::eq(m.as_ref(), me))
            .filter(|m| m.pin || !m.live.is_idle())
            .map(|m| m.live.held_bytes())
            .sum();
        fixed + me.live.held_bytes() + need > limit
    }

    fn members(&self) -> Vec<Arc<Member>> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Member>>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One model as the budget counts it: its live handle, whether it may be unloaded, and the
/// version its next load takes while it is parked.
pub struct Member {
    pub name: String,
    /// The URI it is served for (the manifests it parks name it).
    pub uri: String,
    /// `pin: true`: never unloaded to make room.
    pub pin: bool,
    pub live: Arc<Live>,
    pub metrics: Arc<ModelMetrics>,
    parked: Mutex<Option<Manifest>>,
}

impl Member {
    pub fn new(
        name: &str,
        uri: &str,
        pin: bool,
        live: Arc<Live>,
        metrics: Arc<ModelMetrics>,
    ) -> Member {
        Member {
            name: name.to_string(),
            uri: uri.to_string(),
            pin,
            live,
            metrics,
            parked: Mutex::new(None),
        }
    }

    /// Sets the live model aside on disk (its manifest kept for the next load), and returns
    /// it for the caller to free once its requests finish.
    pub fn park(&self, why: String, on_demand: bool) -> Option<Arc<Model>> {
        let model = self.live.current()?;
        let version = model.info.version.clone();
        self.set_parked(Manifest::of(&model, &self.uri));
        drop(model);
        self.live.park(Parked {
            version,
            why,
            on_demand,
        })
    }

    /// Remembers the version to load when the model is parked.
    pub fn set_parked(&self, manifest: Manifest) {
        *self.parked.lock().unwrap_or_else(|p| p.into_inner()) = Some(manifest);
    }

    /// The version to load when the model is parked.
    pub fn parked(&self) -> Option<Manifest> {
        self.parked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The memory limit of this process's cgroup (v2 `memory.max`, else v1
/// `memory.limit_in_bytes`), if it has one. Blocking (reads `/proc` and `/sys`).
pub fn cgroup_memory_limit() -> Option<u64> {
    // The process's own cgroup (v2: one line `0::/path`).
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .unwrap_or("/");
    let root = std::path::Path::new("/sys/fs/cgroup");
    let candidates = [
        root.join(path.trim_start_matches('/')).join("memory.max"),
        root.join("memory.max"),
        root.join("memory/memory.limit_in_bytes"),
    ];
    candidates.iter().find_map(|file| {
        let text = std::fs::read_to_string(file).ok()?;
        // "max" (v2) or a huge number (v1's "no limit") mean none.
        text.trim()
            .parse::<u64>()
            .ok()
            .filter(|&limit| limit < (1 << 60))
    })
}

/// The machine's memory (`MemTotal`), in bytes. Blocking.
pub fn physical_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

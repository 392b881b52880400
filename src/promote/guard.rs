//! The guard after a swap: for `guard_window` the previous version stays resident and the new
//! one is watched (inference errors, p99 inference time against the previous version's from
//! before the swap). Past `guard_max_error_rate` or `guard_max_latency_ratio` the reload
//! pipeline swaps back ([`watch`] says why). The figures are this model's own counters
//! ([`Snapshot`] of `ModelMetrics`), so the guard adds nothing to a request's path.
//!
//! The rules of [`judge`], in order:
//! 1. Until [`MIN_JOBS`] jobs have run on the new version nothing is judged (one slow batch
//!    is not a trend); at the end of the window it is kept whatever the count.
//! 2. An error rate above `guard_max_error_rate` rolls back.
//! 3. A p99 above `guard_max_latency_ratio` times the previous version's rolls back (when the
//!    previous version has figures at all).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::{ModelMetrics, LATENCY_BUCKETS};

/// Jobs the new version must have run before it is judged.
pub const MIN_JOBS: u64 = 20;

/// How often the guard looks at the figures.
const TICK: Duration = Duration::from_millis(200);

pub use crate::config::promotion::Guard;

/// This model's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Jobs answered (successfully or not).
    pub jobs: u64,
    /// Jobs that failed in inference.
    pub errors: u64,
    /// Inference-time histogram: count per bucket of [`LATENCY_BUCKETS`], then the overflow.
    pub buckets: Vec<u64>,
}

impl Snapshot {
    pub fn of(metrics: &ModelMetrics) -> Snapshot {
        Snapshot {
            jobs: metrics.inference_jobs.load(Ordering::Relaxed),
            errors: metrics.inference_errors.load(Ordering::Relaxed),
            buckets: metrics.inference_seconds.counts(),
        }
    }

    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            jobs: self.jobs.saturating_sub(earlier.jobs),
            errors: self.errors.saturating_sub(earlier.errors),
            buckets: self
                .buckets
                .iter()
                .zip(earlier.buckets.iter().chain(std::iter::repeat(&0)))
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
        }
    }

    /// The 99th percentile inference time: the upper bound of the bucket it falls in (the
    /// largest bound when it falls beyond them); `None` without samples.
    pub fn p99(&self) -> Option<f64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (total as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        for (index, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let bound = LATENCY_BUCKETS.get(index).or(LATENCY_BUCKETS.last());
                return bound.copied();
            }
        }
        LATENCY_BUCKETS.last().copied()
    }
}

/// What the guard should do now.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Continue,
    /// The window passed: keep the new version.
    Keep,
    /// Swap back; why, in words.
    RollBack(String),
}

/// Judges the new version from `after` (since the swap) against `before` (the previous
/// version's figures), `elapsed` into the window (rules in the module doc).
pub fn judge(before: &Snapshot, after: &Snapshot, elapsed: Duration, guard: &Guard) -> Verdict {
    let done = elapsed >= guard.window;
    if after.jobs < MIN_JOBS {
        return if done {
            Verdict::Keep
        } else {
            Verdict::Continue
        };
    }
    let error_rate = after.errors as f64 / after.jobs as f64;
    if error_rate > guard.max_error_rate {
        return Verdict::RollBack(format!(
            "{} of {} requests failed after the swap ({:.1}%, allowed {:.1}%)",
            after.errors,
            after.jobs,
            error_rate * 100.0,
            guard.max_error_rate * 100.0
        ));
    }
    if let (Some(old), Some(new)) = (before.p99(), after.p99()) {
        let ratio = new / old;
        if ratio > guard.max_latency_ratio {
            return Verdict::RollBack(format!(
                "p99 inference time {} ms after the swap, {ratio:.1}x the previous version's {} ms (allowed {:.1}x)",
                new * 1000.0,
                old * 1000.0,
                guard.max_latency_ratio
            ));
        }
    }
    if done {
        Verdict::Keep
    } else {
        Verdict::Continue
    }
}

/// Watches the version made live just now for `guard.window`, against `before` (the
/// figures up to the swap). Returns why to swap back, or `None` to keep it.
pub async fn watch(metrics: &Arc<ModelMetrics>, before: Snapshot, guard: &Guard) -> Option<String> {
    let started = Instant::now();
    let at_swap = Snapshot::of(metrics);
    loop {
        let after = Snapshot::of(metrics).since(&at_swap);
        match judge(&before, &after, started.elapsed(), guard) {
            Verdict::Continue => tokio::time::sleep(TICK).await,
            Verdict::Keep => return None,
            Verdict::RollBack(why) => return Some(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard {
            window: Duration::from_secs(60),
            max_error_rate: 0.05,
            max_latency_ratio: 2.0,
        }
    }

    /// `jobs` jobs, `errors` failed, all in the bucket of bound `seconds`.
    fn snapshot(jobs: u64, errors: u64, seconds: f64) -> Snapshot {
        let mut buckets = vec![0; LATENCY_BUCKETS.len() + 1];
        let index = LATENCY_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        buckets[index] = jobs;
        Snapshot {
            jobs,
            errors,
            buckets,
        }
    }

    #[test]
    #[rustfmt::skip]
    fn verdicts() {
        let check = |before: Snapshot, after: Snapshot, elapsed_s: u64, expected: &str| {
            let got = match judge(&before, &after, Duration::from_secs(elapsed_s), &guard()) {
                Verdict::Continue => "continue".to_string(),
                Verdict::Keep => "keep".to_string(),
                Verdict::RollBack(why) => format!("roll back: {why}"),
            };
            assert!(got.starts_with(expected), "{before:?} -> {after:?} at {elapsed_s}s: {got}");
        };
        check(snapshot(100, 0, 0.001), snapshot(5, 5, 0.001), 10, "continue");   // too few yet
        check(snapshot(100, 0, 0.001), snapshot(5, 5, 0.001), 60, "keep");
        check(snapshot(100, 0, 0.001), snapshot(40, 0, 0.001), 10, "continue");
        check(snapshot(100, 0, 0.001), snapshot(40, 0, 0.001), 60, "keep");
        check(snapshot(100, 0, 0.001), snapshot(40, 4, 0.001), 10, "roll back: 4 of 40 requests failed after the swap (10.0%, allowed 5.0%)");
        check(snapshot(100, 0, 0.001), snapshot(40, 0, 0.01), 10, "roll back: p99 inference time 10 ms after the swap, 10.0x the previous version's 1 ms (allowed 2.0x)");
        check(snapshot(100, 0, 0.001), snapshot(40, 0, 0.0025), 10, "roll back: p99 inference time 2.5 ms");
        check(snapshot(100, 0, 0.001), snapshot(40, 0, 0.001), 10, "continue");
        check(snapshot(0, 0, 0.001), snapshot(40, 0, 0.01), 60, "keep");       // nothing to compare with
    }

    #[test]
    fn p99_is_the_bucket_bound() {
        let mut mixed = snapshot(99, 0, 0.001);
        mixed.buckets[LATENCY_BUCKETS.len()] = 1;
        assert_eq!(mixed.p99(), Some(0.001));
        mixed.buckets[LATENCY_BUCKETS.len()] = 2;
        assert_eq!(mixed.p99(), Some(30.0));
        assert_eq!(Snapshot::default().p99(), None);
        let later = snapshot(150, 3, 0.001);
        assert_eq!(
            later.since(&snapshot(100, 1, 0.001)),
            snapshot(50, 2, 0.001)
        );
    }
}

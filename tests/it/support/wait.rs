//! Waiting for a condition instead of sleeping for a guessed time: [`eventually`] polls until
//! the condition holds and fails after a deadline generous enough for a busy two-core machine.
//! [`metric`] reads one series from a `/metrics` page, the usual condition to wait on.

use std::time::{Duration, Instant};

/// How long [`eventually`] waits: far beyond what any condition takes on an idle machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `attempt` until it returns `Some`, and returns that value; fails after [`PATIENCE`]
/// naming what it was `waiting_for`.
pub async fn eventually<T>(waiting_for: &str, mut attempt: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{waiting_for}: not seen within {PATIENCE:?}"
        );
        // The polling interval; the loop ends on the condition, not on the time.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of `series` (a metric name with its labels, exactly as exposed) on the
/// `/metrics` page at `url`; `None` when the page does not show it.
pub async fn metric(url: &str, series: &str) -> Option<f64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

/// Waits until `series` on the `/metrics` page at `url` reaches `at_least`; returns its value.
pub async fn metric_reaches(url: &str, series: &str, at_least: f64) -> f64 {
    eventually(&format!("{series} >= {at_least}"), async || {
        metric(url, series).await.filter(|value| *value >= at_least)
    })
    .await
}

//! Failpoints for tests, compiled into debug builds only: environment variables that make a
//! step sleep, so integration tests can hold an inference worker busy (to prove the async
//! runtime stays responsive) or widen the `resource` reload gap (to observe it). Release
//! builds contain none of this: [`sleep`] is an empty function there.
//!
//! - `HOTSERVE_TEST_INFERENCE_DELAY_MS`: before every inference batch.
//! - `HOTSERVE_TEST_LOAD_DELAY_MS`: before every model load in the reload pipeline.
//! - `HOTSERVE_TEST_SHADOW_DELAY_MS`: before every copy a candidate in shadow answers (a slow
//!   candidate).

/// Sleeps for the milliseconds in the environment variable `name`, if it is set.
#[cfg(debug_assertions)]
pub fn sleep(name: &'static str) {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static DELAYS: OnceLock<Mutex<HashMap<&'static str, Option<u64>>>> = OnceLock::new();
    let delay = *DELAYS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(name)
        .or_insert_with(|| std::env::var(name).ok().and_then(|v| v.parse().ok()));
    if let Some(ms) = delay {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Release builds: nothing.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn sleep(_name: &'static str) {}

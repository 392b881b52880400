//! The promotion settings of one model ([`Promotion`]): the daemon-wide values of `Config`,
//! with the overrides of its `models` entry ([`Overrides`]) on top (`Config::promotion_for`),
//! and the parsers of their values. Configuration, so it lives here; what the settings do is
//! `crate::promote`'s.

use std::time::Duration;

/// How a version that passed the gate goes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Swap at once (the gate alone decides).
    Immediate,
    /// Hold it beside the live model and compare it on copies of live requests first.
    Shadow,
}

impl Mode {
    /// Parses `immediate` or `shadow`.
    pub fn parse(value: &str) -> Result<Mode, String> {
        match value {
            "immediate" => Ok(Mode::Immediate),
            "shadow" => Ok(Mode::Shadow),
            _ => Err("expected immediate or shadow".into()),
        }
    }
}

/// The guard's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Guard {
    /// How long the new version is watched (zero: no guard).
    pub window: Duration,
    /// Largest share of jobs that may fail.
    pub max_error_rate: f64,
    /// Largest p99 inference time over the previous version's.
    pub max_latency_ratio: f64,
}

/// One model's promotion settings, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Promotion {
    pub mode: Mode,
    /// Share of live requests copied to the candidate (0 to 1).
    pub fraction: f64,
    /// Requests the candidate must have answered before it may be promoted.
    pub min_requests: u64,
    /// How long the candidate is watched at least.
    pub min_duration: Duration,
    /// When the evaluation ends whatever the traffic.
    pub max_duration: Duration,
    /// Share of predictions on which the candidate must agree with the live model.
    pub min_agreement: f64,
    /// Largest allowed candidate time / live time on the same inputs.
    pub max_latency_ratio: f64,
    /// Tensor models: largest difference between two outputs that still agree (absolute, or
    /// relative to values larger than 1).
    pub tolerance: f64,
    /// The guard after the swap (`guard_*`).
    pub guard: Guard,
}

/// The promotion settings a `models` entry may override; `None`: the daemon-wide value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    pub mode: Option<Mode>,
    pub fraction: Option<f64>,
    pub min_requests: Option<u64>,
    pub min_duration: Option<Duration>,
    pub max_duration: Option<Duration>,
    pub min_agreement: Option<f64>,
    pub max_latency_ratio: Option<f64>,
    pub tolerance: Option<f64>,
    pub guard_window: Option<Duration>,
    pub guard_max_error_rate: Option<f64>,
    pub guard_max_latency_ratio: Option<f64>,
}

// Parsed values are never NaN, so equality is reflexive.
impl Eq for Overrides {}

/// The `models` entry fields [`Overrides::set`] knows.
pub const FIELDS: &[&str] = &[
    "promotion",
    "shadow_fraction",
    "shadow_min_requests",
    "shadow_min_duration",
    "shadow_max_duration",
    "shadow_min_agreement",
    "shadow_max_latency_ratio",
    "shadow_tolerance",
    "guard_window",
    "guard_max_error_rate",
    "guard_max_latency_ratio",
];

impl Overrides {
    /// Sets the override `key` (one of [`FIELDS`]) from its text.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "promotion" => self.mode = Some(Mode::parse(value)?),
            "shadow_fraction" => self.fraction = Some(parse_share(value)?),
            "shadow_min_requests" => self.min_requests = Some(parse_requests(value)?),
            "shadow_min_duration" => {
                self.min_duration = Some(crate::config::parse_duration(value)?)
            }
            "shadow_max_duration" => {
                self.max_duration = Some(crate::config::parse_duration(value)?)
            }
            "shadow_min_agreement" => self.min_agreement = Some(parse_share(value)?),
            "shadow_max_latency_ratio" => self.max_latency_ratio = Some(parse_ratio(value)?),
            "shadow_tolerance" => self.tolerance = Some(parse_tolerance(value)?),
            "guard_window" => self.guard_window = Some(crate::config::parse_duration(value)?),
            "guard_max_error_rate" => self.guard_max_error_rate = Some(parse_share(value)?),
            "guard_max_latency_ratio" => self.guard_max_latency_ratio = Some(parse_ratio(value)?),
            _ => return Err(format!("'{key}' is not a promotion setting")),
        }
        Ok(())
    }
}

/// A share from 0 to 1.
pub fn parse_share(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err("expected a number from 0 to 1, e.g. 0.95".into()),
    }
}

/// A whole number of requests.
pub fn parse_requests(value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .map_err(|_| "expected a whole number of requests, e.g. 200".into())
}

/// A latency ratio of at least 1.
pub fn parse_ratio(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(ratio) if ratio.is_finite() && ratio >= 1.0 => Ok(ratio),
        _ => Err("expected a ratio of at least 1, e.g. 1.5".into()),
    }
}

/// A non-negative tolerance.
pub fn parse_tolerance(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(tolerance) if tolerance.is_finite() && tolerance >= 0.0 => Ok(tolerance),
        _ => Err("expected a non-negative number, e.g. 0.001".into()),
    }
}

/// `instance_name`'s default: `HOSTNAME` (a pod's name in Kubernetes), else `hotserve`.
pub fn default_instance_name(env: &dyn Fn(&str) -> Option<String>) -> String {
    env("HOSTNAME")
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "hotserve".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_defaults_to_the_host_name() {
        let check = |hostname: Option<&str>, expected: &str| {
            let env = |name: &str| {
                (name == "HOSTNAME")
                    .then(|| hostname.map(str::to_string))
                    .flatten()
            };
            assert_eq!(default_instance_name(&env), expected, "{hostname:?}");
        };
        check(Some("pod-7"), "pod-7");
        check(Some(""), "hotserve");
        check(None, "hotserve");
    }

    #[test]
    #[rustfmt::skip]
    fn overrides_parse() {
        let check = |key: &str, value: &str, expected: Result<(), &str>| {
            let got = Overrides::default().set(key, value);
            match (got, expected) {
                (Ok(()), Ok(())) => {}
                (Err(err), Err(start)) => assert!(err.starts_with(start), "{key}={value}: {err}"),
                (got, want) => panic!("{key}={value}: got {got:?}, want {want:?}"),
            }
        };
        check("promotion", "shadow", Ok(()));
        check("promotion", "later", Err("expected immediate or shadow"));
        check("shadow_fraction", "0.25", Ok(()));
        check("shadow_fraction", "1.5", Err("expected a number from 0 to 1"));
        check("shadow_min_requests", "200", Ok(()));
        check("shadow_min_requests", "-1", Err("expected a whole number"));
        check("shadow_min_duration", "1m", Ok(()));
        check("shadow_max_duration", "soon", Err("expected a duration"));
        check("shadow_min_agreement", "0.95", Ok(()));
        check("shadow_max_latency_ratio", "0.5", Err("expected a ratio of at least 1"));
        check("shadow_tolerance", "NaN", Err("expected a non-negative number"));
        check("shadow_colour", "red", Err("'shadow_colour' is not a promotion setting"));
    }
}

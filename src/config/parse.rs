//! Parsers for setting values: each takes the trimmed text from any layer and returns the
//! typed value or a lowercase reason that says what is expected.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::providers::{self, ExecutionProvider, ExecutionProviders};

/// Parses `30s`, `500ms`, `2m`, `1h`, `1.5s` or a bare `0`, exactly: the digits are read as
/// integers, so `100ms` is 100 ms to the nanosecond (not a float's nearest value).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a duration like 30s, 500ms, 2m or 0";
    if value == "0" {
        return Ok(Duration::ZERO);
    }
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{HINT} (the unit is missing)"))?;
    let (number, unit) = value.split_at(split);
    let nanos_per_unit: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(HINT.to_string()),
    };
    let nanos = times_unit(number, nanos_per_unit, 9).ok_or_else(|| HINT.to_string())?;
    let seconds = u64::try_from(nanos / 1_000_000_000).map_err(|_| HINT.to_string())?;
    Ok(Duration::new(seconds, (nanos % 1_000_000_000) as u32))
}

/// A period where `0` means "never": `None`.
pub(super) fn parse_interval(value: &str) -> Result<Option<Duration>, String> {
    parse_duration(value).map(|period| Some(period).filter(|period| !period.is_zero()))
}

pub(super) fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    match parse_duration(value)? {
        d if d.is_zero() => Err("must be more than 0".into()),
        d => Ok(d),
    }
}

pub(super) fn parse_nonempty(value: &str) -> Result<String, String> {
    if value.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(value.to_string())
    }
}

pub(super) fn parse_path(value: &str) -> Result<PathBuf, String> {
    parse_nonempty(value).map(PathBuf::from)
}

pub(super) fn parse_socket_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| "expected address:port, e.g. 0.0.0.0:8080 or 127.0.0.1:9000".into())
}

pub(super) fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

pub(super) fn parse_count(value: &str, min: usize, max: usize) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

pub(super) fn parse_bytes(value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .map_err(|_| "expected a whole number of bytes".to_string())
}

/// Parses a size in bytes: a whole number of bytes (`1048576`), or a number with a unit, the
/// decimal ones powers of 1000 (`500MB`, `kB`, `GB`, `TB`; also `K`, `M`, `G`, `T`) and the
/// binary ones powers of 1024 (`20GiB`, `KiB`, `MiB`, `TiB`; also Kubernetes' `Ki`, `Mi`, `Gi`,
/// `Ti`), case aside, a space allowed before the unit. A fraction (`1.5GiB`) is exact to the byte,
/// rounded down, as [`parse_duration`] reads its digits.
pub fn parse_size(value: &str) -> Result<u64, String> {
    const HINT: &str = "expected a size like 20GiB, 500MB or a number of bytes";
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let bytes_per_unit: u128 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => return Err(HINT.to_string()),
    };
    let bytes = times_unit(number, bytes_per_unit, 12).ok_or_else(|| HINT.to_string())?;
    u64::try_from(bytes).map_err(|_| format!("{HINT}; {value} is too large"))
}

/// `number` (digits, at most one `.`, at most `max_fraction` digits after it) times `per_unit`,
/// read exactly: whole and fraction as integers, the fraction's part rounded down. `None` when
/// `number` is not such a number or the product overflows.
fn times_unit(number: &str, per_unit: u128, max_fraction: usize) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |text: &str| text.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty())
        || !digits(whole)
        || !digits(fraction)
        || fraction.len() > max_fraction
    {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let fraction_part = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<u128>().ok()? * per_unit / 10u128.pow(fraction.len() as u32)
    };
    whole.checked_mul(per_unit)?.checked_add(fraction_part)
}

/// A size above 0 ([`parse_size`]).
pub(super) fn parse_positive_size(value: &str) -> Result<u64, String> {
    match parse_size(value)? {
        0 => Err("must be more than 0".into()),
        bytes => Ok(bytes),
    }
}

pub(super) fn parse_fraction(value: &str, max: f64) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(f) if (0.0..=max).contains(&f) => Ok(f),
        _ => Err(format!("expected a number from 0 to {max}")),
    }
}

/// A `tracing` filter directive such as `info` or `hotserve=debug,info`.
pub(super) fn parse_log_filter(value: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(value)
        .map(|_| value.to_string())
        .map_err(|e| format!("not a log filter ({e}); use e.g. info, debug or hotserve=debug,info"))
}

/// Which reload order to use when a new model version arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadPolicy {
    /// Load the new model, swap, then drop the old one (two models resident for a moment).
    Availability,
    /// Drop the old model first, then load the new one (readiness is 503 during the gap).
    Resource,
}

impl ReloadPolicy {
    pub(super) fn parse(value: &str) -> Result<ReloadPolicy, String> {
        match value {
            "availability" => Ok(ReloadPolicy::Availability),
            "resource" => Ok(ReloadPolicy::Resource),
            _ => Err("expected availability or resource".into()),
        }
    }
}

/// Parses `execution_providers`: comma-separated provider names, each optionally with a device
/// (`cuda:1`), in order of preference; an unknown name gets the nearest known one.
pub(super) fn parse_execution_providers(value: &str) -> Result<ExecutionProviders, String> {
    let mut list = Vec::new();
    for item in value.split(',').map(str::trim) {
        let (name, device) = match item.split_once(':') {
            Some((name, device)) => (name.trim(), Some(device.trim())),
            None => (item, None),
        };
        if !providers::KNOWN.contains(&name) {
            let fallback = format!("known: {}", providers::KNOWN.join(", "));
            return Err(format!(
                "unknown execution provider '{name}'{}",
                super::suggest::hint(name, providers::KNOWN.iter().copied(), &fallback)
            ));
        }
        let device = device
            .map(|device| {
                device.parse::<u32>().map_err(|_| {
                    format!("'{item}': the device after ':' must be a number, as in cuda:1")
                })
            })
            .transpose()?;
        list.push(ExecutionProvider::named(name, device)?);
    }
    ExecutionProviders::new(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_duration(input: &str, millis: Option<u64>) {
        let parsed = parse_duration(input).ok().map(|d| d.as_millis() as u64);
        assert_eq!(parsed, millis, "parse_duration({input:?})");
    }

    fn check_interval(input: &str, expected: Result<Option<u64>, ()>) {
        let parsed = parse_interval(input)
            .map(|d| d.map(|d| d.as_millis() as u64))
            .map_err(drop);
        assert_eq!(parsed, expected, "parse_interval({input:?})");
    }

    #[test]
    fn durations() {
        check_duration("30s", Some(30_000));
        check_duration("500ms", Some(500));
        check_duration("2m", Some(120_000));
        check_duration("1h", Some(3_600_000));
        check_duration("1.5s", Some(1_500));
        check_duration("0", Some(0));
        check_duration("30", None);
        check_duration("s", None);
        check_duration("-1s", None);
        check_duration("3d", None);
        check_duration("0.25s", Some(250));
        check_duration(".5s", Some(500));
        check_duration("1.5m", Some(90_000));
        check_duration("9196685788ms", Some(9_196_685_788));
        check_duration("1.s", Some(1_000));
        check_duration(".s", None);
        check_duration("1.2.3s", None);
        check_duration("0.0000000001s", None);
        check_duration("99999999999999999999999h", None);
    }

    #[test]
    fn intervals_turn_off_at_zero() {
        check_interval("30s", Ok(Some(30_000)));
        check_interval("0", Ok(None));
        check_interval("0s", Ok(None));
        check_interval("soon", Err(()));
    }

    fn check_size(input: &str, expected: Result<u64, &str>) {
        match (parse_size(input), expected) {
            (Ok(bytes), Ok(want)) => assert_eq!(bytes, want, "parse_size({input:?})"),
            (Err(why), Err(part)) => assert!(why.contains(part), "{input:?}: {why}"),
            (got, want) => panic!("parse_size({input:?}): got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn sizes() {
        check_size("1048576", Ok(1_048_576));
        check_size("0", Ok(0));
        check_size("500MB", Ok(500_000_000));
        check_size("500mb", Ok(500_000_000));
        check_size("500 MB", Ok(500_000_000));
        check_size("20GiB", Ok(20 << 30));
        check_size("20Gi", Ok(20 << 30));
        check_size("20G", Ok(20_000_000_000));
        check_size("64KiB", Ok(65_536));
        check_size("1kB", Ok(1_000));
        check_size("3TiB", Ok(3 << 40));
        check_size("2TB", Ok(2_000_000_000_000));
        check_size("10B", Ok(10));
        check_size("1.5GiB", Ok(3 << 29));
        check_size("0.5KiB", Ok(512));
        check_size(".5kB", Ok(500));
        check_size("1.0001kB", Ok(1_000));
        check_size("16EiB", Err("expected a size like 20GiB"));
        check_size("16777216TiB", Err("is too large"));
        check_size("18446744073709551615", Ok(u64::MAX));
        check_size("18446744073709551616", Err("is too large"));
        check_size("", Err("expected a size"));
        check_size("GiB", Err("expected a size"));
        check_size("-1GiB", Err("expected a size"));
        check_size("1.2.3MB", Err("expected a size"));
        check_size("20 GiB extra", Err("expected a size"));
        check_size("20PB", Err("expected a size"));
        assert_eq!(parse_positive_size("1B"), Ok(1));
        assert_eq!(
            parse_positive_size("0GiB"),
            Err("must be more than 0".into())
        );
    }

    fn check_providers(input: &str, expected: Result<&str, &str>) {
        let parsed = parse_execution_providers(input).map(|list| list.to_string());
        match (&parsed, expected) {
            (Ok(list), Ok(want)) => assert_eq!(list, want, "{input:?}"),
            (Err(why), Err(part)) => assert!(why.contains(part), "{input:?}: {why}"),
            _ => panic!("{input:?}: got {parsed:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn execution_providers() {
        check_providers("cpu", Ok("cpu"));
        check_providers("cuda,cpu", Ok("cuda:0,cpu"));
        check_providers(" cuda:1 , cpu ", Ok("cuda:1,cpu"));
        check_providers("cuda", Ok("cuda:0"));
        check_providers("tensorrt,cuda,cpu", Ok("tensorrt:0,cuda:0,cpu"));
        check_providers("tensorrt:2", Ok("tensorrt:2"));
        check_providers(
            "cdua,cpu",
            Err("unknown execution provider 'cdua'; did you mean 'cuda'?"),
        );
        check_providers(
            "rocm",
            Err("unknown execution provider 'rocm'; known: cpu, cuda, tensorrt"),
        );
        check_providers("CUDA", Err("did you mean 'cuda'?"));
        check_providers("", Err("unknown execution provider ''"));
        check_providers("cuda,,cpu", Err("unknown execution provider ''"));
        check_providers(
            "cuda:x",
            Err("'cuda:x': the device after ':' must be a number"),
        );
        check_providers("cuda:-1", Err("must be a number"));
        check_providers("cpu:0", Err("cpu takes no device number"));
        check_providers("cpu,cuda", Err("cpu must come last"));
        check_providers("cuda:0,cuda:1", Err("cuda is listed twice"));
    }
}

//! The payload log's settings: where records go (`payload_log`: [`PayloadLogTo`]), which share
//! of predictions (`payload_log_sample`) and whether inputs are kept (`payload_log_inputs`),
//! daemon-wide and per `models` entry ([`PayloadOverrides`]); `Config::payload_for` puts a
//! model's own settings over the daemon's. The file's rotation (`payload_log_max_bytes`,
//! `payload_log_max_files`) is daemon-wide.

use std::path::PathBuf;

use super::parse::{parse_bool, parse_fraction};

/// Where payload records go (`payload_log`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadLogTo {
    Off,
    /// JSON lines in this file, rotated by size.
    File(PathBuf),
    /// CloudEvents (binary mode) posted to this `http://` or `https://` URL.
    Http(reqwest::Url),
}

impl PayloadLogTo {
    /// `off`, `file:///path` or a path, or an `http(s)://` URL; any other scheme is refused.
    pub(super) fn parse(value: &str) -> Result<PayloadLogTo, String> {
        const EXPECTED: &str = "expected off, a file path (or file:///path) or an http(s):// URL";
        if value == "off" {
            return Ok(PayloadLogTo::Off);
        }
        if value.is_empty() {
            return Err(EXPECTED.into());
        }
        if let Some(path) = value.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "'{value}' is not a file:///absolute/path; {EXPECTED}"
                ));
            }
            return Ok(PayloadLogTo::File(PathBuf::from(path)));
        }
        let Some((scheme, _)) = value.split_once("://") else {
            return Ok(PayloadLogTo::File(PathBuf::from(value)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => {
                let url = reqwest::Url::parse(value)
                    .map_err(|err| format!("'{value}' is not a URL ({err}); {EXPECTED}"))?;
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(format!("'{value}' has no host; {EXPECTED}"));
                }
                Ok(PayloadLogTo::Http(url))
            }
            other => Err(format!(
                "'{other}://' is not a payload log scheme; {EXPECTED}"
            )),
        }
    }
}

/// The payload settings a `models` entry may override; `None`: the daemon-wide value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PayloadOverrides {
    pub to: Option<PayloadLogTo>,
    pub sample: Option<f64>,
    pub inputs: Option<bool>,
}

// Parsed values are never NaN, so equality is reflexive.
impl Eq for PayloadOverrides {}

/// The `models` entry fields [`PayloadOverrides::set`] knows.
pub const FIELDS: &[&str] = &["payload_log", "payload_log_sample", "payload_log_inputs"];

impl PayloadOverrides {
    /// Sets the override `key` (one of [`FIELDS`]) from its text.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "payload_log" => self.to = Some(PayloadLogTo::parse(value)?),
            "payload_log_sample" => self.sample = Some(parse_sample(value)?),
            "payload_log_inputs" => self.inputs = Some(parse_bool(value)?),
            _ => return Err(format!("'{key}' is not a payload log setting")),
        }
        Ok(())
    }
}

/// A share of predictions from 0 to 1.
pub(super) fn parse_sample(value: &str) -> Result<f64, String> {
    parse_fraction(value, 1.0)
}

/// A file size of at least one byte.
pub(super) fn parse_max_bytes(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(bytes) if bytes > 0 => Ok(bytes),
        _ => Err("expected a whole number of bytes above 0, e.g. 104857600".into()),
    }
}

/// One model's payload logging, all settings resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct PayloadPolicy {
    pub to: PayloadLogTo,
    /// The share of predictions logged, above 0 and at most 1.
    pub sample: f64,
    /// Whether request records carry the inputs.
    pub inputs: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: &str, expected: Result<PayloadLogTo, &str>) {
        match (PayloadLogTo::parse(value), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{value}"),
            (Err(err), Err(part)) => assert!(err.contains(part), "{value}: {err}"),
            (got, want) => panic!("{value}: got {got:?}, want {want:?}"),
        }
    }

    fn url(text: &str) -> PayloadLogTo {
        PayloadLogTo::Http(reqwest::Url::parse(text).unwrap())
    }

    #[test]
    #[rustfmt::skip]
    fn destinations() {
        check("off", Ok(PayloadLogTo::Off));
        check("/var/log/p.jsonl", Ok(PayloadLogTo::File("/var/log/p.jsonl".into())));
        check("p.jsonl", Ok(PayloadLogTo::File("p.jsonl".into())));
        check("file:///var/log/p.jsonl", Ok(PayloadLogTo::File("/var/log/p.jsonl".into())));
        check("http://127.0.0.1:9000/events", Ok(url("http://127.0.0.1:9000/events")));
        check("https://sink.example/", Ok(url("https://sink.example/")));
        check("HTTPS://sink.example/", Ok(url("https://sink.example/")));
        check("", Err("expected off, a file path"));
        check("file://relative", Err("is not a file:///absolute/path"));
        check("s3://bucket/p", Err("'s3://' is not a payload log scheme"));
        check("http://", Err("is not a URL"));
        check("http://:80/x", Err("is not a URL"));
    }

    #[test]
    fn overrides() {
        let mut overrides = PayloadOverrides::default();
        overrides.set("payload_log", "off").unwrap();
        overrides.set("payload_log_sample", "0.25").unwrap();
        overrides.set("payload_log_inputs", "false").unwrap();
        assert_eq!(
            overrides,
            PayloadOverrides {
                to: Some(PayloadLogTo::Off),
                sample: Some(0.25),
                inputs: Some(false),
            }
        );
        assert!(overrides.set("payload_log_sample", "2").is_err());
        assert!(overrides.set("payload_log_inputs", "maybe").is_err());
        assert!(overrides.set("payload_logs", "x").is_err());
    }
}

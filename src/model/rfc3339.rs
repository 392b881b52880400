//! `SystemTime` as RFC 3339 UTC text (`2025-01-02T03:04:05.678Z`, through `humantime`), for
//! the times a model and the live status report: `#[serde(with = "rfc3339")]` on a field, or
//! [`format`] directly. It lives beside [`ModelInfo`](super::ModelInfo), whose `loaded_at` is
//! the first of those times.

use std::time::SystemTime;

/// Serializes a time as [`format`] writes it; for `#[serde(with = "rfc3339")]`.
pub fn serialize<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*time))
}

/// Formats a time as `2025-01-02T03:04:05.678Z` (milliseconds, UTC); times before 1970 show as
/// the epoch.
pub fn format(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time.max(SystemTime::UNIX_EPOCH)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_times() {
        let check = |millis: u64, expected: &str| {
            let time = SystemTime::UNIX_EPOCH + Duration::from_millis(millis);
            assert_eq!(format(time), expected, "{millis} ms after the epoch");
        };
        check(0, "1970-01-01T00:00:00.000Z");
        check(951_782_400_000, "2000-02-29T00:00:00.000Z");
        check(1_767_225_599_000, "2025-12-31T23:59:59.000Z");
        check(1_767_225_599_999, "2025-12-31T23:59:59.999Z");
        check(4_107_542_400_000, "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn times_before_the_epoch_show_as_the_epoch() {
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(format(before), "1970-01-01T00:00:00.000Z");
    }
}

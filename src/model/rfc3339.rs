//! `SystemTime` as RFC 3339 UTC text (`2025-01-02T03:04:05.678Z`), for the times a model and
//! the live status report: `#[serde(with = "rfc3339")]` on a field, or [`format`] directly.
//!
//! It lives beside [`ModelInfo`](super::ModelInfo), whose `loaded_at` is the first of those
//! times; `crate::live` (the status `/health` reports) and `crate::http::routes` use it too.
//! Written by hand rather than with a date crate because formatting is all we need.

use std::time::SystemTime;

/// Serializes a time as [`format`] writes it; for `#[serde(with = "rfc3339")]`.
pub fn serialize<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*time))
}

/// Formats a time as `2025-01-02T03:04:05.678Z` (milliseconds, UTC); times before 1970 show as
/// the epoch.
pub fn format(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
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

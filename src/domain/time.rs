//! Event time as UTC milliseconds since the Unix epoch, with a fast RFC 3339 formatter. The
//! simulator writes millions of timestamps a second; chrono's formatter is the slow part there.

use chrono::{DateTime, NaiveDate, Utc};
use std::fmt;

pub const MS_PER_SECOND: i64 = 1_000;
pub const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
pub const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
pub const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// An instant in UTC, millisecond precision (the precision of the wire format).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct UtcMillis(pub i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an RFC 3339 timestamp (expected e.g. 2026-03-14T08:30:05.000Z)")]
pub struct TimestampError(pub String);

impl UtcMillis {
    pub fn from_datetime(dt: DateTime<Utc>) -> Self {
        UtcMillis(dt.timestamp_millis())
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Parses any RFC 3339 offset and normalises to UTC; sub-millisecond digits are truncated.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        DateTime::parse_from_rfc3339(text)
            .map(|dt| UtcMillis(dt.timestamp_millis()))
            .map_err(|_| TimestampError(text.to_string()))
    }

    pub fn from_date(date: NaiveDate) -> Self {
        let days = date.signed_duration_since(epoch_date()).num_days();
        UtcMillis(days * MS_PER_DAY)
    }

    /// Days since 1970-01-01 (floor), the unit of Parquet's DATE and of partition keys.
    pub fn epoch_day(self) -> i64 {
        self.0.div_euclid(MS_PER_DAY)
    }

    pub fn date(self) -> NaiveDate {
        epoch_date() + chrono::Duration::days(self.epoch_day())
    }

    /// Hour of the day in UTC as a fraction (0.0..24.0).
    pub fn hour_of_day_utc(self) -> f64 {
        self.0.rem_euclid(MS_PER_DAY) as f64 / MS_PER_HOUR as f64
    }

    /// Appends `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        let (year, month, day) = civil_from_days(self.epoch_day());
        let ms_of_day = self.0.rem_euclid(MS_PER_DAY);
        let hour = ms_of_day / MS_PER_HOUR;
        let minute = (ms_of_day / MS_PER_MINUTE) % 60;
        let second = (ms_of_day / MS_PER_SECOND) % 60;
        let milli = ms_of_day % 1000;
        if (0..=9999).contains(&year) {
            push_digits(out, year, 4);
        } else {
            // Outside four-digit years RFC 3339 has no form; fall back to chrono's.
            out.extend_from_slice(self.to_datetime().format("%Y").to_string().as_bytes());
        }
        out.push(b'-');
        push_digits(out, month, 2);
        out.push(b'-');
        push_digits(out, day, 2);
        out.push(b'T');
        push_digits(out, hour, 2);
        out.push(b':');
        push_digits(out, minute, 2);
        out.push(b':');
        push_digits(out, second, 2);
        out.push(b'.');
        push_digits(out, milli, 3);
        out.push(b'Z');
    }

    pub fn to_rfc3339(self) -> String {
        let mut buf = Vec::with_capacity(24);
        self.write_rfc3339(&mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl fmt::Display for UtcMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

fn epoch_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("invariant: the epoch is a valid date")
}

fn push_digits(out: &mut Vec<u8>, value: i64, width: usize) {
    let mut buf = [b'0'; 8];
    let mut v = value.unsigned_abs();
    for i in (0..width).rev() {
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// Howard Hinnant's `civil_from_days`: proleptic Gregorian date from days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formatting_matches_chrono_across_dates() {
        for ms in [
            0_i64,
            1_773_477_005_000,
            951_782_400_123,        // 2000-02-29
            -86_400_000,            // 1969-12-31
            4_102_444_799_999,      // 2099-12-31T23:59:59.999
            1_709_164_800_000 + 42, // 2024-02-29
        ] {
            let t = UtcMillis(ms);
            let expected = t.to_datetime().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            assert_eq!(t.to_rfc3339(), expected, "{ms}");
            assert_eq!(UtcMillis::parse_rfc3339(&expected), Ok(t));
            assert_eq!(t.date(), t.to_datetime().date_naive());
        }
    }

    #[test]
    fn rfc3339_parsing_normalises_offsets_to_utc() {
        let t = UtcMillis::parse_rfc3339("2026-03-14T09:30:05.250+01:00").expect("valid");
        assert_eq!(t.to_rfc3339(), "2026-03-14T08:30:05.250Z");
        assert!(UtcMillis::parse_rfc3339("2026-03-14 08:30").is_err());
    }
}

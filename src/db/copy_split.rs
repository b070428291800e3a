//! Splitting a PostgreSQL binary COPY stream of measurements by ISO week, so that a restore
//! can COPY each week straight into its own loading table (no staging table, no index, no
//! INSERT … SELECT per week). Only the framing is read: tuples are passed on byte for byte.

use super::copy::{PG_EPOCH_US, SIGNATURE};
use chrono::{Datelike, NaiveDate};
use std::collections::BTreeMap;

fn read<const N: usize>(data: &[u8], at: &mut usize) -> Result<[u8; N], String> {
    let end = *at + N;
    let bytes = data
        .get(*at..end)
        .ok_or_else(|| format!("binary COPY data ends early at byte {at}"))?;
    *at = end;
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}

/// Monday of the ISO week (UTC) of a PostgreSQL binary timestamp.
fn week_of(micros_since_2000: i64) -> Option<NaiveDate> {
    let secs = (micros_since_2000 + PG_EPOCH_US).div_euclid(1_000_000);
    let day = chrono::DateTime::from_timestamp(secs, 0)?.date_naive();
    day.checked_sub_days(chrono::Days::new(u64::from(
        day.weekday().num_days_from_monday(),
    )))
}

/// One ISO week's tuples inside a binary COPY stream: where they lie, without copying them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WeekTuples {
    pub rows: u64,
    /// Byte ranges of `data`, in the stream's order; neighbouring tuples share one range (a
    /// backup lists measurements partition by partition, so a week is usually one range).
    pub ranges: Vec<std::ops::Range<usize>>,
}

impl WeekTuples {
    /// The week's tuples, range by range.
    pub fn slices<'a>(&'a self, data: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.ranges.iter().map(move |r| &data[r.clone()])
    }
}

/// The tuples of `data` (a whole binary COPY stream) grouped by the ISO week of field
/// `time_field`, each week's in their original order.
pub fn split_by_week(
    data: &[u8],
    time_field: usize,
) -> Result<BTreeMap<NaiveDate, WeekTuples>, String> {
    let mut weeks: BTreeMap<NaiveDate, WeekTuples> = BTreeMap::new();
    for_each_tuple(data, time_field, &mut |week, range| {
        let entry = weeks.entry(week).or_default();
        entry.rows += 1;
        match entry.ranges.last_mut() {
            Some(last) if last.end == range.start => last.end = range.end,
            _ => entry.ranges.push(range),
        }
        true
    })?;
    Ok(weeks)
}

/// Calls `f` with the week and bytes of every tuple, in order; `f` returns false to stop.
fn for_each_tuple(
    data: &[u8],
    time_field: usize,
    f: &mut dyn FnMut(NaiveDate, std::ops::Range<usize>) -> bool,
) -> Result<(), String> {
    if data.get(..SIGNATURE.len()) != Some(SIGNATURE.as_slice()) {
        return Err("not a binary COPY stream".into());
    }
    let mut at = SIGNATURE.len() + 4;
    let extension = i32::from_be_bytes(read::<4>(data, &mut at)?);
    at += usize::try_from(extension).map_err(|_| "bad header extension".to_string())?;
    loop {
        let start = at;
        let fields = i16::from_be_bytes(read::<2>(data, &mut at)?);
        if fields == -1 {
            return Ok(());
        }
        let mut week = None;
        for f in 0..fields.max(0) as usize {
            let len = i32::from_be_bytes(read::<4>(data, &mut at)?);
            if len < 0 {
                continue;
            }
            let len = len as usize;
            if f == time_field {
                if len != 8 {
                    return Err(format!("field {f} is not a timestamp"));
                }
                let mut t = at;
                week = week_of(i64::from_be_bytes(read::<8>(data, &mut t)?));
            }
            at = at
                .checked_add(len)
                .filter(|end| *end <= data.len())
                .ok_or_else(|| format!("binary COPY data ends early at byte {at}"))?;
        }
        let week =
            week.ok_or_else(|| format!("a tuple without field {time_field} at byte {start}"))?;
        if !f(week, start..at) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::copy::{HEADER, TRAILER};

    fn header() -> Vec<u8> {
        HEADER.to_vec()
    }

    fn tuple(us: i64, extra: &[u8]) -> Vec<u8> {
        let mut t = 2i16.to_be_bytes().to_vec();
        t.extend_from_slice(&(extra.len() as i32).to_be_bytes());
        t.extend_from_slice(extra);
        t.extend_from_slice(&8i32.to_be_bytes());
        t.extend_from_slice(&us.to_be_bytes());
        t
    }

    fn bytes(data: &[u8], week: &WeekTuples) -> Vec<u8> {
        week.slices(data).flatten().copied().collect()
    }

    #[test]
    fn tuples_go_to_their_iso_week_unchanged_and_in_order() {
        // 2026-03-08 23:59:59 (Sunday, week of 03-02) and 2026-03-09 00:00 (Monday).
        let sunday = (1_773_014_399 * 1_000_000) - PG_EPOCH_US;
        let monday = sunday + 1_000_000;
        let next_monday = monday + 7 * 86_400 * 1_000_000;
        let (a, b, c, d, e) = (
            tuple(sunday, b"a"),
            tuple(sunday, b"a2"),
            tuple(monday, b"bb"),
            tuple(sunday, b""),
            tuple(next_monday, b"d"),
        );
        let mut data = header();
        for t in [&a, &b, &c, &d, &e] {
            data.extend_from_slice(t);
        }
        data.extend_from_slice(TRAILER);
        let weeks = split_by_week(&data, 1).expect("split");
        let day = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        assert_eq!(weeks.len(), 3);
        let first = &weeks[&day("2026-03-02")];
        assert_eq!(first.rows, 3);
        assert_eq!(first.ranges.len(), 2, "a and a2 are neighbours: one range");
        assert_eq!(bytes(&data, first), [a, b, d].concat());
        assert_eq!(bytes(&data, &weeks[&day("2026-03-09")]), c);
        assert_eq!(bytes(&data, &weeks[&day("2026-03-16")]), e);
    }

    #[test]
    fn truncated_or_foreign_data_is_an_error_not_a_panic() {
        let mut data = header();
        data.extend_from_slice(&tuple(0, b"x")[..5]);
        assert!(split_by_week(&data, 1).is_err());
        assert!(split_by_week(b"nonsense", 1).is_err());
        assert!(split_by_week(&header(), 1).is_err(), "no trailer");
    }
}

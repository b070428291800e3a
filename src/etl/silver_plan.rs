//! Which Bronze rows of a day become Silver, in which order, and which are set aside first —
//! decided on compact integer arrays before any column is moved.
//!
//! Ids are parsed once into `u128`; patients and devices then become ranks (`u32`, in id
//! order, so sorting by rank sorts by id) and event time an offset in the day (`u32` ms), so
//! both sorts work on packed keys side by side in memory. A day of ten million rows needs
//! about 1.2 GB here besides Bronze itself (it needed 2.4 GB with optional ids, per-row reason
//! lists and sorts through five separate arrays).

use super::rows::{IdRows, Rows};
use super::silver::SilverCounts;
use crate::id_hash::{FastMap, FastSet};
use polars::prelude::{IdxSize, Int64Chunked, StringChunked};
use rayon::prelude::*;
use std::collections::BTreeSet;
use uuid::Uuid;

/// Reasons a row is set aside before deduplication, one bit each, in the order they are named.
const EARLY_REASONS: [&str; 4] = [
    "bad_message_id",
    "bad_patient_id",
    "bad_device_id",
    "wrong_partition",
];
const BAD_MESSAGE: u8 = 1;
const BAD_PATIENT: u8 = 1 << 1;
const BAD_DEVICE: u8 = 1 << 2;
const WRONG_PARTITION: u8 = 1 << 3;
/// Rows of an erased patient: dropped, neither Silver nor quarantine.
const ERASED: u8 = 1 << 4;
/// Later copies of a message, or of a device's sample at the same time.
const DUPLICATE: u8 = 1 << 5;

/// The Bronze columns the plan reads.
pub struct BronzeKeys<'a> {
    pub(crate) message_id: IdRows<'a>,
    pub patient_id: &'a StringChunked,
    pub device_id: &'a StringChunked,
    pub recorded_at: &'a Int64Chunked,
    pub received_at: &'a Int64Chunked,
    pub ingest_run_id: &'a StringChunked,
    pub source: &'a StringChunked,
    pub source_offset: &'a Int64Chunked,
}

pub struct RowPlan {
    /// Bronze rows in Silver order: patient, event time, device.
    pub silver_rows: Vec<IdxSize>,
    /// The message id of each Silver row (parsed once here: Silver's column is built from
    /// them instead of gathering Bronze's).
    pub silver_messages: Vec<Uuid>,
    /// For each Silver row, its patient: an index into `patients`.
    pub silver_patient: Vec<u32>,
    /// The patients of the Silver rows, in id order.
    pub patients: Vec<Uuid>,
    /// For each Silver row, its device: an index into `devices`.
    pub silver_device: Vec<u32>,
    /// The devices of the Silver rows, in id order.
    pub devices: Vec<Uuid>,
    /// Bronze rows set aside before deduplication, in Bronze order, with their reasons.
    pub early_rows: Vec<IdxSize>,
    pub early_reasons: Vec<String>,
    /// Everything but `silver_rows` and the quarantine of enrichment.
    pub counts: SilverCounts,
}

fn parse_id(s: Option<&str>) -> Option<u128> {
    s.and_then(|s| Uuid::try_parse(s).ok()).map(|u| u.as_u128())
}

/// `parse_id` for a column whose value repeats from row to row (a patient's or a device's
/// id, Bronze being written patient by patient): the last text and its value are kept, and a
/// repeat costs a comparison instead of a parse.
#[derive(Default)]
struct RepeatedId<'a> {
    last: Option<(&'a str, Option<u128>)>,
}

impl<'a> RepeatedId<'a> {
    fn parse(&mut self, text: Option<&'a str>) -> Option<u128> {
        let text = text?;
        match self.last {
            Some((last, value)) if last == text => value,
            _ => {
                let value = parse_id(Some(text));
                self.last = Some((text, value));
                value
            }
        }
    }
}

/// The distinct ids of the rows `keep` selects, sorted, and each one's rank.
fn ranks(ids: &[u128], keep: impl Fn(usize) -> bool + Sync) -> (Vec<u128>, FastMap<u128, u32>) {
    let distinct = (0..ids.len())
        .into_par_iter()
        .filter(|&i| keep(i))
        .fold(FastSet::default, |mut set, i| {
            set.insert(ids[i]);
            set
        })
        .reduce(FastSet::default, |mut a, b| {
            a.extend(b);
            a
        });
    let mut sorted: Vec<u128> = distinct.into_iter().collect();
    sorted.sort_unstable();
    let rank = sorted
        .iter()
        .enumerate()
        .map(|(r, &id)| (id, r as u32))
        .collect();
    (sorted, rank)
}

/// The distinct ids of the rows still in play (flag 0), sorted, and each row's rank among them
/// (0 for rows out of play).
fn rank_rows(ids: &[u128], flags: &[u8]) -> (Vec<u128>, Vec<u32>) {
    let (sorted, rank) = ranks(ids, |i| flags[i] == 0);
    let of_row = ids
        .par_iter()
        .zip(flags.par_iter())
        .map(|(id, &f)| if f == 0 { rank[id] } else { 0 })
        .collect();
    (sorted, of_row)
}

/// Shards of `later_copies`: a day's ten million keys in one hash map missed the cache on
/// nearly every insert (a serial second or more); a sixty-fourth of them fits in it.
const SHARDS: usize = 64;

/// The rows in play whose key a row that arrived earlier (`arrives_before`, a total order)
/// also has: every copy but the first received. Rows are shared out by key hash, so all
/// copies of a key meet in one shard, where the earliest one seen so far is kept; shards run
/// in parallel. Which copy wins depends only on the order, not on the visiting order, so
/// rows are visited as they lie: sorting a day's rows into arrival order first (to keep the
/// first copy met) was a serial second and a third of a gigabyte, for the ~0.1 % of rows
/// that have a copy.
fn later_copies<K>(
    rows: usize,
    in_play: impl Fn(usize) -> bool + Sync,
    key: impl Fn(usize) -> K + Sync,
    arrives_before: impl Fn(usize, usize) -> bool + Sync,
) -> Vec<u32>
where
    K: std::hash::Hash + Eq + Copy + Send + Sync,
{
    use std::collections::hash_map::Entry;
    use std::hash::BuildHasher;
    let hasher = crate::id_hash::FastState::default();
    // Bits the map's buckets (low bits) and tags (top seven) do not use.
    let shard_of = |k: &K| (hasher.hash_one(k) >> 32) as usize % SHARDS;
    const BLOCK: usize = 1 << 20;
    // Each block of rows split by shard on its own core.
    let blocks: Vec<Vec<Vec<(K, u32)>>> = (0..rows.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let block = b * BLOCK..((b + 1) * BLOCK).min(rows);
            let mut shards: Vec<Vec<(K, u32)>> = (0..SHARDS)
                .map(|_| Vec::with_capacity(block.len() / SHARDS * 5 / 4))
                .collect();
            for row in block.filter(|&row| in_play(row)) {
                let k = key(row);
                shards[shard_of(&k)].push((k, row as u32));
            }
            shards
        })
        .collect();
    (0..SHARDS)
        .into_par_iter()
        .flat_map_iter(|s| {
            let len = blocks.iter().map(|b| b[s].len()).sum();
            let mut first: FastMap<K, u32> = FastMap::default();
            first.reserve(len);
            let mut later = Vec::new();
            for &(k, row) in blocks.iter().flat_map(|b| &b[s]) {
                match first.entry(k) {
                    Entry::Vacant(slot) => {
                        slot.insert(row);
                    }
                    Entry::Occupied(mut kept) => {
                        if arrives_before(row as usize, *kept.get() as usize) {
                            later.push(kept.insert(row));
                        } else {
                            later.push(row);
                        }
                    }
                }
            }
            later
        })
        .collect()
}

/// The rows in play (flag 0) as sorted keys: patient rank in the top 32 bits, then
/// `rest(row)` (which must end with the row, so that keys are distinct). Rows are first
/// grouped by patient (a counting sort), then each patient's rows sorted on their own, in
/// parallel: they arrive roughly in time order, which the merge sort turns into runs, where
/// one sort of ten million random keys spent seconds.
fn silver_order(
    flags: &[u8],
    patient_of: &[u32],
    patients: usize,
    rest: impl Fn(usize) -> u128,
) -> Vec<u128> {
    let mut starts = vec![0usize; patients + 1];
    for (&f, &p) in flags.iter().zip(patient_of) {
        if f == 0 {
            starts[p as usize + 1] += 1;
        }
    }
    for p in 0..patients {
        starts[p + 1] += starts[p];
    }
    let mut keyed = vec![0u128; starts[patients]];
    let mut next = starts.clone();
    for (i, (&f, &p)) in flags.iter().zip(patient_of).enumerate() {
        if f == 0 {
            let slot = &mut next[p as usize];
            keyed[*slot] = (u128::from(p) << 96) | rest(i);
            *slot += 1;
        }
    }
    let mut groups = Vec::with_capacity(patients);
    let mut tail: &mut [u128] = &mut keyed;
    for p in 0..patients {
        let (group, after) = tail.split_at_mut(starts[p + 1] - starts[p]);
        groups.push(group);
        tail = after;
    }
    groups.into_par_iter().for_each(|group| group.sort());
    keyed
}

/// Plans the day that starts at `day_start` (UTC ms).
pub fn plan(keys: &BronzeKeys<'_>, day_start: i64, erased: &BTreeSet<String>) -> RowPlan {
    let step = super::step_timer("silver plan");
    let n = keys.recorded_at.len();
    // Read row by row without `ChunkedArray::get`'s chunk search on every call.
    let (message_id, patient_id) = (&keys.message_id, Rows::new(keys.patient_id));
    let (device_id, recorded_at) = (Rows::new(keys.device_id), Rows::new(keys.recorded_at));
    let (received_at, source_offset) = (Rows::new(keys.received_at), Rows::new(keys.source_offset));
    let (ingest_run_id, source) = (Rows::new(keys.ingest_run_id), Rows::new(keys.source));
    let day_end = day_start + crate::domain::time::MS_PER_DAY;
    let mut counts = SilverCounts {
        bronze_rows: n as u64,
        ..SilverCounts::default()
    };

    let (mut message, mut patient, mut device) = (vec![0u128; n], vec![0u128; n], vec![0u128; n]);
    let mut flags = vec![0u8; n];
    (
        message.par_iter_mut(),
        patient.par_iter_mut(),
        device.par_iter_mut(),
        flags.par_iter_mut(),
    )
        .into_par_iter()
        .enumerate()
        .with_min_len(8192)
        .for_each_init(
            || (RepeatedId::default(), RepeatedId::default()),
            |(patients, devices), (i, (m, p, d, f))| {
                let mut set_id = |id: Option<u128>, slot: &mut u128, bad: u8| match id {
                    Some(v) => *slot = v,
                    None => *f |= bad,
                };
                set_id(message_id.id(i).map(|id| id.as_u128()), m, BAD_MESSAGE);
                set_id(patients.parse(patient_id.text(i)), p, BAD_PATIENT);
                set_id(devices.parse(device_id.text(i)), d, BAD_DEVICE);
                let at = recorded_at.get(i).unwrap_or(i64::MIN);
                if !(day_start..day_end).contains(&at) {
                    *f |= WRONG_PARTITION;
                }
            },
        );

    step("ids parsed");

    // Erased patients' rows go nowhere (a late record must not bring them back).
    if !erased.is_empty() {
        let mut verdict: FastMap<u128, bool> = FastMap::default();
        for i in 0..n {
            if flags[i] & BAD_PATIENT != 0 {
                continue;
            }
            let is_erased = *verdict.entry(patient[i]).or_insert_with(|| {
                erased.contains(&crate::lake::patient_data::digest(&Uuid::from_u128(
                    patient[i],
                )))
            });
            if is_erased {
                flags[i] = ERASED;
                counts.erased += 1;
            }
        }
    }

    let (mut early_rows, mut early_reasons) = (Vec::new(), Vec::new());
    for (i, &f) in flags.iter().enumerate() {
        if f == 0 || f == ERASED {
            continue;
        }
        let named: Vec<&str> = EARLY_REASONS
            .iter()
            .enumerate()
            .filter(|(bit, _)| f & (1 << bit) != 0)
            .map(|(_, name)| *name)
            .collect();
        // Counted once per record, under its first reason, so the totals reconcile.
        *counts.quarantined.entry(named[0].to_string()).or_insert(0) += 1;
        early_rows.push(i as IdxSize);
        early_reasons.push(named.join(";"));
    }

    // Patients and devices as ranks from here on (every patient and device of these rows keeps
    // a row after deduplication: the first copy of each message stays). The ids themselves
    // are dropped before the sorts: a quarter of a gigabyte for a day of ten million rows.
    let (patients, patient_of) = rank_rows(&patient, &flags);
    drop(patient);
    let (devices, device_of) = rank_rows(&device, &flags);
    drop(device);
    step("ranked");
    let offset_in_day = |i: usize| (recorded_at.get(i).unwrap_or(day_start) - day_start) as u32;
    // First received copy wins: earliest `received_at`, then ingest run, source, offset and
    // row. The order is total, so the choice is the same on every run.
    let arrival = |i: usize| {
        (
            received_at.get(i).unwrap_or(i64::MAX),
            ingest_run_id.text(i),
            source.text(i),
            source_offset.get(i).unwrap_or(i64::MAX),
            i,
        )
    };
    let arrives_before = |a: usize, b: usize| arrival(a) < arrival(b);
    for row in later_copies(n, |i| flags[i] == 0, |i| message[i], arrives_before) {
        counts.duplicate_message_id += 1;
        flags[row as usize] = DUPLICATE;
    }
    // Then, among first copies, a device's sample: its rank and the time in the day, packed
    // in one u64.
    let sample = |i: usize| (u64::from(device_of[i]) << 32) | u64::from(offset_in_day(i));
    for row in later_copies(n, |i| flags[i] == 0, sample, arrives_before) {
        counts.duplicate_device_time += 1;
        flags[row as usize] = DUPLICATE;
    }
    step("deduplicated");

    // Silver order, packed: patient rank, time in the day, device rank, row.
    let keyed = silver_order(&flags, &patient_of, patients.len(), |i| {
        (u128::from(offset_in_day(i)) << 64) | (u128::from(device_of[i]) << 32) | i as u128
    });
    drop((patient_of, device_of, flags));
    step("silver order");
    let silver_rows: Vec<IdxSize> = keyed.par_iter().map(|&k| k as u32 as IdxSize).collect();
    let silver_patient = keyed.par_iter().map(|&k| (k >> 96) as u32).collect();
    let silver_device = keyed.par_iter().map(|&k| (k >> 32) as u32).collect();
    let silver_messages = silver_rows
        .par_iter()
        .map(|&row| Uuid::from_u128(message[row as usize]))
        .collect();
    drop(message);
    RowPlan {
        silver_rows,
        silver_messages,
        silver_patient,
        patients: patients.into_iter().map(Uuid::from_u128).collect(),
        silver_device,
        devices: devices.into_iter().map(Uuid::from_u128).collect(),
        early_rows,
        early_reasons,
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::*;

    fn strings(v: &[Option<&str>]) -> StringChunked {
        StringChunked::from_iter_options("".into(), v.iter().copied())
    }

    fn ints(v: &[Option<i64>]) -> Int64Chunked {
        Int64Chunked::from_iter_options("".into(), v.iter().copied())
    }

    #[test]
    fn a_repeated_id_is_parsed_as_a_fresh_one() {
        let a = "6b1d4c2e-9f0a-4d3b-8e7c-5a1f2b3c4d5e";
        let b = "00000000-0000-4000-8000-000000000001";
        let rows = [
            Some(a),
            Some(a),
            Some(b),
            None,
            Some("not-a-uuid"),
            Some("not-a-uuid"),
            Some(b),
        ];
        let mut memo = RepeatedId::default();
        for text in rows {
            assert_eq!(memo.parse(text), parse_id(text), "{text:?}");
        }
    }

    const P1: &str = "00000000-0000-4000-8000-000000000001";
    const P2: &str = "00000000-0000-4000-8000-000000000002";
    const D1: &str = "00000000-0000-4000-8000-0000000000d1";
    const D2: &str = "00000000-0000-4000-8000-0000000000d2";

    fn msg(k: u32) -> String {
        format!("00000000-0000-4000-8000-{k:012}")
    }

    #[test]
    fn orders_by_patient_time_device_and_keeps_the_first_received_copy() {
        let day = 1_000 * 86_400_000i64;
        let m: Vec<String> = (0..7).map(msg).collect();
        // rows: 0 P2 t+2s; 1 P1 t+5s D2; 2 P1 t+5s D1; 3 copy of row 0's message received
        // earlier (wins); 4 same device/time as row 2, received later; 5 bad patient id;
        // 6 yesterday.
        let message = strings(&[
            Some(&m[0]),
            Some(&m[1]),
            Some(&m[2]),
            Some(&m[0]),
            Some(&m[4]),
            Some(&m[5]),
            Some(&m[6]),
        ]);
        let patient = strings(&[
            Some(P2),
            Some(P1),
            Some(P1),
            Some(P2),
            Some(P1),
            Some("nope"),
            Some(P1),
        ]);
        let device = strings(&[
            Some(D1),
            Some(D2),
            Some(D1),
            Some(D1),
            Some(D1),
            Some(D1),
            Some(D1),
        ]);
        let recorded = ints(&[
            Some(day + 2_000),
            Some(day + 5_000),
            Some(day + 5_000),
            Some(day + 2_000),
            Some(day + 5_000),
            Some(day + 9_000),
            Some(day - 1),
        ]);
        let received = ints(&[
            Some(50),
            Some(10),
            Some(10),
            Some(40),
            Some(60),
            Some(10),
            Some(10),
        ]);
        let constant = strings(&[Some("r"); 7]);
        let offsets = ints(&[
            Some(0),
            Some(1),
            Some(2),
            Some(3),
            Some(4),
            Some(5),
            Some(6),
        ]);
        let keys = BronzeKeys {
            message_id: IdRows::text(&message),
            patient_id: &patient,
            device_id: &device,
            recorded_at: &recorded,
            received_at: &received,
            ingest_run_id: &constant,
            source: &constant,
            source_offset: &offsets,
        };
        let plan = plan(&keys, day, &BTreeSet::new());
        assert_eq!(plan.silver_rows, vec![2, 1, 3]);
        assert_eq!(
            plan.silver_messages,
            [&m[2], &m[1], &m[0]].map(|t| Uuid::parse_str(t).expect("uuid"))
        );
        assert_eq!(plan.silver_patient, vec![0, 0, 1]);
        assert_eq!(
            plan.patients,
            [P1, P2].map(|p| Uuid::parse_str(p).expect("uuid"))
        );
        // Silver rows 2, 1, 3 are on D1, D2, D1.
        assert_eq!(plan.silver_device, vec![0, 1, 0]);
        assert_eq!(
            plan.devices,
            [D1, D2].map(|d| Uuid::parse_str(d).expect("uuid"))
        );
        assert_eq!(plan.early_rows, vec![5, 6]);
        assert_eq!(
            plan.early_reasons,
            vec!["bad_patient_id", "wrong_partition"]
        );
        assert_eq!(plan.counts.duplicate_message_id, 1);
        assert_eq!(plan.counts.duplicate_device_time, 1);
        assert_eq!(plan.counts.quarantined_total(), 2);

        // The same ids as 16 bytes (Bronze's UUID column) plan the same; 15 bytes are no id.
        let mut as_bytes: Vec<Vec<u8>> = message
            .iter()
            .map(|t| {
                Uuid::parse_str(t.expect("id"))
                    .expect("uuid")
                    .as_bytes()
                    .to_vec()
            })
            .collect();
        let plan_from_bytes = |ids: &[Vec<u8>]| {
            let bytes = BinaryChunked::from_iter_values("m".into(), ids.iter().map(Vec::as_slice));
            super::plan(
                &BronzeKeys {
                    message_id: IdRows::bytes(&bytes),
                    ..keys
                },
                day,
                &BTreeSet::new(),
            )
        };
        let from_bytes = plan_from_bytes(&as_bytes);
        assert_eq!(from_bytes.silver_rows, plan.silver_rows);
        assert_eq!(from_bytes.early_rows, plan.early_rows);
        assert_eq!(from_bytes.counts.duplicate_message_id, 1);
        as_bytes[1].pop();
        let short = plan_from_bytes(&as_bytes);
        assert_eq!(short.early_rows, vec![1, 5, 6]);
        assert_eq!(short.early_reasons[0], "bad_message_id");
    }

    #[test]
    fn later_copies_keeps_the_earliest_arrival_of_each_key() {
        // Keys repeat in runs of up to 5 copies, arriving in an order unrelated to row order;
        // some rows are out of play. Rows span several blocks.
        let n = (1 << 20) + 5_000;
        let key = |i: usize| (i * 7) % (n / 3);
        let arrival = |i: usize| (i * 104_729) % 1_000_003;
        let in_play = |i: usize| i % 13 != 5;
        let mut later = later_copies(n, in_play, key, |a, b| (arrival(a), a) < (arrival(b), b));
        later.sort_unstable();
        let mut first: std::collections::HashMap<usize, usize> = Default::default();
        for i in (0..n).filter(|&i| in_play(i)) {
            let kept = first.entry(key(i)).or_insert(i);
            if (arrival(i), i) < (arrival(*kept), *kept) {
                *kept = i;
            }
        }
        let winners: BTreeSet<usize> = first.into_values().collect();
        let expected: Vec<u32> = (0..n)
            .filter(|&i| in_play(i) && !winners.contains(&i))
            .map(|i| i as u32)
            .collect();
        assert!(expected.len() > n / 2, "the test needs many copies");
        assert_eq!(later, expected);
    }

    #[test]
    fn silver_order_is_the_order_of_one_full_sort() {
        // Rows of 7 patients, times going back and forth, some rows out of play.
        let n = 5_000usize;
        let patient_of: Vec<u32> = (0..n).map(|i| ((i * 7919) % 7) as u32).collect();
        let flags: Vec<u8> = (0..n).map(|i| u8::from(i % 11 == 3)).collect();
        let time = |i: usize| ((i * 104_729) % 977) as u128;
        let rest = |i: usize| (time(i) << 64) | i as u128;
        let mut expected: Vec<u128> = (0..n)
            .filter(|&i| flags[i] == 0)
            .map(|i| (u128::from(patient_of[i]) << 96) | rest(i))
            .collect();
        expected.sort_unstable();
        assert_eq!(silver_order(&flags, &patient_of, 7, rest), expected);
    }

    #[test]
    fn a_row_with_several_problems_names_them_all_and_counts_once() {
        let day = 0;
        let keys_owned = (
            strings(&[Some("x")]),
            strings(&[None]),
            strings(&[Some(D1)]),
            ints(&[None]),
            ints(&[Some(1)]),
            strings(&[Some("r")]),
            ints(&[Some(0)]),
        );
        let keys = BronzeKeys {
            message_id: IdRows::text(&keys_owned.0),
            patient_id: &keys_owned.1,
            device_id: &keys_owned.2,
            recorded_at: &keys_owned.3,
            received_at: &keys_owned.4,
            ingest_run_id: &keys_owned.5,
            source: &keys_owned.5,
            source_offset: &keys_owned.6,
        };
        let plan = plan(&keys, day, &BTreeSet::new());
        assert!(plan.silver_rows.is_empty());
        assert_eq!(
            plan.early_reasons,
            vec!["bad_message_id;bad_patient_id;wrong_partition"]
        );
        assert_eq!(plan.counts.quarantined.get("bad_message_id"), Some(&1));
        assert_eq!(plan.counts.quarantined_total(), 1);
    }
}

//! Silver (SPEC §6): one event day of Bronze, deduplicated and enriched.
//!
//! - Duplicates: the first received copy of a `message_id` wins (earliest `received_at`, then
//!   ingest run, source and offset, so the choice is the same on every run); then the first
//!   of several samples of one device at the same `recorded_at`. Both are counted.
//! - Enrichment: age group at the sample's time (not today), tier per vital for that group,
//!   heat index, quality severity and trend eligibility — from the thresholds file, through
//!   the same domain code as the stream.
//! - Records Bronze accepted but Silver cannot use go to quarantine with reason codes:
//!   `unknown_patient` (not in `reference/patients`), `no_age_group` (sample before birth or
//!   beyond the last age group), `wrong_partition` (event time outside the day),
//!   `bad_message_id`/`bad_patient_id`/`bad_device_id`, `unknown_quality_flag`.
//! - Names and contact data never enter: Silver has ids and measurements only.
//!
//! Bronze rows in = Silver rows + duplicates + quarantined, always (checked by the caller).

use super::frame::{date_column, Columns};
use super::EtlError;
use crate::domain::heat_index::heat_index_c;
use crate::domain::thresholds::{Thresholds, Tier, Vital};
use crate::domain::time::{UtcMillis, MS_PER_DAY};
use crate::domain::QualityFlag;
use chrono::NaiveDate;
use polars::prelude::*;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use uuid::Uuid;

/// The vitals Silver classifies, with their tier column.
pub const TIERED: [(Vital, &str); 6] = [
    (Vital::Spo2Pct, "spo2_tier"),
    (Vital::HeartRateBpm, "heart_rate_tier"),
    (Vital::RespiratoryRateMin, "respiratory_rate_tier"),
    (Vital::TemperatureC, "temperature_tier"),
    (Vital::HydrationPct, "hydration_tier"),
    (Vital::HeatIndexC, "heat_index_tier"),
];

/// What Silver needs to know about a patient: no names, no contact data.
#[derive(Debug, Clone)]
pub struct ReferencePatient {
    pub birth_date: NaiveDate,
    pub genotype: String,
    pub sex: String,
    pub country: String,
}

pub type Reference = HashMap<Uuid, ReferencePatient>;

/// Reads `reference/patients.parquet` (written by `simulate`, or by whoever exports the
/// patient registry into the lake).
pub fn read_reference(root: &Path) -> Result<Reference, EtlError> {
    let path = root
        .join(crate::lake::layout::REFERENCE_DIR)
        .join("patients.parquet");
    if !path.exists() {
        return Err(EtlError::MissingInput {
            path,
            hint: "Silver needs the patients' birth dates and genotypes: `kidjamo simulate` \
                   writes reference/patients.parquet, or export the registry there"
                .into(),
        });
    }
    let df = super::frame::read_files(std::slice::from_ref(&path))?.unwrap_or_default();
    let c = Columns::new(&df, path.display().to_string());
    let (ids, births, genotypes, sexes, countries) = (
        c.str("patient_id")?,
        c.days("birth_date")?,
        c.str("genotype")?,
        c.str("sex")?,
        c.str("country")?,
    );
    let mut out = HashMap::with_capacity(df.height());
    for i in 0..df.height() {
        let (Some(id), Some(birth)) = (ids.get(i), births.get(i)) else {
            continue;
        };
        let Ok(id) = Uuid::try_parse(id) else {
            return Err(EtlError::Schema {
                input: path.display().to_string(),
                message: format!("row {i}: patient_id {id:?} is not a UUID"),
            });
        };
        let birth_date =
            NaiveDate::from_num_days_from_ce_opt(birth + 719_163).ok_or_else(|| {
                EtlError::Schema {
                    input: path.display().to_string(),
                    message: format!("row {i}: birth_date out of range"),
                }
            })?;
        out.insert(
            id,
            ReferencePatient {
                birth_date,
                genotype: genotypes.get(i).unwrap_or("").to_string(),
                sex: sexes.get(i).unwrap_or("").to_string(),
                country: countries.get(i).unwrap_or("").to_string(),
            },
        );
    }
    Ok(out)
}

/// UUIDs are random: their low 64 bits are already a good hash.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(29) ^ u64::from_le_bytes(b))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = (self.0 ^ v as u64 ^ (v >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_i64(&mut self, v: i64) {
        self.0 = (self.0 ^ v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type FastSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SilverCounts {
    pub bronze_rows: u64,
    pub duplicate_message_id: u64,
    pub duplicate_device_time: u64,
    /// Rows of erased patients (`_tombstones/patients.json`): dropped, kept nowhere.
    pub erased: u64,
    pub quarantined: BTreeMap<String, u64>,
    pub silver_rows: u64,
}

impl SilverCounts {
    pub fn quarantined_total(&self) -> u64 {
        self.quarantined.values().sum()
    }

    /// Records in = Silver + duplicates + quarantine.
    pub fn reconciles(&self) -> bool {
        self.bronze_rows
            == self.silver_rows
                + self.erased
                + self.duplicate_message_id
                + self.duplicate_device_time
                + self.quarantined_total()
    }
}

pub struct SilverDay {
    /// Sorted by patient, then event time.
    pub silver: DataFrame,
    /// Bronze columns plus `reason_codes` (`;`-separated).
    pub quarantine: DataFrame,
    pub counts: SilverCounts,
}

/// Each row's string as its rank among the column's distinct values (nulls first).
fn rank_strings(ca: &StringChunked) -> Vec<u32> {
    let mut distinct: Vec<Option<&str>> = ca.iter().collect::<HashSet<_>>().into_iter().collect();
    distinct.sort_unstable();
    let rank: HashMap<Option<&str>, u32> = distinct
        .into_iter()
        .enumerate()
        .map(|(i, v)| (v, i as u32))
        .collect();
    ca.iter().map(|v| rank[&v]).collect()
}

fn parse_id(s: Option<&str>) -> Option<u128> {
    s.and_then(|s| Uuid::try_parse(s).ok()).map(|u| u.as_u128())
}

/// Builds Silver for `date` from that day's Bronze rows.
pub fn build(
    mut bronze: DataFrame,
    date: NaiveDate,
    reference: &Reference,
    thresholds: &Thresholds,
    erased: &BTreeSet<String>,
) -> Result<SilverDay, EtlError> {
    let n = bronze.height();
    let started = std::time::Instant::now();
    let step = |name: &str| {
        tracing::debug!(
            step = name,
            elapsed_s = started.elapsed().as_secs_f64(),
            "silver"
        )
    };
    let c = Columns::new(&bronze, format!("Bronze for {date}"));
    let message = c.str("message_id")?;
    let patient = c.str("patient_id")?;
    let device = c.str("device_id")?;
    let recorded_at = c.millis("recorded_at")?;
    let received = c.millis("received_at")?;
    let run = c.str("ingest_run_id")?;
    let source = c.str("source")?;
    let offset = c.i64("source_offset")?;

    let day_start = UtcMillis::from_date(date).0;
    let day_end = day_start + MS_PER_DAY;
    let ids: Vec<(Option<u128>, Option<u128>, Option<u128>)> = (0..n)
        .into_par_iter()
        .map(|i| {
            (
                parse_id(message.get(i)),
                parse_id(patient.get(i)),
                parse_id(device.get(i)),
            )
        })
        .collect();

    step("ids parsed");
    // Erased patients' rows go nowhere (a late record must not bring them back).
    let mut gone = vec![false; n];
    let mut erased_rows = 0u64;
    if !erased.is_empty() {
        let mut verdict: HashMap<u128, bool> = HashMap::new();
        for (i, (_, p, _)) in ids.iter().enumerate() {
            if let Some(p) = p {
                let is_erased = *verdict.entry(*p).or_insert_with(|| {
                    erased.contains(&crate::lake::patient_data::digest(&Uuid::from_u128(*p)))
                });
                if is_erased {
                    gone[i] = true;
                    erased_rows += 1;
                }
            }
        }
    }
    // Rows that cannot even be deduplicated go straight to quarantine.
    let mut reasons: Vec<Vec<&'static str>> = vec![Vec::new(); n];
    for i in 0..n {
        if gone[i] {
            continue;
        }
        let (m, p, d) = ids[i];
        if m.is_none() {
            reasons[i].push("bad_message_id");
        }
        if p.is_none() {
            reasons[i].push("bad_patient_id");
        }
        if d.is_none() {
            reasons[i].push("bad_device_id");
        }
        if !(day_start..day_end).contains(&recorded_at.get(i).unwrap_or(i64::MIN)) {
            reasons[i].push("wrong_partition");
        }
    }

    // First received copy wins; the order is total, so the choice is stable. The sort keys
    // are plain integers (strings ranked once), so 10 million rows sort in about a second.
    let received: Vec<i64> = received.iter().map(|v| v.unwrap_or(i64::MAX)).collect();
    let recorded: Vec<i64> = recorded_at.iter().map(|v| v.unwrap_or(i64::MIN)).collect();
    let run_rank = rank_strings(run);
    let source_rank = rank_strings(source);
    let offsets: Vec<i64> = offset.iter().map(|v| v.unwrap_or(i64::MAX)).collect();
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.par_sort_unstable_by_key(|&row| {
        let i = row as usize;
        (received[i], run_rank[i], source_rank[i], offsets[i], row)
    });
    let mut counts = SilverCounts {
        bronze_rows: n as u64,
        erased: erased_rows,
        ..SilverCounts::default()
    };
    let mut seen_messages: FastSet<u128> = FastSet::default();
    seen_messages.reserve(n);
    let mut seen_samples: FastSet<(u128, i64)> = FastSet::default();
    seen_samples.reserve(n);
    let mut kept: Vec<u32> = Vec::with_capacity(n);
    for &row in &order {
        let i = row as usize;
        if gone[i] || !reasons[i].is_empty() {
            continue;
        }
        let (Some(m), Some(_), Some(d)) = ids[i] else {
            continue;
        };
        if !seen_messages.insert(m) {
            counts.duplicate_message_id += 1;
            continue;
        }
        if !seen_samples.insert((d, recorded[i])) {
            counts.duplicate_device_time += 1;
            continue;
        }
        kept.push(row);
    }
    drop(seen_messages);
    drop(seen_samples);
    step("deduplicated");

    // Silver order: patient, event time, device — sorted on keys laid out side by side, so
    // the sort reads memory in order instead of jumping between arrays.
    let mut keyed: Vec<(u128, i64, u128, u32)> = kept
        .par_iter()
        .map(|&row| {
            let i = row as usize;
            (
                ids[i].1.unwrap_or_default(),
                recorded[i],
                ids[i].2.unwrap_or_default(),
                row,
            )
        })
        .collect();
    drop(kept);
    keyed.par_sort_unstable();
    let patients: Vec<u128> = keyed.iter().map(|k| k.0).collect();
    let order: Vec<IdxSize> = keyed.iter().map(|k| k.3 as IdxSize).collect();
    drop(keyed);
    drop(ids);
    step("sorted");

    // Rows set aside before deduplication.
    let mut quarantine_rows: Vec<IdxSize> = Vec::new();
    let mut quarantine_reasons: Vec<String> = Vec::new();
    for (i, r) in reasons.iter().enumerate() {
        if !r.is_empty() {
            quarantine_rows.push(i as IdxSize);
            quarantine_reasons.push(r.join(";"));
            // Counted once per record, under its first reason, so the totals reconcile.
            *counts.quarantined.entry(r[0].to_string()).or_insert(0) += 1;
        }
    }
    drop(reasons);
    // The rows in Silver order first: enrichment then reads every column front to back. Column
    // by column, each Bronze column freed once taken: the day is never held twice.
    let (order, early) = (
        IdxCa::from_vec("".into(), order),
        IdxCa::from_vec("".into(), quarantine_rows),
    );
    let names: Vec<PlSmallStr> = bronze.get_column_names_owned();
    let mut ordered_columns = Vec::with_capacity(names.len());
    let mut early_columns = Vec::with_capacity(names.len());
    for name in &names {
        let column = bronze
            .drop_in_place(name)
            .map_err(|e| EtlError::polars("Silver", e))?;
        ordered_columns.push(
            column
                .take(&order)
                .map_err(|e| EtlError::polars("Silver", e))?,
        );
        early_columns.push(
            column
                .take(&early)
                .map_err(|e| EtlError::polars("quarantine", e))?,
        );
    }
    drop(bronze);
    let ordered =
        DataFrame::new(order.len(), ordered_columns).map_err(|e| EtlError::polars("Silver", e))?;
    let mut quarantine = DataFrame::new(early.len(), early_columns)
        .map_err(|e| EtlError::polars("quarantine", e))?;
    step("rows taken");
    let oc = Columns::new(&ordered, format!("Bronze for {date}"));
    let cols = VitalColumns::new(&oc)?;
    let (o_recorded, o_quality) = (oc.millis("recorded_at")?, oc.str("quality_flag")?);
    let enriched: Vec<Enriched> = (0..ordered.height())
        .into_par_iter()
        .with_min_len(8192)
        .map(|j| {
            let patient = Uuid::from_u128(patients[j]);
            enrich(
                &cols,
                j,
                reference.get(&patient),
                o_recorded.get(j).unwrap_or_default(),
                o_quality.get(j).and_then(|q| q.parse().ok()),
                thresholds,
            )
        })
        .collect();
    step("enriched");

    // Then the rows enrichment could not use.
    let usable: BooleanChunked = enriched
        .iter()
        .map(|e| Some(e.reasons.is_empty()))
        .collect();
    for e in enriched.iter().filter(|e| !e.reasons.is_empty()) {
        quarantine_reasons.push(e.reasons.join(";"));
        *counts
            .quarantined
            .entry(e.reasons[0].to_string())
            .or_insert(0) += 1;
    }
    let silver_enriched: Vec<&Enriched> =
        enriched.iter().filter(|e| e.reasons.is_empty()).collect();
    let derived = derived_columns(&silver_enriched, thresholds);
    let all_usable = usable.all();
    let mut silver = if all_usable {
        ordered.clone()
    } else {
        ordered
            .filter(&usable)
            .map_err(|e| EtlError::polars("Silver", e))?
    };
    silver
        .hstack_mut(&derived)
        .map_err(|e| EtlError::polars("Silver", e))?;
    counts.silver_rows = silver.height() as u64;
    if !all_usable {
        let unusable = ordered
            .filter(&!&usable)
            .map_err(|e| EtlError::polars("quarantine", e))?;
        quarantine
            .vstack_mut_owned(unusable)
            .map_err(|e| EtlError::polars("quarantine", e))?;
    }
    quarantine
        .with_column(Column::new("reason_codes".into(), quarantine_reasons))
        .map_err(|e| EtlError::polars("quarantine", e))?;
    quarantine
        .with_column(date_column(
            "event_date",
            vec![UtcMillis::from_date(date).epoch_day() as i32; quarantine.height()],
        ))
        .map_err(|e| EtlError::polars("quarantine", e))?;
    step("done");
    Ok(SilverDay {
        silver,
        quarantine,
        counts,
    })
}

/// The vital columns enrichment reads.
struct VitalColumns<'a> {
    spo2: &'a Float64Chunked,
    heart_rate: &'a Int16Chunked,
    respiratory_rate: &'a Int16Chunked,
    temperature: &'a Float64Chunked,
    ambient: &'a Float64Chunked,
    humidity: &'a Float64Chunked,
    hydration: &'a Float64Chunked,
}

impl<'a> VitalColumns<'a> {
    fn new(c: &Columns<'a>) -> Result<Self, EtlError> {
        Ok(VitalColumns {
            spo2: c.f64("spo2_pct")?,
            heart_rate: c.i16("heart_rate_bpm")?,
            respiratory_rate: c.i16("respiratory_rate_min")?,
            temperature: c.f64("temperature_c")?,
            ambient: c.f64("ambient_temperature_c")?,
            humidity: c.f64("relative_humidity_pct")?,
            hydration: c.f64("hydration_pct")?,
        })
    }

    fn value(&self, vital: Vital, i: usize, heat_index: Option<f64>) -> Option<f64> {
        match vital {
            Vital::Spo2Pct => self.spo2.get(i),
            Vital::HeartRateBpm => self.heart_rate.get(i).map(f64::from),
            Vital::RespiratoryRateMin => self.respiratory_rate.get(i).map(f64::from),
            Vital::TemperatureC => self.temperature.get(i),
            Vital::HydrationPct => self.hydration.get(i),
            Vital::HeatIndexC => heat_index,
            Vital::AmbientTemperatureC => self.ambient.get(i),
        }
    }
}

struct Enriched {
    reasons: Vec<&'static str>,
    age_group: u8,
    heat_index: Option<f64>,
    tiers: [Option<Tier>; TIERED.len()],
    quality_severity: i16,
    trend_eligible: bool,
}

fn enrich(
    cols: &VitalColumns<'_>,
    i: usize,
    patient: Option<&ReferencePatient>,
    at: i64,
    flag: Option<QualityFlag>,
    thresholds: &Thresholds,
) -> Enriched {
    let mut reasons = Vec::new();
    let age_group = match patient {
        None => {
            reasons.push("unknown_patient");
            None
        }
        Some(p) => {
            let g = thresholds.age_group_index(p.birth_date, UtcMillis(at));
            if g.is_none() {
                reasons.push("no_age_group");
            }
            g
        }
    };
    if flag.is_none() {
        reasons.push("unknown_quality_flag");
    }
    // Rounded to 0.1 °C, as the alert engine classifies it.
    let heat_index =
        heat_index_c(cols.ambient.get(i), cols.humidity.get(i)).map(|h| (h * 10.0).round() / 10.0);
    let mut tiers = [None; TIERED.len()];
    if let Some(g) = age_group {
        for (slot, (vital, _)) in tiers.iter_mut().zip(TIERED) {
            *slot = cols
                .value(vital, i, heat_index)
                .and_then(|v| thresholds.classify(vital, g, v));
        }
    }
    Enriched {
        reasons,
        age_group: age_group.unwrap_or_default() as u8,
        heat_index,
        tiers,
        quality_severity: flag.map_or(3, |f| f.severity() as i16),
        trend_eligible: flag.is_some_and(QualityFlag::is_trend_eligible),
    }
}

fn derived_columns(rows: &[&Enriched], thresholds: &Thresholds) -> Vec<Column> {
    // One column per task: building ten million strings is the slow part.
    let builders: Vec<Box<dyn Fn() -> Column + Sync + '_>> = {
        let mut b: Vec<Box<dyn Fn() -> Column + Sync + '_>> = vec![
            Box::new(|| {
                Column::new(
                    "heat_index_c".into(),
                    rows.iter().map(|e| e.heat_index).collect::<Vec<_>>(),
                )
            }),
            Box::new(|| {
                Column::new(
                    "age_group".into(),
                    rows.iter()
                        .map(|e| thresholds.age_groups[e.age_group as usize].id.as_str())
                        .collect::<Vec<_>>(),
                )
            }),
            Box::new(|| {
                Column::new(
                    "quality_severity".into(),
                    rows.iter().map(|e| e.quality_severity).collect::<Vec<_>>(),
                )
            }),
            Box::new(|| {
                Column::new(
                    "trend_eligible".into(),
                    rows.iter().map(|e| e.trend_eligible).collect::<Vec<_>>(),
                )
            }),
        ];
        for (k, (_, name)) in TIERED.iter().enumerate() {
            b.push(Box::new(move || {
                Column::new(
                    (*name).into(),
                    rows.iter()
                        .map(|e| e.tiers[k].map(Tier::as_str))
                        .collect::<Vec<_>>(),
                )
            }));
        }
        b
    };
    builders.par_iter().map(|build| build()).collect()
}

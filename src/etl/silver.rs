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
use super::rows::{Rows, VitalRows};
use super::silver_plan::{self, BronzeKeys, RowPlan};
use super::EtlError;
use crate::domain::heat_index::heat_index_c;
use crate::domain::thresholds::{Thresholds, Tier, Vital};
use crate::domain::time::UtcMillis;
use crate::domain::QualityFlag;
use crate::output::dictionary_column::{self, DictionaryColumn};
use crate::output::parquet_groups::{ParallelGroupWriter, ROW_GROUP_ROWS};
use crate::output::{decimal_dictionary, uuid_column};
use crate::output::{HashedFile, OutputError, WrittenFile};
use chrono::NaiveDate;
use polars::prelude::*;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// Sorted by patient, then event time. In memory, `age_group` and the tier columns hold
    /// small codes (`age_group_from_code`, `tier_from_code`): seven string columns of a day
    /// take 1.1 GB, their codes 140 MB. `write` and `decode` give the text Silver files hold.
    /// Without `message_id`: nothing in memory reads it but Silver's file (`message_ids`).
    pub silver: DataFrame,
    /// Silver's `message_id`, row for row: the ids the plan parsed, as they are. A Polars
    /// column of them (`Binary`, views into a buffer) cost a copy of every id and ~80,000 page
    /// faults a day, only to be turned back into 16-byte values for the file.
    pub message_ids: Vec<Uuid>,
    /// Bronze columns plus `reason_codes` (`;`-separated).
    pub quarantine: DataFrame,
    pub counts: SilverCounts,
}

/// Builds Silver for `date` from that day's Bronze rows.
pub fn build(
    mut bronze: DataFrame,
    date: NaiveDate,
    reference: &Reference,
    thresholds: &Thresholds,
    erased: &BTreeSet<String>,
) -> Result<SilverDay, EtlError> {
    let step = super::step_timer("silver");
    let what = format!("Bronze for {date}");
    join_chunks_read_by_row(&mut bronze)?;
    step("chunks joined");
    let plan = {
        let c = Columns::new(&bronze, what.clone());
        let keys = BronzeKeys {
            message_id: c.ids("message_id")?,
            patient_id: c.str("patient_id")?,
            device_id: c.str("device_id")?,
            recorded_at: c.millis("recorded_at")?,
            received_at: c.millis("received_at")?,
            ingest_run_id: c.str("ingest_run_id")?,
            source: c.str("source")?,
            source_offset: c.i64("source_offset")?,
        };
        silver_plan::plan(&keys, UtcMillis::from_date(date).0, erased)
    };
    step("planned");
    let RowPlan {
        silver_rows,
        silver_messages,
        silver_patient,
        patients,
        silver_device,
        devices,
        early_rows,
        early_reasons: mut quarantine_reasons,
        mut counts,
    } = plan;
    // Silver's message ids come from the plan, which parsed them: gathering Bronze's column
    // of 16-byte values row by row took longer than the rest of the row taking together.
    let polars = |e| EtlError::polars("Silver", e);
    let bronze_ids = bronze.drop_in_place("message_id").map_err(polars)?;
    let early_ids = bronze_ids
        .take(&IdxCa::from_vec("".into(), early_rows.clone()))
        .map_err(polars)?;
    drop(bronze_ids);
    let [patient_column, device_column] = IDS_FROM_PLAN;
    let (patient_ids, device_ids) = rayon::join(
        || ids_from_codes(patient_column, &patients, &silver_patient),
        || ids_from_codes(device_column, &devices, &silver_device),
    );
    drop(silver_device);
    let from_plan = vec![patient_ids.map_err(polars)?, device_ids.map_err(polars)?];
    let (ordered, mut quarantine) = take_rows(&mut bronze, silver_rows, early_rows, from_plan)?;
    drop(bronze);
    quarantine.insert_column(0, early_ids).map_err(polars)?;
    ids_as_text(&mut quarantine, "message_id")?;
    step("rows taken");

    let enriched: Vec<Enriched> = {
        let by_patient: Vec<Option<&ReferencePatient>> =
            patients.iter().map(|p| reference.get(p)).collect();
        let oc = Columns::new(&ordered, what.clone());
        let cols = VitalRows::new(&oc)?;
        let recorded = Rows::new(oc.millis("recorded_at")?);
        let quality = Rows::new(oc.str("quality_flag")?);
        (0..ordered.height())
            .into_par_iter()
            .with_min_len(8192)
            .map(|j| {
                enrich(
                    &cols,
                    j,
                    by_patient[silver_patient[j] as usize],
                    recorded.get(j).unwrap_or_default(),
                    quality.text(j).and_then(|q| q.parse().ok()),
                    thresholds,
                )
            })
            .collect()
    };
    drop(silver_patient);
    step("enriched");

    // Then the rows enrichment could not use.
    for e in enriched.iter().filter(|e| e.reasons != 0) {
        let named = e.reason_names();
        *counts.quarantined.entry(named[0].to_string()).or_insert(0) += 1;
        quarantine_reasons.push(named.join(";"));
    }
    let derived = derived_columns(&enriched);
    let (mut silver, message_ids) = if enriched.iter().all(|e| e.reasons == 0) {
        (ordered, silver_messages)
    } else {
        let usable: BooleanChunked =
            BooleanChunked::from_iter_values("".into(), enriched.iter().map(|e| e.reasons == 0));
        let (silver, mut unusable) = split_rows(ordered, &usable)?;
        let (mut kept, mut set_aside) = (Vec::with_capacity(silver.height()), Vec::new());
        for (id, e) in silver_messages.into_iter().zip(&enriched) {
            match e.reasons {
                0 => kept.push(id),
                // Quarantine keeps ids as text, as the ingest quarantine writes them.
                _ => set_aside.push(id.to_string()),
            }
        }
        let texts =
            StringChunked::from_iter_values("".into(), set_aside.iter().map(String::as_str));
        unusable
            .insert_column(0, texts.with_name("message_id".into()).into_column())
            .map_err(|e| EtlError::polars("quarantine", e))?;
        quarantine
            .vstack_mut_owned(unusable)
            .map_err(|e| EtlError::polars("quarantine", e))?;
        (silver, kept)
    };
    drop(enriched);
    silver
        .hstack_mut(&derived)
        .map_err(|e| EtlError::polars("Silver", e))?;
    counts.silver_rows = silver.height() as u64;
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
        message_ids,
        quarantine,
        counts,
    })
}

/// Bronze's columns the plan reads row by row (besides the strings).
const KEYS_READ_BY_ROW: [&str; 3] = ["recorded_at", "received_at", "source_offset"];

/// Silver's id columns built from the plan's codes (`ids_from_codes`), not taken from Bronze.
const IDS_FROM_PLAN: [&str; 2] = ["patient_id", "device_id"];

/// Joins into one chunk each Bronze column that is read row by row: the plan's keys, and the
/// strings `take_rows` gathers (Polars copies every string it gathers from a column in several
/// chunks). The readings stay in their chunks (one per row group): `take_rows` scatters them
/// chunk by chunk, and joining them first was a copy of half a gigabyte a day. So do the ids
/// Silver rebuilds from the plan's codes: the plan reads them where they lie.
fn join_chunks_read_by_row(bronze: &mut DataFrame) -> Result<(), EtlError> {
    let height = bronze.height();
    let columns: Vec<Column> = std::mem::take(bronze)
        .into_columns()
        .into_par_iter()
        .map(|c| {
            let name = c.name().as_str();
            if (c.dtype() == &DataType::String && !IDS_FROM_PLAN.contains(&name))
                || KEYS_READ_BY_ROW.contains(&name)
            {
                c.rechunk()
            } else {
                c
            }
        })
        .collect();
    *bronze = DataFrame::new(height, columns).map_err(|e| EtlError::polars("Bronze", e))?;
    Ok(())
}

/// A column of ids in Silver order from the plan's codes: each distinct id's text once, and
/// each row a view of it. Gathering Bronze's text instead (joined into one chunk first) copied
/// two 16-byte views a row, through cache misses, into views scattered over Bronze's buffers;
/// these all point into one buffer of a few hundred kilobytes, which later readers keep in
/// cache. The text is the id's canonical form (lower-case, hyphenated), whatever case Bronze had.
fn ids_from_codes(name: &str, ids: &[Uuid], codes: &[u32]) -> PolarsResult<Column> {
    let texts: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let distinct = StringChunked::from_iter_values(name.into(), texts.iter().map(String::as_str));
    let rows = IdxCa::from_vec("".into(), codes.iter().map(|&c| c as IdxSize).collect());
    Ok(distinct.take(&rows)?.into_series().into())
}

/// The Bronze rows in Silver order, and the rows set aside before deduplication. Column by
/// column, each Bronze column freed once taken, so the day is never held twice; two columns
/// at a time, so both cores work (one column more in memory). Fixed-width columns are
/// scattered into Silver order (`scatter`: cache-friendly where a gather is not), the others
/// gathered, but for the columns of `from_plan`, already in Silver order, which take Bronze's
/// place (only the set-aside rows are taken from Bronze's).
fn take_rows(
    bronze: &mut DataFrame,
    silver_rows: Vec<IdxSize>,
    early_rows: Vec<IdxSize>,
    mut from_plan: Vec<Column>,
) -> Result<(DataFrame, DataFrame), EtlError> {
    let destinations = super::scatter::Destinations::new(&silver_rows, bronze.height());
    let in_silver_order = |c: &Column, order: &IdxCa| -> PolarsResult<Column> {
        match destinations
            .as_ref()
            .map(|d| d.scatter(c))
            .transpose()?
            .flatten()
        {
            Some(scattered) => Ok(scattered),
            None => c.take(order),
        }
    };
    let (order, early) = (
        IdxCa::from_vec("".into(), silver_rows),
        IdxCa::from_vec("".into(), early_rows),
    );
    let names: Vec<PlSmallStr> = bronze.get_column_names_owned();
    let mut ordered = Vec::with_capacity(names.len());
    let mut set_aside = Vec::with_capacity(names.len());
    for pair in names.chunks(2) {
        let columns = pair
            .iter()
            .map(|name| bronze.drop_in_place(name))
            .collect::<PolarsResult<Vec<Column>>>()
            .map_err(|e| EtlError::polars("Silver", e))?;
        let built = |name: &PlSmallStr| from_plan.iter().any(|c| c.name() == name);
        let taken: Vec<PolarsResult<(Option<Column>, Column)>> = columns
            .into_par_iter()
            .map(|c| {
                let in_order = if built(c.name()) {
                    None
                } else {
                    Some(in_silver_order(&c, &order)?)
                };
                Ok((in_order, c.take(&early)?))
            })
            .collect();
        for (name, t) in pair.iter().zip(taken) {
            let (o, e) = t.map_err(|e| EtlError::polars("Silver", e))?;
            let o = match o {
                Some(o) => o,
                None => {
                    let k = from_plan
                        .iter()
                        .position(|c| c.name() == name)
                        .ok_or_else(|| {
                            EtlError::Internal(format!("no column {name} built from the plan"))
                        })?;
                    from_plan.swap_remove(k)
                }
            };
            ordered.push(o);
            set_aside.push(e);
        }
    }
    Ok((
        DataFrame::new(order.len(), ordered).map_err(|e| EtlError::polars("Silver", e))?,
        DataFrame::new(early.len(), set_aside).map_err(|e| EtlError::polars("quarantine", e))?,
    ))
}

/// Splits the rows into usable and not, column by column (each column freed once split).
fn split_rows(
    frame: DataFrame,
    usable: &BooleanChunked,
) -> Result<(DataFrame, DataFrame), EtlError> {
    let unusable = !usable;
    let kept_rows = usable.sum().unwrap_or(0) as usize;
    let height = frame.height();
    let (mut kept, mut out) = (Vec::new(), Vec::new());
    for column in frame.into_columns() {
        kept.push(
            column
                .filter(usable)
                .map_err(|e| EtlError::polars("Silver", e))?,
        );
        out.push(
            column
                .filter(&unusable)
                .map_err(|e| EtlError::polars("quarantine", e))?,
        );
    }
    Ok((
        DataFrame::new(kept_rows, kept).map_err(|e| EtlError::polars("Silver", e))?,
        DataFrame::new(height - kept_rows, out).map_err(|e| EtlError::polars("quarantine", e))?,
    ))
}

/// A reading `enrich` classifies: from its column, or the heat index computed for the row.
fn vital_value(
    cols: &VitalRows<'_>,
    vital: Vital,
    i: usize,
    heat_index: Option<f64>,
) -> Option<f64> {
    match vital {
        Vital::Spo2Pct => cols.spo2.get(i),
        Vital::HeartRateBpm => cols.heart_rate.get(i).map(f64::from),
        Vital::RespiratoryRateMin => cols.respiratory_rate.get(i).map(f64::from),
        Vital::TemperatureC => cols.temperature.get(i),
        Vital::HydrationPct => cols.hydration.get(i),
        Vital::HeatIndexC => heat_index,
        Vital::AmbientTemperatureC => cols.ambient.get(i),
    }
}

/// Why enrichment could not use a row, one bit each, in the order they are named.
const LATE_REASONS: [&str; 3] = ["unknown_patient", "no_age_group", "unknown_quality_flag"];
const UNKNOWN_PATIENT: u8 = 1;
const NO_AGE_GROUP: u8 = 1 << 1;
const UNKNOWN_QUALITY_FLAG: u8 = 1 << 2;

/// What enrichment adds to a row: 32 bytes, ten million of them at once.
struct Enriched {
    heat_index: Option<f64>,
    tiers: [Option<Tier>; TIERED.len()],
    age_group: u8,
    /// `LATE_REASONS` bits; 0 when the row goes to Silver.
    reasons: u8,
    quality_severity: i8,
    trend_eligible: bool,
}

impl Enriched {
    fn reason_names(&self) -> Vec<&'static str> {
        LATE_REASONS
            .iter()
            .enumerate()
            .filter(|(bit, _)| self.reasons & (1 << bit) != 0)
            .map(|(_, name)| *name)
            .collect()
    }
}

fn enrich(
    cols: &VitalRows<'_>,
    i: usize,
    patient: Option<&ReferencePatient>,
    at: i64,
    flag: Option<QualityFlag>,
    thresholds: &Thresholds,
) -> Enriched {
    let mut reasons = 0;
    let age_group = match patient {
        None => {
            reasons |= UNKNOWN_PATIENT;
            None
        }
        Some(p) => {
            let g = thresholds.age_group_index(p.birth_date, UtcMillis(at));
            if g.is_none() {
                reasons |= NO_AGE_GROUP;
            }
            g
        }
    };
    if flag.is_none() {
        reasons |= UNKNOWN_QUALITY_FLAG;
    }
    // Rounded to 0.1 °C, as the alert engine classifies it.
    let heat_index = heat_index_c(cols.ambient.get(i), cols.humidity.get(i))
        .map(crate::domain::rounding::round1);
    let mut tiers = [None; TIERED.len()];
    if let Some(g) = age_group {
        for (slot, (vital, _)) in tiers.iter_mut().zip(TIERED) {
            *slot = vital_value(cols, vital, i, heat_index)
                .and_then(|v| thresholds.classify(vital, g, v));
        }
    }
    Enriched {
        heat_index,
        tiers,
        age_group: age_group.unwrap_or_default() as u8,
        reasons,
        quality_severity: flag.map_or(3, |f| f.severity() as i8),
        trend_eligible: flag.is_some_and(QualityFlag::is_trend_eligible),
    }
}

/// A string column built straight from its values, without an intermediate vector.
fn string_column<'s>(
    name: &str,
    len: usize,
    values: impl Iterator<Item = Option<&'s str>>,
) -> Column {
    let mut b = StringChunkedBuilder::new(name.into(), len);
    for v in values {
        b.append_option(v);
    }
    b.finish().into_series().into()
}

/// The columns enrichment adds, for the rows it could use.
fn derived_columns(enriched: &[Enriched]) -> Vec<Column> {
    let rows = || enriched.iter().filter(|e| e.reasons == 0);
    // One column per task, so both cores work.
    type Build<'b> = Box<dyn Fn() -> Column + Sync + 'b>;
    let mut builders: Vec<Build<'_>> = vec![
        Box::new(|| {
            Float64Chunked::from_iter_options("heat_index_c".into(), rows().map(|e| e.heat_index))
                .into_series()
                .into()
        }),
        Box::new(|| {
            Int16Chunked::from_iter_values(
                "age_group".into(),
                rows().map(|e| i16::from(e.age_group)),
            )
            .into_series()
            .into()
        }),
        Box::new(|| {
            Int16Chunked::from_iter_values(
                "quality_severity".into(),
                rows().map(|e| i16::from(e.quality_severity)),
            )
            .into_series()
            .into()
        }),
        Box::new(|| {
            BooleanChunked::from_iter_values(
                "trend_eligible".into(),
                rows().map(|e| e.trend_eligible),
            )
            .into_series()
            .into()
        }),
    ];
    for (k, (_, name)) in TIERED.iter().enumerate() {
        builders.push(Box::new(move || {
            Int16Chunked::from_iter_options(
                (*name).into(),
                rows().map(|e| e.tiers[k].map(tier_code)),
            )
            .into_series()
            .into()
        }));
    }
    builders.par_iter().map(|build| build()).collect()
}

/// A tier's code in in-memory Silver: its index in `Tier::ALL`.
fn tier_code(tier: Tier) -> i16 {
    tier as i16
}

/// The tier an in-memory Silver tier code stands for.
pub fn tier_from_code(code: i16) -> Option<Tier> {
    usize::try_from(code)
        .ok()
        .and_then(|i| Tier::ALL.get(i).copied())
}

/// The age group an in-memory Silver `age_group` code stands for (its id in the thresholds).
pub fn age_group_from_code(thresholds: &Thresholds, code: i16) -> Option<&str> {
    usize::try_from(code)
        .ok()
        .and_then(|i| thresholds.age_groups.get(i))
        .map(|g| g.id.as_str())
}

/// A slice of in-memory Silver with its coded columns (`age_group`, the tiers) turned into their
/// text: the shape of Silver files.
pub fn decode(slice: &DataFrame, thresholds: &Thresholds) -> Result<DataFrame, EtlError> {
    let c = Columns::new(slice, "Silver");
    let ages = c.i16("age_group")?;
    let tiers = TIERED
        .iter()
        .map(|(_, name)| Ok((*name, c.i16(name)?)))
        .collect::<Result<Vec<_>, EtlError>>()?;
    // One column per task, so both cores work.
    let (age_text, mut text) = rayon::join(
        || {
            string_column(
                "age_group",
                ages.len(),
                ages.iter()
                    .map(|g| g.and_then(|g| age_group_from_code(thresholds, g))),
            )
        },
        || {
            tiers
                .par_iter()
                .map(|(name, codes)| {
                    string_column(
                        name,
                        codes.len(),
                        codes
                            .iter()
                            .map(|t| t.and_then(tier_from_code).map(Tier::as_str)),
                    )
                })
                .collect::<Vec<Column>>()
        },
    );
    text.insert(0, age_text);
    let mut out = slice.clone();
    for column in text {
        out.with_column(column)
            .map_err(|e| EtlError::polars("Silver", e))?;
    }
    Ok(out)
}

/// A slice of in-memory Silver as the Arrow arrays of a Silver file's row group: the coded
/// columns as dictionaries of their text (`decode`'s text, formatted once per distinct code),
/// the other string columns dictionary-encoded by value (ids repeat row after row in patient
/// order), `message_id` and the numbers as they are. One column per task.
fn file_arrays(
    slice: &DataFrame,
    message_ids: &[Uuid],
    thresholds: &Thresholds,
) -> Result<Vec<ArrayRef>, EtlError> {
    let coded = |name: &str| name == "age_group" || TIERED.iter().any(|(_, t)| *t == name);
    let mut arrays = slice
        .columns()
        .par_iter()
        .map(|column| {
            let name = column.name().as_str();
            let series = column.as_materialized_series();
            let array = if coded(name) {
                let codes = series.i16().map_err(|e| EtlError::polars("Silver", e))?;
                let text = |code: i16| {
                    if name == "age_group" {
                        age_group_from_code(thresholds, code)
                    } else {
                        tier_from_code(code).map(Tier::as_str)
                    }
                };
                let mut out = DictionaryColumn::<i16>::default();
                for code in codes.iter() {
                    // A code without a meaning is a null, as `decode` writes it.
                    out.push_option(code.filter(|c| text(*c).is_some()).as_ref());
                }
                out.finish(|code, s| s.push_str(text(*code).unwrap_or_default()))
            } else if series.dtype() == &DataType::String {
                dictionary_column::from_strings(
                    series.str().map_err(|e| EtlError::polars("Silver", e))?,
                )
            } else if let Ok(readings) = series.f64() {
                // Readings and heat index are whole tenths: a dictionary of them, as in Bronze.
                let values: Vec<Option<f64>> = readings.iter().collect();
                Ok(decimal_dictionary::one_decimal(&values)
                    .unwrap_or_else(|| series.rechunk().to_arrow(0, CompatLevel::newest())))
            } else {
                Ok(series.rechunk().to_arrow(0, CompatLevel::newest()))
            };
            array.map_err(|e| EtlError::polars("Silver", e))
        })
        .collect::<Result<Vec<ArrayRef>, EtlError>>()?;
    arrays.insert(0, uuid_column::uuid_array(message_ids.iter().copied()));
    Ok(arrays)
}

/// Quarantine keeps what came in readable by anyone: a column of 16-byte ids becomes their
/// text (a value that is not 16 bytes, its hex), as the ingest quarantine writes them.
fn ids_as_text(frame: &mut DataFrame, name: &str) -> Result<(), EtlError> {
    let Ok(column) = frame.column(name) else {
        return Ok(());
    };
    let Ok(bytes) = column.binary() else {
        return Ok(());
    };
    let text: StringChunked = bytes
        .iter()
        .map(|b| {
            b.map(|b| match uuid_column::uuid_from_bytes(b) {
                Some(id) => id.to_string(),
                None => hex::encode(b),
            })
        })
        .collect();
    frame
        .with_column(text.with_name(name.into()).into_column())
        .map_err(|e| EtlError::polars("quarantine", e))?;
    Ok(())
}

/// Writes in-memory Silver as one Parquet file, a row group at a time with its coded columns
/// decoded: the text of those seven columns (1.1 GB for a day of ten million rows) never exists
/// for the whole day at once.
pub fn write(
    root: &Path,
    relative: String,
    day: &SilverDay,
    thresholds: &Thresholds,
) -> Result<WrittenFile, EtlError> {
    let silver = &day.silver;
    if day.message_ids.len() != silver.height() {
        return Err(EtlError::Internal(format!(
            "Silver has {} rows and {} message ids",
            silver.height(),
            day.message_ids.len()
        )));
    }
    let mut file = HashedFile::create(root, relative)?;
    let path = file.absolute.clone();
    let perr = |e: PolarsError| {
        EtlError::Output(OutputError::Parquet {
            path: path.clone(),
            message: e.to_string(),
        })
    };
    // `message_id` first, as text: the writer stores it as a UUID (`lake_with_uuids`).
    let mut schema = decode(&silver.slice(0, 0), thresholds)?
        .schema()
        .as_ref()
        .clone();
    schema
        .insert_at_index(0, "message_id".into(), DataType::String)
        .map_err(perr)?;
    let mut writer = crate::lake::bronze::measurement_encodings(
        ParallelGroupWriter::lake_with_uuids(&mut file, &schema, uuid_column::UUID_COLUMNS)
            .map_err(perr)?,
    );
    for offset in (0..silver.height()).step_by(ROW_GROUP_ROWS) {
        let ids = &day.message_ids[offset..(offset + ROW_GROUP_ROWS).min(day.message_ids.len())];
        let arrays = file_arrays(
            &silver.slice(offset as i64, ROW_GROUP_ROWS),
            ids,
            thresholds,
        )?;
        writer.write_arrays(&arrays).map_err(perr)?;
    }
    writer.finish().map_err(perr)?;
    Ok(file.finish(silver.height() as u64)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_codes_go_both_ways() {
        for (i, tier) in Tier::ALL.iter().enumerate() {
            assert_eq!(tier_code(*tier), i as i16);
            assert_eq!(tier_from_code(tier_code(*tier)), Some(*tier));
        }
        assert_eq!(tier_from_code(-1), None);
        assert_eq!(tier_from_code(Tier::ALL.len() as i16), None);
    }
}

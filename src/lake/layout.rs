//! Where things go in the lake (SPEC §6). One place builds every path, so the layout can be
//! read here and nowhere else.

use chrono::NaiveDate;

pub const REFERENCE_DIR: &str = "reference";
pub const GROUND_TRUTH_DIR: &str = "ground_truth";
pub const LANDING_DIR: &str = "landing";
pub const RUNS_DIR: &str = "_runs";
pub const BRONZE_MEASUREMENTS: &str = "bronze/measurements";
pub const QUARANTINE_MEASUREMENTS: &str = "quarantine/measurements";

pub fn bronze_part(event_date: NaiveDate, run_id: &str, n: u32) -> String {
    format!(
        "{BRONZE_MEASUREMENTS}/event_date={}/part-{run_id}-{n}.parquet",
        event_date.format("%Y-%m-%d")
    )
}

pub fn quarantine_part(ingest_date: NaiveDate, run_id: &str, n: u32) -> String {
    format!(
        "{QUARANTINE_MEASUREMENTS}/ingest_date={}/part-{run_id}-{n}.parquet",
        ingest_date.format("%Y-%m-%d")
    )
}

/// Operational alert records (clear patient ids, for the database and clinicians' tools),
/// written by `kidjamo stream` and by the batch `etl`; `db load` reads both. They are not Gold:
/// Gold identifies patients by `patient_key` only (`gold/alerts_daily`).
pub const ALERT_DIRS: [&str; 2] = ["alerts/stream", "alerts/batch"];
pub const ALERTS_BATCH: &str = ALERT_DIRS[1];

pub const SILVER_MEASUREMENTS: &str = "silver/measurements";
/// Records Bronze accepted but Silver cannot use (unknown patient, sample before birth).
pub const QUARANTINE_SILVER: &str = "quarantine/silver_measurements";
/// The batch alert engine's state at the end of each day, so the next day continues it.
pub const ALERT_ENGINE_STATE: &str = "_state/alert_engine";

pub fn gold(table: &str) -> String {
    format!("gold/{table}")
}

/// `event_date=YYYY-MM-DD`, the Hive partition folder of daily tables.
pub fn day_partition(dir: &str, date: NaiveDate) -> String {
    format!("{dir}/event_date={}", date.format("%Y-%m-%d"))
}

/// The one data file a batch run writes into a partition folder.
pub fn batch_part(partition: &str, run_id: &str) -> String {
    format!("{partition}/part-{run_id}-0.parquet")
}

pub fn alerts_part(dir: &str, event_date: NaiveDate, run_id: &str, n: u32) -> String {
    format!(
        "{dir}/event_date={}/part-{run_id}-{n}.parquet",
        event_date.format("%Y-%m-%d")
    )
}

pub fn manifest(run_id: &str) -> String {
    format!("{RUNS_DIR}/{run_id}.json")
}

/// The folders `simulate --overwrite` may replace: kidjamo's own, never anything else.
pub const SIMULATE_OWNED: [&str; 5] = [
    REFERENCE_DIR,
    GROUND_TRUTH_DIR,
    LANDING_DIR,
    BRONZE_MEASUREMENTS,
    QUARANTINE_MEASUREMENTS,
];

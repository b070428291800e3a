//! `kidjamo etl daily|weekly|monthly|export research`.

use crate::context::Context;
use crate::progress::Bar;
use anyhow::{anyhow, bail, Context as _, Result};
use chrono::{Days, NaiveDate, Utc};
use clap::{Args, Subcommand};
use kidjamo::config::object_store_options;
use kidjamo::etl::daily::{self, DailyJob};
use kidjamo::etl::keys::PatientKeyer;
use kidjamo::etl::periodic::{self, Period};
use kidjamo::lake::remote::Mirror;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Subcommand)]
pub enum EtlCommand {
    /// Bronze → Silver → daily Gold for one day or a range (default: yesterday, UTC).
    Daily(DailyArgs),
    /// patient_weekly for an ISO week, from patient_daily.
    Weekly(WeeklyArgs),
    /// cohort_monthly for a calendar month, from patient_daily.
    Monthly(MonthlyArgs),
    /// Exports for people outside the care team.
    #[command(subcommand)]
    Export(ExportCommand),
}

#[derive(Subcommand)]
pub enum ExportCommand {
    /// A pseudonymised, k-anonymous patient-month table for research, with its metadata.
    Research(ResearchArgs),
}

#[derive(Args)]
pub struct ResearchArgs {
    /// Calendar month, e.g. 2026-03.
    #[arg(long)]
    month: String,
    /// Every combination of age band, sex, genotype and country is shared by at least k rows;
    /// rarer rows are suppressed (and counted).
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// The export's own pseudonymisation key (at least 16 bytes). Default: 32 random bytes,
    /// used once and not stored, so the export cannot be joined with Gold or another export.
    #[arg(long, value_name = "FILE")]
    export_key_file: Option<PathBuf>,
    #[command(flatten)]
    lake: LakeArg,
}

#[derive(Args)]
pub struct LakeArg {
    /// Lake root: a folder, or s3://bucket/prefix (AWS_* settings from the environment)
    /// (default: lake.root of the configuration, ./lake).
    #[arg(long, value_name = "DIR|URL")]
    lake: Option<String>,
}

#[derive(Args)]
pub struct DailyArgs {
    /// The event day (YYYY-MM-DD).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    date: Option<String>,
    /// First day of a range (inclusive).
    #[arg(long, requires = "to")]
    from: Option<String>,
    /// Last day of a range (inclusive).
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// Exit 1 when a day's quarantined share of Bronze rows is above this (0–1).
    #[arg(long, value_name = "RATIO")]
    max_reject_ratio: Option<f64>,
    #[command(flatten)]
    lake: LakeArg,
}

#[derive(Args)]
pub struct WeeklyArgs {
    /// ISO week, e.g. 2026-W11.
    #[arg(long)]
    week: String,
    #[command(flatten)]
    lake: LakeArg,
}

#[derive(Args)]
pub struct MonthlyArgs {
    /// Calendar month, e.g. 2026-03.
    #[arg(long)]
    month: String,
    #[command(flatten)]
    lake: LakeArg,
}

pub fn run(cmd: EtlCommand, ctx: &Context) -> Result<ExitCode> {
    match cmd {
        EtlCommand::Daily(args) => run_daily(args, ctx),
        EtlCommand::Weekly(args) => run_period(Period::parse_week(&args.week)?, &args.lake, ctx),
        EtlCommand::Monthly(args) => run_period(Period::parse_month(&args.month)?, &args.lake, ctx),
        EtlCommand::Export(ExportCommand::Research(args)) => run_research(args, ctx),
    }
}

fn run_research(args: ResearchArgs, ctx: &Context) -> Result<ExitCode> {
    let month = Period::parse_month(&args.month)?;
    if args.k < 2 {
        bail!("--k {}: k-anonymity needs k of at least 2", args.k);
    }
    let gold_keyer = keyer(ctx)?;
    let lake = Lake::open(&args.lake, ctx, kidjamo::etl::research::inputs(month))?;
    let root = lake.root().to_path_buf();
    let key = match &args.export_key_file {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("cannot read --export-key-file {}", path.display()))?,
        None => {
            let mut key = vec![0u8; 32];
            std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut key)
                .context("cannot read random bytes for the export key")?;
            key
        }
    };
    let export_keyer = PatientKeyer::new(&key, None).map_err(|e| anyhow!("export key: {e}"))?;
    let reference = kidjamo::etl::silver::read_reference(&root).map_err(|e| lake.explain(e))?;
    let job = kidjamo::etl::research::ResearchJob {
        root: &root,
        month,
        k: args.k,
        gold_keyer: &gold_keyer,
        export_keyer: &export_keyer,
        reference: &reference,
    };
    let report = kidjamo::etl::research::export(&job, ctx.config.etl.expected_interval_s)
        .map_err(|e| lake.explain(e))
        .with_context(|| {
            format!(
                "research export for {} in {}",
                month.label(),
                lake.describe()
            )
        })?;
    let described = lake.describe();
    lake.publish()?;
    println!(
        "etl export research {}: {} patient-months, {} suppressed for k = {} on {}, {} written to {}/exports/research/month={}/export={}/ (data.parquet, data.csv, metadata.json).",
        report.month,
        report.rows_before_suppression,
        report.rows_suppressed,
        report.k,
        report.quasi_identifiers.join(", "),
        report.rows,
        described,
        report.month,
        report.export_id,
    );
    Ok(ExitCode::SUCCESS)
}

/// The lake a run works in: a local folder, or a local mirror of a lake in an object store
/// holding what the run reads (`inputs`), published back when the run has succeeded.
enum Lake {
    Local(PathBuf),
    Mirrored(Mirror),
}

impl Lake {
    fn open(arg: &LakeArg, ctx: &Context, inputs: Vec<String>) -> Result<Lake> {
        let text = arg
            .lake
            .clone()
            .unwrap_or_else(|| ctx.config.lake.root.clone());
        if text.contains("://") {
            let started = Instant::now();
            let mirror = Mirror::open(&text, &object_store_options(&ctx.env), &inputs)
                .map_err(|e| {
                    let anonymous = text.starts_with("s3://")
                        && !ctx.env.contains_key("AWS_ACCESS_KEY_ID")
                        && !ctx.env.contains_key("AWS_WEB_IDENTITY_TOKEN_FILE");
                    if anonymous {
                        anyhow!("{e} (no AWS_ACCESS_KEY_ID in the environment, so the S3 client asked the instance metadata service for credentials)")
                    } else {
                        anyhow!(e)
                    }
                })?;
            tracing::info!(
                files = mirror.fetched(),
                secs = started.elapsed().as_secs_f64(),
                "downloaded the run's inputs"
            );
            return Ok(Lake::Mirrored(mirror));
        }
        let root = PathBuf::from(&text);
        if !root.is_dir() {
            bail!("lake {text} does not exist or is not a directory");
        }
        Ok(Lake::Local(root))
    }

    fn root(&self) -> &Path {
        match self {
            Lake::Local(root) => root,
            Lake::Mirrored(m) => m.root(),
        }
    }

    /// The lake as the user named it.
    fn describe(&self) -> String {
        match self {
            Lake::Local(root) => root.display().to_string(),
            Lake::Mirrored(m) => m.url().to_string(),
        }
    }

    /// An error that names the mirror's private folder names the lake's URL instead.
    fn explain(&self, e: impl std::fmt::Display) -> anyhow::Error {
        let text = e.to_string();
        match self {
            Lake::Local(_) => anyhow!(text),
            Lake::Mirrored(m) => {
                anyhow!(text.replace(&m.root().display().to_string(), m.url()))
            }
        }
    }

    /// A local lake is committed by the run itself; a mirrored one is published now.
    fn publish(self) -> Result<()> {
        if let Lake::Mirrored(m) = self {
            let url = m.url().to_string();
            let started = Instant::now();
            let done = m
                .publish()
                .with_context(|| format!("publishing the run to {url}"))?;
            tracing::info!(
                uploaded = done.uploaded,
                deleted = done.deleted,
                secs = started.elapsed().as_secs_f64(),
                "published the run"
            );
        }
        Ok(())
    }
}

fn parse_date(flag: &str, text: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| anyhow!("{flag} {text:?} is not a date (YYYY-MM-DD)"))
}

pub fn keyer(ctx: &Context) -> Result<PatientKeyer> {
    let p = &ctx.config.pseudonymisation;
    let key = p.key.as_ref().ok_or_else(|| {
        anyhow!(
            "no pseudonymisation key: Gold identifies patients by an HMAC of their id; set \
             KIDJAMO_PSEUDONYMISATION__KEY (at least 16 bytes) or pseudonymisation.key"
        )
    })?;
    PatientKeyer::new(key.expose().as_bytes(), p.key_id.as_deref())
        .map_err(|e| anyhow!("pseudonymisation.key: {e}"))
}

fn run_daily(args: DailyArgs, ctx: &Context) -> Result<ExitCode> {
    let dates: Vec<NaiveDate> = match (&args.date, &args.from, &args.to) {
        (Some(d), _, _) => vec![parse_date("--date", d)?],
        (None, Some(f), Some(t)) => {
            let (from, to) = (parse_date("--from", f)?, parse_date("--to", t)?);
            if to < from {
                bail!("--to {to} is before --from {from}");
            }
            from.iter_days().take_while(|d| *d <= to).collect()
        }
        // The wall clock only picks the default day; nothing inside the run reads it.
        _ => vec![Utc::now()
            .date_naive()
            .checked_sub_days(Days::new(1))
            .ok_or_else(|| anyhow!("no yesterday"))?],
    };
    let max_reject = args.max_reject_ratio.or(ctx.config.etl.max_reject_ratio);
    if let Some(r) = max_reject {
        if !(0.0..=1.0).contains(&r) {
            bail!("--max-reject-ratio {r}: expected a ratio between 0 and 1");
        }
    }
    let interval = ctx.config.etl.expected_interval_s;
    if !(interval > 0.0 && interval <= 86_400.0) {
        bail!("etl.expected_interval_s {interval}: expected seconds between 0 and 86400");
    }
    let keyer = keyer(ctx)?;
    let lake = Lake::open(&args.lake, ctx, daily::inputs(&dates))?;
    let job = DailyJob {
        root: lake.root().to_path_buf(),
        dates,
        thresholds: &ctx.thresholds,
        keyer: &keyer,
        expected_interval_s: interval,
    };
    let started = Instant::now();
    let bar = Bar::new("etl daily", ctx.quiet, ctx.verbose);
    let reports = daily::run(&job, &bar)
        .map_err(|e| lake.explain(e))
        .with_context(|| format!("etl daily in {}", lake.describe()))?;
    lake.publish()?;
    let mut too_many = Vec::new();
    for r in &reports {
        let c = |k: &str| r.counts.get(k).copied().unwrap_or(0);
        println!(
            "etl daily {}: {} Bronze rows → {} Silver, {} duplicates (message id {}, device+time {}), {} quarantined; {} alerts; patient_daily {} rows, quality_daily {}, features_ml {}; {} files; run {}.",
            r.date,
            c("bronze_rows"),
            c("silver_rows"),
            c("duplicate_message_id") + c("duplicate_device_time"),
            c("duplicate_message_id"),
            c("duplicate_device_time"),
            c("quarantined"),
            c("alerts"),
            c("rows.gold.patient_daily"),
            c("rows.gold.quality_daily"),
            c("rows.gold.features_ml"),
            r.outputs.len(),
            r.run_id,
        );
        if let Some(limit) = max_reject {
            let ratio = r.quarantined() as f64 / r.bronze_rows().max(1) as f64;
            if ratio > limit {
                too_many.push(format!(
                    "{}: {} of {} Bronze rows quarantined ({:.2} % > {:.2} %)",
                    r.date,
                    r.quarantined(),
                    r.bronze_rows(),
                    ratio * 100.0,
                    limit * 100.0
                ));
            }
        }
    }
    let total: u64 = reports.iter().map(|r| r.bronze_rows()).sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "etl daily: {} day(s), {} Bronze rows in {:.1} s ({:.0} rows/s).",
        reports.len(),
        total,
        secs,
        total as f64 / secs.max(1e-9)
    );
    if !too_many.is_empty() {
        for line in &too_many {
            eprintln!("rejected too much: {line}");
        }
        eprintln!("the outputs are committed; the quarantine partitions say why each record was set aside");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_period(period: Period, lake: &LakeArg, ctx: &Context) -> Result<ExitCode> {
    let started = Instant::now();
    let lake = Lake::open(lake, ctx, periodic::inputs(period))?;
    let report = periodic::run(lake.root(), period, ctx.config.etl.expected_interval_s)
        .map_err(|e| lake.explain(e))
        .with_context(|| format!("etl for {} in {}", period.label(), lake.describe()))?;
    lake.publish()?;
    let rows: u64 = report.counts.values().sum();
    println!(
        "{} {}: {} day(s) of patient_daily → {} rows; run {} in {:.1} s.",
        report.command,
        report.period,
        report.days_with_input,
        rows,
        report.run_id,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

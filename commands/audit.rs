//! `kidjamo audit report`.

use crate::context::Context;
use crate::db::{connect, Connection};
use anyhow::{anyhow, bail, Context as _, Result};
use chrono::{DateTime, Days, NaiveDate, Utc};
use clap::{Args, Subcommand, ValueEnum};
use kidjamo::audit::{activity, lake, posture, render, AuditReport, REPORT_VERSION};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Accesses and changes per patient, data-rights events, security posture, data quality
    /// and pipeline runs. Exits 1 when a security check fails.
    Report(ReportArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Md,
    Html,
    Json,
}

#[derive(Args)]
pub struct ReportArgs {
    /// Start of the period (YYYY-MM-DD or RFC 3339; default: 30 days before --until).
    #[arg(long)]
    since: Option<String>,
    /// End of the period, exclusive (default: tomorrow, UTC, so today is included).
    #[arg(long)]
    until: Option<String>,
    /// Only this patient's records.
    #[arg(long)]
    patient: Option<String>,
    #[arg(long, value_enum, default_value = "md")]
    format: Format,
    /// Write the report here instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Lake root, for data quality (Gold) and pipeline runs (_runs/).
    #[arg(long, value_name = "DIR")]
    lake: Option<PathBuf>,
    /// The login role the application uses (checked for SUPERUSER, BYPASSRLS, ownership).
    #[arg(long, default_value = "kidjamo_app")]
    app_role: String,
    /// The day posture checks are made for (partitions ahead; default today, UTC).
    #[arg(long)]
    as_of: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

fn instant(flag: &str, text: &str) -> Result<DateTime<Utc>> {
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| anyhow!("{flag} {text:?} is not a date (YYYY-MM-DD) or an RFC 3339 instant"))
}

pub fn run(cmd: AuditCommand, ctx: &Context) -> Result<ExitCode> {
    let AuditCommand::Report(args) = cmd;
    let today = Utc::now().date_naive();
    let until = match &args.until {
        Some(t) => instant("--until", t)?,
        None => (today + Days::new(1))
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc(),
    };
    let since = match &args.since {
        Some(t) => instant("--since", t)?,
        None => until - chrono::Duration::days(30),
    };
    if since >= until {
        bail!("--since {since} is not before --until {until}");
    }
    let as_of = match &args.as_of {
        Some(t) => NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .map_err(|_| anyhow!("--as-of {t:?} is not a date (YYYY-MM-DD)"))?,
        None => today,
    };
    let patient = args
        .patient
        .as_deref()
        .map(|p| uuid::Uuid::try_parse(p).map_err(|_| anyhow!("--patient {p:?} is not a UUID")))
        .transpose()?;
    if let Some(l) = &args.lake {
        if !l.is_dir() {
            bail!("lake {} does not exist or is not a directory", l.display());
        }
    }
    let mut client = connect(&args.connection, ctx)?;
    let period = activity::Period {
        since,
        until,
        patient,
    };
    let checks = posture::run(
        &mut client,
        &posture::PostureSettings {
            app_role: &args.app_role,
            today: as_of,
        },
    )?;
    let (data_quality, pipeline_runs) = match &args.lake {
        Some(root) => {
            let first = since.date_naive();
            let days: Vec<NaiveDate> = first
                .iter_days()
                .take_while(|d| d.and_hms_opt(0, 0, 0).is_some_and(|t| t.and_utc() < until))
                .collect();
            (
                lake::quality_by_day(root, &days)?,
                lake::pipeline_runs(root, first, until.date_naive() + Days::new(1))?,
            )
        }
        None => (Vec::new(), Vec::new()),
    };
    let failed: Vec<&posture::Check> = checks.iter().filter(|c| !c.passed).collect();
    let report = AuditReport {
        report_version: REPORT_VERSION,
        kidjamo_version: env!("CARGO_PKG_VERSION").into(),
        since,
        until,
        patient,
        as_of,
        database: kidjamo::db::redact_url(&crate::db::database_url_of(&args.connection, ctx)?),
        lake: args.lake.as_ref().map(|l| l.display().to_string()),
        failed_checks: failed.len(),
        activity: activity::per_patient(&mut client, &period)?,
        data_rights: activity::data_rights(&mut client, &period)?,
        security_checks: checks.clone(),
        data_quality,
        pipeline_runs,
    };
    let text = match args.format {
        Format::Md => render::markdown(&report),
        Format::Html => render::html(&report),
        Format::Json => render::json(&report),
    };
    match &args.out {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write the report to {}", path.display()))?,
        None => print!("{text}"),
    }
    for c in &failed {
        eprintln!("security check failed: {} ({})", c.title, c.id);
        for p in &c.problems {
            eprintln!("  - {p}");
        }
        eprintln!("  fix: {}", c.fix);
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

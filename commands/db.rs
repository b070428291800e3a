//! `kidjamo db migrate|status|partitions|refresh|escalate|load`.

use crate::context::Context;
use crate::progress::Bar;
use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use kidjamo::config::Secret;
use kidjamo::db::{self, load, maintenance, migrations, partitions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum DbCommand {
    /// Apply pending migrations in order, each in its own transaction, under an advisory lock.
    Migrate(MigrateArgs),
    /// List applied and pending migrations; exit 1 when something is pending.
    Status(StatusArgs),
    /// Create weekly partitions ahead and behind, empty the DEFAULT partitions, apply retention.
    Partitions(PartitionsArgs),
    /// Refresh the dashboards' materialized views CONCURRENTLY.
    Refresh(Connection),
    /// Escalate critical alerts left unacknowledged past the thresholds' escalation delay.
    Escalate(Connection),
    /// Load the lake's reference tables and measurements (Silver, else Bronze) with binary COPY.
    Load(LoadArgs),
}

#[derive(Args)]
pub struct Connection {
    /// PostgreSQL URL (default: database.url or DATABASE_URL).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

#[derive(Args)]
pub struct PartitionsArgs {
    #[command(flatten)]
    connection: Connection,
    /// Weeks to create ahead of the current one.
    #[arg(long, default_value_t = 8, value_name = "WEEKS")]
    ahead: u32,
    /// Weeks to create behind the current one (for backfills).
    #[arg(long, default_value_t = 0, value_name = "WEEKS")]
    behind: u32,
    /// The day taken as "today" (default: the current UTC date).
    #[arg(long, value_name = "YYYY-MM-DD")]
    today: Option<chrono::NaiveDate>,
    /// Detach weekly partitions that ended more than N weeks before the current week, once the
    /// lake holds a verified archive of each.
    #[arg(long, value_name = "WEEKS")]
    retain: Option<u32>,
    /// Lake root holding (or receiving, with --archive) archive/measurements/iso_week=…/.
    #[arg(long, value_name = "DIR")]
    lake: Option<PathBuf>,
    /// Write the archive of a partition past retention when the lake has none, then detach it.
    #[arg(long, requires = "lake")]
    archive: bool,
    /// Detach past retention even without a verified archive.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct LoadArgs {
    #[command(flatten)]
    connection: Connection,
    /// Lake root written by `kidjamo simulate` / `kidjamo etl` (a local folder).
    #[arg(long, value_name = "DIR")]
    lake: PathBuf,
    /// Measurements layer to load: silver or bronze (default: silver when present, else bronze).
    #[arg(long, value_name = "LAYER")]
    layer: Option<String>,
    /// First event date to load.
    #[arg(long, value_name = "YYYY-MM-DD")]
    from: Option<chrono::NaiveDate>,
    /// Last event date to load (inclusive).
    #[arg(long, value_name = "YYYY-MM-DD")]
    to: Option<chrono::NaiveDate>,
    /// Database connections loading measurement files in parallel.
    #[arg(long, default_value_t = 2, value_name = "N")]
    connections: usize,
}

#[derive(Args)]
pub struct Source {
    /// PostgreSQL URL (default: database.url or DATABASE_URL).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Read migrations from this folder instead of the ones built into kidjamo.
    #[arg(long, value_name = "DIR")]
    migrations: Option<PathBuf>,
}

#[derive(Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    source: Source,
    /// Print the plan without applying anything.
    #[arg(long)]
    dry_run: bool,
    /// Stop after this version.
    #[arg(long, value_name = "VERSION")]
    target: Option<i32>,
    /// How long to wait for another migrator to finish, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    lock_timeout: u64,
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    source: Source,
}

pub fn run(cmd: DbCommand, ctx: &Context) -> Result<ExitCode> {
    match cmd {
        DbCommand::Migrate(args) => migrate(args, ctx),
        DbCommand::Status(args) => status(args, ctx),
        DbCommand::Partitions(args) => partitions(args, ctx),
        DbCommand::Refresh(args) => refresh(args, ctx),
        DbCommand::Escalate(args) => escalate(args, ctx),
        DbCommand::Load(args) => load_lake(args, ctx),
    }
}

fn database_url(flag: &Option<String>, ctx: &Context) -> Result<String> {
    flag.clone()
        .or_else(|| {
            ctx.config
                .database
                .url
                .as_ref()
                .map(|s: &Secret| s.expose().to_string())
        })
        .ok_or_else(|| {
            anyhow!(
                "no database configured: pass --database-url, or set DATABASE_URL or database.url"
            )
        })
}

pub fn database_url_of(c: &Connection, ctx: &Context) -> Result<String> {
    database_url(&c.database_url, ctx)
}

pub fn connect(c: &Connection, ctx: &Context) -> Result<postgres::Client> {
    Ok(db::connect(&database_url(&c.database_url, ctx)?)?)
}

fn partitions(args: PartitionsArgs, ctx: &Context) -> Result<ExitCode> {
    let mut client = connect(&args.connection, ctx)?;
    let plan = partitions::PartitionPlan {
        today: args
            .today
            .unwrap_or_else(|| chrono::Utc::now().date_naive()),
        weeks_ahead: args.ahead,
        weeks_behind: args.behind,
        retain_weeks: args.retain,
        lake: args.lake,
        write_archives: args.archive,
        force: args.force,
    };
    let report = partitions::maintain(&mut client, &plan)?;
    match &report.leftovers_dropped {
        Some(dropped) => {
            for l in dropped {
                println!(
                    "dropped  {} ({} rows of a load or restore that was killed; rerun it)",
                    l.table, l.rows
                );
            }
        }
        None => println!(
            "leftovers: not looked for, a load or restore is running (run again once it ends)"
        ),
    }
    if report.created.is_empty() {
        println!("partitions: all partitions already exist");
    }
    for c in &report.created {
        if c.moved_rows > 0 {
            println!(
                "created  {} (moved {} rows out of DEFAULT)",
                c.name, c.moved_rows
            );
        } else {
            println!("created  {}", c.name);
        }
    }
    println!(
        "DEFAULT partitions: measurements {} rows before, {} after; audit_log {} before, {} after",
        report.measurements_default_before,
        report.measurements_default_after,
        report.audit_default_before,
        report.audit_default_after
    );
    let mut kept = 0;
    for action in &report.retention {
        match action {
            partitions::RetentionAction::Detached { name, rows, archive } => match archive {
                Some(dir) => println!(
                    "detached {name} ({rows} rows; archive verified at {}); DROP TABLE {name} when it is no longer needed",
                    dir.display()
                ),
                None => println!("detached {name} ({rows} rows; --force, no archive checked)"),
            },
            partitions::RetentionAction::Kept { name, reason } => {
                kept += 1;
                println!("kept     {name}: {reason}");
            }
        }
    }
    // Past retention but kept is a "no" answer: exit 1 so schedulers notice.
    Ok(if kept > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn refresh(args: Connection, ctx: &Context) -> Result<ExitCode> {
    let mut client = connect(&args, ctx)?;
    for (view, took) in maintenance::refresh(&mut client)? {
        println!("refreshed {view} in {:.2} s", took.as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}

fn escalate(args: Connection, ctx: &Context) -> Result<ExitCode> {
    let mut client = connect(&args, ctx)?;
    let after = ctx.thresholds.escalation.critical_unacknowledged_after_s;
    let after = u32::try_from(after).unwrap_or(u32::MAX);
    let n = maintenance::escalate(&mut client, after)?;
    println!("escalate: {n} critical alert(s) unacknowledged for {after} s escalated one level");
    Ok(ExitCode::SUCCESS)
}

fn load_lake(args: LoadArgs, ctx: &Context) -> Result<ExitCode> {
    let url = database_url(&args.connection.database_url, ctx)?;
    let selection = load::MeasurementSelection {
        layer: args.layer,
        from: args.from,
        to: args.to,
    };
    let bar = Bar::new("load", ctx.quiet, ctx.verbose);
    let started = std::time::Instant::now();
    let connect = || db::connect(&url);
    let report = load::load_lake(&connect, &args.lake, &selection, args.connections, &bar)?;
    let secs = started.elapsed().as_secs_f64();
    match &report.measurement_layer {
        Some(layer) => println!(
            "load: measurements from {layer} ({} files)",
            report.measurement_files
        ),
        None => println!("load: the lake holds no measurements"),
    }
    for t in &report.tables {
        let mut unknown = String::new();
        if t.updated > 0 {
            unknown.push_str(&format!(", {} updated to a newer state", t.updated));
        }
        if t.unknown_patient > 0 {
            unknown.push_str(&format!(
                ", {} rejected (unknown patient)",
                t.unknown_patient
            ));
        }
        println!(
            "{:<20} {:>10} read {:>10} inserted {:>10} duplicate or already present{unknown}",
            t.table, t.read, t.inserted, t.already_present
        );
    }
    if !report.partitions_created.is_empty() {
        println!(
            "partitions created: {}",
            report.partitions_created.join(", ")
        );
    }
    let measured = report
        .tables
        .iter()
        .find(|t| t.table == "measurements")
        .map_or(0, |t| t.read);
    println!(
        "load: {:.1} s, {:.0} measurements/s",
        secs,
        measured as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

fn load(source: &Source, ctx: &Context) -> Result<(postgres::Client, Vec<migrations::Migration>)> {
    let url = database_url(&source.database_url, ctx)?;
    let list = match &source.migrations {
        Some(dir) => migrations::from_dir(dir)?,
        None => migrations::embedded()?,
    };
    Ok((db::connect(&url)?, list))
}

fn migrate(args: MigrateArgs, ctx: &Context) -> Result<ExitCode> {
    let (mut client, list) = load(&args.source, ctx)?;
    if args.dry_run {
        let plan = migrations::plan(&mut client, &list, args.target)?;
        println!(
            "{} applied; would apply {}:",
            plan.applied.len(),
            plan.pending.len()
        );
        for m in &plan.pending {
            let how = if m.transactional {
                "in a transaction"
            } else {
                "outside a transaction"
            };
            println!("  {} ({how})", m.file_name());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let applied = migrations::migrate(
        &mut client,
        &list,
        args.target,
        Duration::from_secs(args.lock_timeout),
    )?;
    if applied.is_empty() {
        println!("migrate: nothing to apply; the database is up to date");
    } else {
        let names: Vec<String> = applied
            .iter()
            .map(migrations::Migration::file_name)
            .collect();
        println!(
            "migrate: applied {} migration(s): {}",
            applied.len(),
            names.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn status(args: StatusArgs, ctx: &Context) -> Result<ExitCode> {
    let (mut client, list) = load(&args.source, ctx)?;
    let plan = migrations::plan(&mut client, &list, None)?;
    for a in &plan.applied {
        println!("applied  {:04}_{}.sql", a.version, a.name);
    }
    for m in &plan.pending {
        println!("pending  {}", m.file_name());
    }
    Ok(if plan.pending.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

//! `kidjamo db migrate|status`.

use crate::context::Context;
use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use kidjamo::config::Secret;
use kidjamo::db::{self, migrations};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum DbCommand {
    /// Apply pending migrations in order, each in its own transaction, under an advisory lock.
    Migrate(MigrateArgs),
    /// List applied and pending migrations; exit 1 when something is pending.
    Status(StatusArgs),
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
    }
}

fn load(source: &Source, ctx: &Context) -> Result<(postgres::Client, Vec<migrations::Migration>)> {
    let url = source
        .database_url
        .clone()
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
        })?;
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

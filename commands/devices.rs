//! `kidjamo devices issue-token`: a device's credential for the ingestion API.

use crate::context::Context;
use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use kidjamo::serve::auth::issue;
use kidjamo::serve::credentials::{os_random, patient_in_reference};
use std::path::PathBuf;
use std::process::ExitCode;
use uuid::Uuid;

#[derive(Subcommand)]
pub enum DevicesCommand {
    /// Create a token for a device (replacing any earlier one) and print it once on stdout.
    IssueToken(IssueArgs),
}

#[derive(Args)]
pub struct IssueArgs {
    /// The device's id.
    device_id: Uuid,
    /// The patient the device sends for (default: its current assignment in the database, or
    /// in the lake's reference/devices.parquet for a credentials file).
    #[arg(long, value_name = "UUID")]
    patient: Option<Uuid>,
    /// Device credentials file (default: serve.credentials_file; without one, the database).
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
    /// PostgreSQL URL holding device_credentials (default: database.url or DATABASE_URL).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Lake root whose reference tables name the device's patient (default: lake.root).
    #[arg(long, value_name = "DIR")]
    lake: Option<PathBuf>,
}

pub fn run(cmd: DevicesCommand, ctx: &Context) -> Result<ExitCode> {
    match cmd {
        DevicesCommand::IssueToken(args) => issue_token(args, ctx),
    }
}

fn issue_token(args: IssueArgs, ctx: &Context) -> Result<ExitCode> {
    let store = crate::context::credential_store(&args.credentials, &args.database_url, ctx)?;
    let patient = match args.patient {
        Some(p) => p,
        None => match store.assigned_patient(args.device_id)? {
            Some(p) => p,
            None => {
                let lake = args
                    .lake
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(&ctx.config.lake.root));
                patient_in_reference(&lake, args.device_id)?.ok_or_else(|| {
                    anyhow!(
                        "device {} has no patient assigned (database or {}/reference); pass --patient",
                        args.device_id,
                        lake.display()
                    )
                })?
            }
        },
    };
    let issued = issue(args.device_id, patient, os_random()?);
    let issued_at = chrono::Utc::now().to_rfc3339();
    store.save(&issued.credential, &issued_at)?;
    eprintln!(
        "token issued for device {} and stored (hashed) in {}; it is shown once:",
        args.device_id,
        store.describe()
    );
    println!("{}", issued.token);
    Ok(ExitCode::SUCCESS)
}

//! `kidjamo backup patient` and `kidjamo restore patient`.

use crate::context::Context;
use crate::db::{connect, Connection};
use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use kidjamo::db::patient_archive;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Every row that belongs to one patient, from one consistent snapshot, as one archive.
    Patient(BackupArgs),
}

#[derive(Subcommand)]
pub enum RestoreCommand {
    /// Put a patient archive back, after checking its checksums and schema version.
    Patient(RestoreArgs),
}

#[derive(Subcommand)]
pub enum EraseCommand {
    /// Remove every row of one patient from the database (right to erasure), audited.
    Patient(EraseArgs),
}

#[derive(Args)]
pub struct EraseArgs {
    /// The patient's id (patients.patient_id).
    patient_id: uuid::Uuid,
    /// Why (recorded in the audit row that outlives the data), e.g. "gdpr article 17 request".
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// Show what would be removed, change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    connection: Connection,
}

pub fn erase(cmd: EraseCommand, ctx: &Context) -> Result<ExitCode> {
    let EraseCommand::Patient(args) = cmd;
    let mut client = connect(&args.connection, ctx)?;
    let Some(done) =
        kidjamo::db::erase::erase(&mut client, args.patient_id, &args.reason, args.dry_run)?
    else {
        bail!(
            "patient {} does not exist in this database",
            args.patient_id
        );
    };
    let total: u64 = done.rows.iter().map(|(_, n)| n).sum();
    if done.dry_run {
        println!(
            "erase (dry run): would remove {total} rows of patient {}",
            done.patient_id
        );
    } else {
        println!(
            "erase: removed {total} rows of patient {}; audited without personal data",
            done.patient_id
        );
    }
    for (table, n) in &done.rows {
        println!("  {table:<20} {n:>10}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Reason {
    GdprAccess,
    Transfer,
    Backup,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::GdprAccess => "gdpr_access",
            Reason::Transfer => "transfer",
            Reason::Backup => "backup",
        }
    }
}

#[derive(Args)]
pub struct BackupArgs {
    /// The patient's id (patients.patient_id).
    patient_id: uuid::Uuid,
    /// Archive to write (a tar file: manifest.json and one binary COPY member per table).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Why the backup is made; recorded in the audit log.
    #[arg(long, value_enum, default_value = "backup")]
    reason: Reason,
    /// Encrypt the archive to this age recipient (age1…), as it is written.
    #[arg(long, value_name = "RECIPIENT")]
    encrypt_to: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// Archive written by `kidjamo backup patient`.
    archive: PathBuf,
    /// age identity file that decrypts an encrypted archive.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    #[command(flatten)]
    connection: Connection,
}

pub fn backup(cmd: BackupCommand, ctx: &Context) -> Result<ExitCode> {
    let BackupCommand::Patient(args) = cmd;
    if args.out.exists() {
        bail!(
            "{} already exists; choose another --out",
            args.out.display()
        );
    }
    let mut client = connect(&args.connection, ctx)?;
    let manifest = patient_archive::backup(
        &mut client,
        args.patient_id,
        &args.out,
        args.reason.as_str(),
        args.encrypt_to.as_deref(),
    )?;
    let rows: i64 = manifest.members.iter().map(|m| m.rows).sum();
    println!(
        "backup: {} rows in {} tables → {} (schema version {})",
        rows,
        manifest.members.len(),
        args.out.display(),
        manifest.schema_version
    );
    for m in &manifest.members {
        println!("  {:<20} {:>10} rows", m.table, m.rows);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn restore(cmd: RestoreCommand, ctx: &Context) -> Result<ExitCode> {
    let RestoreCommand::Patient(args) = cmd;
    let mut client = connect(&args.connection, ctx)?;
    let (manifest, counts) =
        patient_archive::restore(&mut client, &args.archive, args.identity.as_deref())?;
    let inserted: u64 = counts.iter().map(|c| c.2).sum();
    println!(
        "restore: {} of patient {} ({} rows inserted; rows already present were kept)",
        args.archive.display(),
        manifest.patient_id,
        inserted
    );
    for (table, in_archive, inserted) in &counts {
        println!("  {table:<20} {in_archive:>10} in archive {inserted:>10} inserted");
    }
    Ok(ExitCode::SUCCESS)
}

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
    /// Also remove the patient from this lake (every file, rewritten without their rows) and
    /// tombstone them so that later ETL runs drop any record of theirs that arrives late.
    #[arg(long, value_name = "DIR")]
    lake: Option<PathBuf>,
    #[command(flatten)]
    connection: Connection,
}

/// The patient's names in a lake: their Gold rows need the pseudonymisation key.
fn lake_ids(
    root: &std::path::Path,
    patient: uuid::Uuid,
    ctx: &Context,
) -> Result<kidjamo::lake::patient_data::PatientIds> {
    if !root.is_dir() {
        bail!(
            "lake {} does not exist or is not a directory",
            root.display()
        );
    }
    let keyer = if ctx.config.pseudonymisation.key.is_some() {
        Some(crate::etl::keyer(ctx)?)
    } else if root.join("gold").is_dir() {
        bail!(
            "lake {} has Gold tables, which name patients by an HMAC of their id: set \
             KIDJAMO_PSEUDONYMISATION__KEY (the key the ETL used) to find this patient's rows",
            root.display()
        );
    } else {
        None
    };
    Ok(kidjamo::lake::patient_data::PatientIds::find(
        root,
        patient,
        keyer.as_ref(),
    )?)
}

pub fn erase(cmd: EraseCommand, ctx: &Context) -> Result<ExitCode> {
    let EraseCommand::Patient(args) = cmd;
    let ids = match &args.lake {
        Some(root) => Some(lake_ids(root, args.patient_id, ctx)?),
        None => None,
    };
    let mut client = connect(&args.connection, ctx)?;
    let erased =
        kidjamo::db::erase::erase(&mut client, args.patient_id, &args.reason, args.dry_run)?;
    let Some(done) = erased else {
        let (Some(root), Some(ids)) = (&args.lake, &ids) else {
            bail!(
                "patient {} does not exist in this database",
                args.patient_id
            );
        };
        // Already gone from the database (an earlier erasure stopped halfway): finish the lake.
        println!(
            "erase: patient {} has no rows in the database",
            args.patient_id
        );
        erase_lake(root, args.patient_id, ids, args.dry_run)?;
        return Ok(ExitCode::SUCCESS);
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
    if let (Some(root), Some(ids)) = (&args.lake, &ids) {
        erase_lake(root, args.patient_id, ids, args.dry_run)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn erase_lake(
    root: &std::path::Path,
    patient: uuid::Uuid,
    ids: &kidjamo::lake::patient_data::PatientIds,
    dry_run: bool,
) -> Result<()> {
    use kidjamo::lake::patient_data::{self, Part};
    let mut files = 0;
    let mut rows = 0usize;
    for path in patient_data::candidate_files(root)? {
        let Some(split) = patient_data::split(root, &path, ids)? else {
            continue;
        };
        files += 1;
        rows += match &split.patient {
            Part::Rows(df) => df.height(),
            Part::Lines(b) => b.iter().filter(|c| **c == b'\n').count(),
            Part::State(_) => 1,
        };
        if !dry_run {
            patient_data::replace(root, &split.relative, split.rest)?;
        }
    }
    if dry_run {
        println!(
            "  lake: would remove {rows} rows or lines from {files} files of {}",
            root.display()
        );
    } else {
        patient_data::set_tombstone(root, &patient, true)?;
        println!(
            "  lake: removed {rows} rows or lines from {files} files of {}; tombstoned as {}",
            root.display(),
            patient_data::digest(&patient)
        );
    }
    Ok(())
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
    /// Add the patient's records from this lake (Bronze, quarantine, Silver, alerts, Gold,
    /// reference, engine state), one member per lake file that holds any of them.
    #[arg(long, value_name = "DIR")]
    with_lake: Option<PathBuf>,
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
    /// Put the archive's lake records back into this lake (and lift the patient's tombstone).
    #[arg(long, value_name = "DIR")]
    lake: Option<PathBuf>,
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
    let ids = match &args.with_lake {
        Some(root) => Some(lake_ids(root, args.patient_id, ctx)?),
        None => None,
    };
    let mut client = connect(&args.connection, ctx)?;
    let manifest = patient_archive::backup(
        &mut client,
        args.patient_id,
        &args.out,
        args.reason.as_str(),
        args.encrypt_to.as_deref(),
        args.with_lake.as_deref().zip(ids.as_ref()),
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
    if !manifest.lake.is_empty() {
        println!(
            "  {:<20} {:>10} rows or lines from {} files",
            "lake",
            manifest.lake.iter().map(|m| m.rows).sum::<i64>(),
            manifest.lake.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn restore(cmd: RestoreCommand, ctx: &Context) -> Result<ExitCode> {
    let RestoreCommand::Patient(args) = cmd;
    let mut client = connect(&args.connection, ctx)?;
    // The second connection fills new weeks' tables while the first attaches them.
    let mut helper = connect(&args.connection, ctx)?;
    if let Some(root) = &args.lake {
        if !root.is_dir() {
            bail!(
                "lake {} does not exist or is not a directory",
                root.display()
            );
        }
    }
    let (manifest, counts) = patient_archive::restore(
        &mut client,
        &mut helper,
        &args.archive,
        args.identity.as_deref(),
        args.lake.as_deref(),
    )?;
    if args.lake.is_none() && !manifest.lake.is_empty() {
        println!(
            "restore: the archive's {} lake files were verified and not restored (pass --lake DIR)",
            manifest.lake.len()
        );
    }
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

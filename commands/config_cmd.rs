//! `kidjamo config show`.

use crate::context::Context;
use anyhow::Result;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (file, then KIDJAMO_* environment) with secrets redacted.
    Show,
}

pub fn run(cmd: ConfigCommand, ctx: &Context) -> Result<ExitCode> {
    match cmd {
        ConfigCommand::Show => {
            print!("{}", ctx.config.to_redacted_yaml());
            Ok(ExitCode::SUCCESS)
        }
    }
}

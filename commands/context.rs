//! What every subcommand gets: the effective configuration, the validated thresholds and the
//! output preferences.

use anyhow::{bail, Context as _, Result};
use kidjamo::config::{self, Config, Environment};
use kidjamo::domain::thresholds::Thresholds;
use kidjamo::serve::credentials::CredentialStore;
use std::path::{Path, PathBuf};

pub struct Context {
    pub config: Config,
    pub env: Environment,
    pub thresholds: Thresholds,
    pub quiet: bool,
    pub verbose: u8,
}

impl Context {
    pub fn new(
        config_flag: Option<&Path>,
        thresholds_flag: Option<&Path>,
        quiet: bool,
        verbose: u8,
    ) -> Result<Context> {
        let env = config::process_environment();
        let path = config::config_path(config_flag, &env);
        let config = config::load(path.as_deref(), &env)?;
        let thresholds_path = thresholds_flag
            .map(Path::to_path_buf)
            .or_else(|| config.thresholds.clone());
        let thresholds = match &thresholds_path {
            None => Thresholds::reference(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read thresholds file {}", p.display()))?;
                // One line naming the file and the key at fault.
                Thresholds::from_yaml(&text)
                    .map_err(|e| anyhow::anyhow!("thresholds file {}: {e}", p.display()))?
            }
        };
        Ok(Context {
            config,
            env,
            thresholds,
            quiet,
            verbose,
        })
    }
}

/// Which device credential store the flags and configuration name (`serve`, `devices`).
pub fn credential_store(
    file_flag: &Option<PathBuf>,
    url_flag: &Option<String>,
    ctx: &Context,
) -> Result<CredentialStore> {
    if let Some(f) = file_flag
        .clone()
        .or_else(|| ctx.config.serve.credentials_file.clone())
    {
        return Ok(CredentialStore::File(f));
    }
    let url = url_flag.clone().or_else(|| {
        ctx.config
            .database
            .url
            .as_ref()
            .map(|s| s.expose().to_string())
    });
    match url {
        Some(u) => Ok(CredentialStore::Postgres(u)),
        None => bail!(
            "no device credential store: pass --credentials FILE or --database-url URL \
             (or set serve.credentials_file or database.url)"
        ),
    }
}

/// A next step for errors whose fix is not obvious from the message.
pub fn hint_for(err: &anyhow::Error) -> Option<&'static str> {
    let text = err.to_string();
    if text.contains("KIDJAMO_") {
        Some("`kidjamo config show` prints the configuration the file and environment give")
    } else {
        None
    }
}

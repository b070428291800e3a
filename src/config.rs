//! Configuration: a YAML file (`kidjamo.yaml` or `--config`), then `KIDJAMO_*` environment
//! variables, then command-line flags, each overriding the previous. This is the only module
//! that reads the environment. Unknown keys are errors; secrets never print.

use serde::{Deserialize, Serialize, Serializer};
use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_FILE: &str = "kidjamo.yaml";
const ENV_PREFIX: &str = "KIDJAMO_";
/// Environment variables with a meaning of their own, not configuration keys:
/// `KIDJAMO_CONFIG`, and `KIDJAMO_TEST_*` of the test harness.
const ENV_RESERVED: [&str; 1] = ["KIDJAMO_CONFIG"];
const ENV_RESERVED_PREFIX: &str = "KIDJAMO_TEST_";

/// A value that must not appear in logs or output.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Clinical thresholds file; the shipped reference copy when absent.
    pub thresholds: Option<PathBuf>,
    pub lake: LakeConfig,
    pub simulate: SimulateConfig,
    pub kafka: KafkaConfig,
    pub database: DatabaseConfig,
    pub pseudonymisation: PseudonymisationConfig,
    pub etl: EtlConfig,
    pub serve: ServeConfig,
}

/// `serve` section: the ingestion API.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    pub listen: String,
    /// Largest request body accepted (HTTP 413 above).
    pub max_body_bytes: usize,
    /// How long a request waits for the broker's acknowledgements (HTTP 503 after).
    pub ack_timeout_ms: u64,
    /// Device credentials file (hashes only); when absent, PostgreSQL (database.url) is used.
    pub credentials_file: Option<PathBuf>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 4 * 1024 * 1024,
            ack_timeout_ms: 5000,
            credentials_file: None,
        }
    }
}

/// `etl` section: what the batch ETL assumes about the data.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EtlConfig {
    /// The sampling interval devices are configured for: the denominator of completeness.
    pub expected_interval_s: f64,
    /// A day whose quarantined share of Bronze rows exceeds this makes the run exit 1.
    pub max_reject_ratio: Option<f64>,
}

impl Default for EtlConfig {
    fn default() -> Self {
        EtlConfig {
            expected_interval_s: 30.0,
            max_reject_ratio: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// A local path, `file://…` or `s3://bucket/prefix`.
    pub root: String,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            root: "./lake".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimulateConfig {
    pub patients: u32,
    pub days: u32,
    /// RFC 3339 instant or YYYY-MM-DD (midnight UTC).
    pub start: String,
    pub seed: u64,
    pub interval_s: f64,
    pub format: String,
    pub crisis_rate: f64,
    /// Genotype → weight; missing genotypes keep their default weight.
    pub genotype_mix: BTreeMap<String, f64>,
    /// Episode type → genotype → onset rate per patient-year, overriding the defaults.
    pub episode_rates: BTreeMap<String, BTreeMap<String, f64>>,
    pub faults: FaultsConfig,
}

impl Default for SimulateConfig {
    fn default() -> Self {
        SimulateConfig {
            patients: 100,
            days: 7,
            start: "2026-03-01".into(),
            seed: 42,
            interval_s: 30.0,
            format: "parquet".into(),
            crisis_rate: 1.0,
            genotype_mix: BTreeMap::new(),
            episode_rates: BTreeMap::new(),
            faults: FaultsConfig::default(),
        }
    }
}

/// Overrides of the default fault-injection rates (see `simulate::FaultRates`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsConfig {
    pub malformed: Option<f64>,
    pub duplicate: Option<f64>,
    pub late: Option<f64>,
    pub motion: Option<f64>,
    pub sensor_drop_per_day: Option<f64>,
    pub flatline_per_day: Option<f64>,
    pub clock_skew_per_day: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    pub brokers: String,
    pub measurements_topic: String,
    pub alerts_topic: String,
    pub quarantine_topic: String,
    /// Consumer group of `kidjamo stream`.
    pub group: String,
    /// Partitions of the topics kidjamo creates when they do not exist.
    pub partitions: u32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            measurements_topic: "kidjamo.measurements".into(),
            alerts_topic: "kidjamo.alerts".into(),
            quarantine_topic: "kidjamo.quarantine".into(),
            group: "kidjamo-stream".into(),
            partitions: 6,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: Option<Secret>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PseudonymisationConfig {
    /// Key of the HMAC that turns patient ids into `patient_key`.
    pub key: Option<Secret>,
    pub key_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

/// The process environment as the configuration sees it (a map, so tests can pass their own).
pub type Environment = BTreeMap<String, String>;

pub fn process_environment() -> Environment {
    std::env::vars().collect()
}

/// Settings for `object_store` from the standard `AWS_*` variables (credentials, region,
/// endpoint), lower-cased as `object_store` expects.
pub fn object_store_options(env: &Environment) -> Vec<(String, String)> {
    env.iter()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

/// Which file to read: `--config`, else `KIDJAMO_CONFIG`, else `./kidjamo.yaml` if it exists.
pub fn config_path(flag: Option<&Path>, env: &Environment) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    if let Some(p) = env.get("KIDJAMO_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let default = PathBuf::from(DEFAULT_CONFIG_FILE);
    default.exists().then_some(default)
}

/// File, then environment. Flags are applied by each command on top of the result.
pub fn load(path: Option<&Path>, env: &Environment) -> Result<Config, ConfigError> {
    let mut tree = match path {
        None => Value::Mapping(Mapping::new()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            let value: Value = if text.trim().is_empty() {
                Value::Mapping(Mapping::new())
            } else {
                serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::File {
                    path: p.to_path_buf(),
                    message: e.to_string(),
                })?
            };
            // Check the file on its own first, so that its errors name the file.
            serde_yaml_ng::from_value::<Config>(value.clone()).map_err(|e| ConfigError::File {
                path: p.to_path_buf(),
                message: e.to_string(),
            })?;
            value
        }
    };
    let mut applied = Vec::new();
    for (var, raw) in env {
        let keys: Vec<String> = if var == "DATABASE_URL" {
            vec!["database".into(), "url".into()]
        } else if var == "KAFKA_BROKERS" {
            vec!["kafka".into(), "brokers".into()]
        } else if let Some(rest) = var.strip_prefix(ENV_PREFIX) {
            if ENV_RESERVED.contains(&var.as_str()) || var.starts_with(ENV_RESERVED_PREFIX) {
                continue;
            }
            rest.split("__").map(str::to_ascii_lowercase).collect()
        } else {
            continue;
        };
        set_path(&mut tree, &keys, env_value(raw)).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
        applied.push(var.clone());
    }
    serde_yaml_ng::from_value::<Config>(tree).map_err(|e| ConfigError::Env {
        var: applied.join(", "),
        message: format!(
            "{e} (KIDJAMO_<SECTION>__<KEY> maps to section.key of the configuration file)"
        ),
    })
}

fn env_value(raw: &str) -> Value {
    // A YAML scalar, so numbers and booleans keep their type; anything else is a string.
    match serde_yaml_ng::from_str::<Value>(raw) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(raw.to_string()),
    }
}

fn set_path(tree: &mut Value, keys: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = keys.split_last() else {
        return Err("empty key".into());
    };
    let mut node = tree;
    for k in parents {
        let map = node
            .as_mapping_mut()
            .ok_or_else(|| format!("{k} is not a section"))?;
        node = map
            .entry(Value::String(k.clone()))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    let map = node
        .as_mapping_mut()
        .ok_or_else(|| format!("{last} is not inside a section"))?;
    map.insert(Value::String(last.clone()), value);
    Ok(())
}

impl Config {
    /// The effective configuration as YAML, secrets redacted.
    pub fn to_redacted_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Environment {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn config_environment_overrides_file_and_keeps_types() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.yaml");
        std::fs::write(
            &path,
            "simulate:\n  patients: 10\n  seed: 7\nlake:\n  root: /data/lake\n",
        )
        .expect("write");
        let cfg = load(
            Some(&path),
            &env(&[("KIDJAMO_SIMULATE__PATIENTS", "250"), ("HOME", "/root")]),
        )
        .expect("valid");
        assert_eq!(cfg.simulate.patients, 250);
        assert_eq!(cfg.simulate.seed, 7);
        assert_eq!(cfg.lake.root, "/data/lake");
    }

    #[test]
    fn config_rejects_unknown_keys_naming_the_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.yaml");
        std::fs::write(&path, "simulate:\n  patinets: 10\n").expect("write");
        let e = load(Some(&path), &env(&[]))
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("k.yaml") && e.contains("patinets"), "{e}");
        let e = load(None, &env(&[("KIDJAMO_SIMULATE__PATINETS", "3")]))
            .expect_err("unknown key")
            .to_string();
        assert!(
            e.contains("KIDJAMO_SIMULATE__PATINETS") && e.contains("patinets"),
            "{e}"
        );
    }

    #[test]
    fn config_honours_database_url_and_redacts_it() {
        let cfg = load(
            None,
            &env(&[
                ("DATABASE_URL", "postgres://app:hunter2@db/kidjamo"),
                ("KAFKA_BROKERS", "k1:9092"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            cfg.database.url.as_ref().map(Secret::expose),
            Some("postgres://app:hunter2@db/kidjamo")
        );
        assert_eq!(cfg.kafka.brokers, "k1:9092");
        let shown = cfg.to_redacted_yaml();
        assert!(
            !shown.contains("hunter2") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }
}

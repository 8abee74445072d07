//! Typed settings: built-in defaults (`config/default.toml`, compiled in) →
//! an optional TOML file → `EMAILIN__SECTION__KEY` environment variables.
//!
//! Unknown keys are an error that names the key, so a typo never silently
//! falls back to a default. Semantic checks (an alias naming a pipeline that
//! does not exist, a reopen rule from an open stage) live in [`Settings::validate`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

use crate::domain::{EmailAddress, StageKind};

/// The defaults, documented key by key.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub smtp: SmtpSettings,
    pub http: HttpSettings,
    pub intake: IntakeSettings,
    pub processing: ProcessingSettings,
    pub log: LogSettings,
    #[serde(default)]
    pub pipelines: Vec<PipelineConfig>,
    #[serde(default)]
    pub aliases: Vec<AliasConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    pub busy_timeout_ms: u64,
    pub sqlite_cache_kib: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub listen: SocketAddr,
    pub hostname: String,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_line_bytes: usize,
    pub max_sessions: usize,
    pub command_timeout_secs: u64,
    pub data_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeSettings {
    pub batch_max_messages: usize,
    pub batch_max_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessingSettings {
    pub batch_max_messages: usize,
    pub poll_interval_secs: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub name: String,
    pub stages: Vec<StageConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    pub name: String,
    pub kind: StageKind,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    pub address: String,
    #[serde(default)]
    pub name: String,
    pub pipeline: String,
    pub owner: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub reopen_on_reply: bool,
    #[serde(default)]
    pub reopen: Vec<ReopenRuleConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReopenRuleConfig {
    pub from: String,
    pub to: String,
}

fn yes() -> bool {
    true
}

/// A configuration that cannot be used, with the key or item it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(#[from] Box<figment::Error>),
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    /// The compiled-in defaults only: no file, no environment.
    ///
    /// # Errors
    /// Only if the compiled-in defaults are broken, which a unit test rules out.
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(DEFAULT_TOML)))
    }

    /// Defaults, then `file` when given, then `EMAILIN__*` environment variables.
    ///
    /// # Errors
    /// A missing file, a TOML syntax error, an unknown key, a wrong type, or a
    /// semantic error found by [`Settings::validate`].
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("EMAILIN__").split("__"));
        Self::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types cannot: names are unique, aliases point at pipelines
    /// that exist, reopen rules go from a closed stage to an open one.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the offending pipeline, alias or rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if self.smtp.max_message_bytes == 0 || self.smtp.max_recipients == 0 {
            return invalid("smtp.max_message_bytes and smtp.max_recipients must be > 0".into());
        }
        if !(512..=4096).contains(&self.smtp.max_line_bytes) {
            return invalid("smtp.max_line_bytes must be between 512 and 4096".into());
        }
        if self.intake.batch_max_messages == 0 || self.processing.batch_max_messages == 0 {
            return invalid("batch_max_messages must be > 0".into());
        }
        let mut names = HashSet::new();
        for p in &self.pipelines {
            if !names.insert(p.name.as_str()) {
                return invalid(format!("pipeline {:?} is defined twice", p.name));
            }
            if !p.stages.iter().any(|s| s.kind == StageKind::Open) {
                return invalid(format!("pipeline {:?} has no open stage", p.name));
            }
            let mut stages = HashSet::new();
            for s in &p.stages {
                if !stages.insert(s.name.as_str()) {
                    return invalid(format!("pipeline {:?}: stage {:?} twice", p.name, s.name));
                }
            }
        }
        let mut addresses = HashSet::new();
        for a in &self.aliases {
            let address = EmailAddress::parse(&a.address)
                .map_err(|e| ConfigError::Invalid(format!("alias {:?}: {e}", a.address)))?;
            if address.local().contains('+') {
                return invalid(format!(
                    "alias {:?}: an alias may not contain '+'",
                    a.address
                ));
            }
            if !addresses.insert(address) {
                return invalid(format!("alias {:?} is defined twice", a.address));
            }
            if let Some(owner) = &a.owner {
                EmailAddress::parse(owner).map_err(|e| {
                    ConfigError::Invalid(format!("alias {:?}: owner {owner:?}: {e}", a.address))
                })?;
            }
            let Some(pipeline) = self.pipelines.iter().find(|p| p.name == a.pipeline) else {
                return invalid(format!(
                    "alias {:?}: pipeline {:?} is not defined",
                    a.address, a.pipeline
                ));
            };
            let kind_of = |name: &str| {
                pipeline
                    .stages
                    .iter()
                    .find(|s| s.name == name)
                    .map(|s| s.kind)
            };
            for rule in &a.reopen {
                match (kind_of(&rule.from), kind_of(&rule.to)) {
                    (Some(StageKind::Closed), Some(StageKind::Open)) => {}
                    _ => {
                        return invalid(format!(
                            "alias {:?}: reopen rule {:?} -> {:?} must go from a closed stage to an open stage of pipeline {:?}",
                            a.address, rule.from, rule.to, pipeline.name
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_defaults_are_valid_and_ship_two_demo_pipelines() {
        let s = Settings::defaults().expect("defaults");
        let names: Vec<_> = s.pipelines.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["Sales", "Service"]);
        assert_eq!(s.aliases.len(), 2);
        assert_eq!(s.smtp.listen.port(), 2525);
        assert!(s.database.url.starts_with("sqlite://"));
    }

    #[test]
    fn unknown_key_is_an_error_that_names_it() {
        let err = Settings::from_figment(
            Figment::from(Toml::string(DEFAULT_TOML))
                .merge(Toml::string("[smtp]\nlisten_port = 25\n")),
        )
        .expect_err("unknown key must fail");
        assert!(err.to_string().contains("listen_port"), "{err}");
    }

    #[test]
    fn alias_pointing_at_a_missing_pipeline_is_rejected() {
        let mut s = Settings::defaults().expect("defaults");
        s.aliases[0].pipeline = "Nope".into();
        let err = s.validate().expect_err("must fail");
        assert!(err.to_string().contains("Nope"), "{err}");
    }

    #[test]
    fn reopen_rule_from_an_open_stage_is_rejected() {
        let mut s = Settings::defaults().expect("defaults");
        s.aliases[1].reopen[0].from = "Open".into();
        assert!(s.validate().is_err());
    }
}

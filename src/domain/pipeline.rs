//! Pipelines, their stages and the aliases that feed them, as a person
//! writes them (config file, admin API), and the rules over them: a
//! pipeline needs an open stage, a reopen rule goes from a closed stage to
//! an open one, and which stage a reply reopens a record to.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::directory::{AliasEntry, PipelineEntry};

/// Whether a stage counts as work in progress or as finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    Open,
    Closed,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Open => "open",
            StageKind::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(StageKind::Open),
            "closed" => Some(StageKind::Closed),
            _ => None,
        }
    }
}

/// What an alias does with the result of sender authentication.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthPolicy {
    /// Not checked.
    Off,
    /// Checked and recorded; a DMARC failure never threads or reopens.
    #[default]
    Monitor,
    /// As monitor, and a DMARC failure is quarantined (`dmarc-fail`).
    Enforce,
}

impl AuthPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthPolicy::Off => "off",
            AuthPolicy::Monitor => "monitor",
            AuthPolicy::Enforce => "enforce",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(AuthPolicy::Off),
            "monitor" => Some(AuthPolicy::Monitor),
            "enforce" => Some(AuthPolicy::Enforce),
            _ => None,
        }
    }
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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
    /// Further addresses this alias answers for, e.g. the team's own
    /// `support@acme.example` that forwards to it or is polled over IMAP.
    #[serde(default)]
    pub also: Vec<String>,
    /// Sender authentication: `off`, `monitor` (default) or `enforce`.
    #[serde(default)]
    pub auth: AuthPolicy,
    /// How many days a closed record still takes replies: a reply to a
    /// record closed for longer starts a new record related to it instead of
    /// reopening it. Unset: a reply joins (and may reopen) at any age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up_days: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReopenRuleConfig {
    pub from: String,
    pub to: String,
}

impl AliasConfig {
    /// Checks the lengths of what a person typed: name, tags, further
    /// addresses and reopen rules.
    ///
    /// # Errors
    /// The first field over its limit, by name.
    pub fn check_lengths(&self) -> Result<(), String> {
        use crate::domain::limits;
        limits::check_chars("name", &self.name, limits::NAME_CHARS)?;
        limits::check_tags("tags", &self.tags)?;
        limits::check_items("also", &self.also, limits::LIST_ITEMS)?;
        limits::check_items("reopen", &self.reopen, limits::LIST_ITEMS)?;
        match self.follow_up_days {
            Some(0) => {
                Err("follow_up_days: must be at least 1 (leave it out for no window)".into())
            }
            _ => Ok(()),
        }
    }
}

fn yes() -> bool {
    true
}

impl PipelineConfig {
    /// A pipeline's own rules: a name and stages within their limits, no
    /// stage named twice, and at least one open stage (where new records
    /// start).
    ///
    /// # Errors
    /// The first rule broken, in words that name the pipeline.
    pub fn check(&self) -> Result<(), String> {
        use super::limits;
        let name = format!("pipeline {:?}", self.name);
        limits::check_chars(&name, &self.name, limits::NAME_CHARS)?;
        limits::check_items(&format!("{name}: stages"), &self.stages, limits::LIST_ITEMS)?;
        for s in &self.stages {
            limits::check_chars(&format!("{name}: stage"), &s.name, limits::NAME_CHARS)?;
        }
        if !self.stages.iter().any(|s| s.kind == StageKind::Open) {
            return Err(format!("{name} has no open stage"));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.stages {
            if !seen.insert(s.name.as_str()) {
                return Err(format!("{name}: stage {:?} twice", s.name));
            }
        }
        Ok(())
    }

    /// The kind of the stage called `name`, if there is one.
    pub fn kind_of(&self, name: &str) -> Option<StageKind> {
        self.stages.iter().find(|s| s.name == name).map(|s| s.kind)
    }
}

impl ReopenRuleConfig {
    /// A reopen rule goes from a closed stage to an open stage of the
    /// alias's pipeline.
    ///
    /// # Errors
    /// Says which rule and pipeline.
    pub fn check(&self, pipeline: &PipelineConfig) -> Result<(), String> {
        match (pipeline.kind_of(&self.from), pipeline.kind_of(&self.to)) {
            (Some(StageKind::Closed), Some(StageKind::Open)) => Ok(()),
            _ => Err(format!(
                "reopen rule {:?} -> {:?} must go from a closed stage to an open stage of pipeline {:?}",
                self.from, self.to, pipeline.name
            )),
        }
    }
}

/// The stage a reply moves its record to, if any: the record sits in a
/// closed stage, the alias reopens on reply and has a rule for that stage,
/// and the reply is a person's (not an automatic message).
pub fn reopen_target(
    pipeline: &PipelineEntry,
    alias: &AliasEntry,
    stage_id: Uuid,
    automatic: bool,
) -> Option<Uuid> {
    let closed = pipeline
        .stage(stage_id)
        .is_some_and(|s| s.kind == StageKind::Closed);
    alias
        .reopen
        .get(&stage_id)
        .copied()
        .filter(|_| closed && alias.reopen_on_reply && !automatic)
}

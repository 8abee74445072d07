//! The routing directory: pipelines, their stages, and the aliases that feed
//! them, as one immutable snapshot loaded from the store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use super::{AliasConfig, AuthPolicy, PipelineConfig};
use super::{EmailAddress, StageKind};

#[derive(Debug, Clone)]
pub struct StageEntry {
    pub id: Uuid,
    pub name: String,
    pub kind: StageKind,
    pub position: i32,
}

#[derive(Debug, Clone)]
pub struct PipelineEntry {
    pub id: Uuid,
    pub name: String,
    /// Ordered by position.
    pub stages: Vec<StageEntry>,
}

impl PipelineEntry {
    /// Where new records start: the first open stage.
    pub fn first_open_stage(&self) -> Option<&StageEntry> {
        self.stages.iter().find(|s| s.kind == StageKind::Open)
    }

    pub fn stage(&self, id: Uuid) -> Option<&StageEntry> {
        self.stages.iter().find(|s| s.id == id)
    }
}

#[derive(Debug, Clone)]
pub struct AliasEntry {
    pub id: Uuid,
    pub address: EmailAddress,
    pub name: String,
    pub pipeline_id: Uuid,
    pub owner_id: Option<Uuid>,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub reopen_on_reply: bool,
    /// closed stage id → open stage id
    pub reopen: HashMap<Uuid, Uuid>,
    /// Further addresses it answers for (forwarding team mailboxes).
    pub also: Vec<EmailAddress>,
    /// What sender authentication does for its mail.
    pub auth: AuthPolicy,
    /// See `AliasConfig::follow_up_days`.
    pub follow_up_days: Option<u32>,
}

/// Everything routing needs, without I/O.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub pipelines: HashMap<Uuid, PipelineEntry>,
    /// By address, and again by each address in `also`.
    pub aliases: HashMap<EmailAddress, AliasEntry>,
}

impl Directory {
    /// Adds an alias under its address and every `also` address (an
    /// alias's own address wins over another's `also`).
    pub fn insert_alias(&mut self, alias: AliasEntry) {
        for extra in &alias.also {
            self.aliases
                .entry(extra.clone())
                .or_insert_with(|| alias.clone());
        }
        self.aliases.insert(alias.address.clone(), alias);
    }

    /// The enabled alias that receives mail for `address`, ignoring a `+tag`,
    /// with the tag.
    pub fn alias_for<'a, 'b>(
        &'a self,
        address: &'b EmailAddress,
    ) -> Option<(&'a AliasEntry, Option<&'b str>)> {
        let (base, tag) = address.base_and_tag();
        if let Some(alias) = self.aliases.get(&base).filter(|a| a.enabled) {
            return Some((alias, tag));
        }
        // RFC 5321 §4.5.1: postmaster of every domain we receive for is accepted.
        if base.local().eq_ignore_ascii_case("postmaster") {
            return self.postmaster(Some(base.domain())).map(|a| (a, None));
        }
        None
    }

    /// The alias that receives mail for `postmaster@domain` when no alias has
    /// that address: of the enabled aliases on `domain` (any domain for
    /// `None`), the one whose address sorts first.
    pub fn postmaster(&self, domain: Option<&str>) -> Option<&AliasEntry> {
        self.aliases
            .iter()
            .filter(|(address, alias)| **address == alias.address && alias.enabled)
            .filter(|(address, _)| domain.is_none_or(|d| address.domain() == d))
            .map(|(_, alias)| alias)
            .min_by(|a, b| a.address.as_str().cmp(b.address.as_str()))
    }

    /// Whether mail to `address` is accepted at all (the RCPT check).
    pub fn accepts(&self, address: &str) -> bool {
        EmailAddress::parse(address).is_ok_and(|a| self.alias_for(&a).is_some())
    }

    pub fn pipeline(&self, id: Uuid) -> Option<&PipelineEntry> {
        self.pipelines.get(&id)
    }

    /// A directory built straight from (validated) configuration with fresh
    /// ids, without a database: for tools and benchmarks. Entries that do
    /// not resolve (unknown pipeline or stage) are left out.
    pub fn from_config(pipelines: &[PipelineConfig], aliases: &[AliasConfig]) -> Self {
        let mut directory = Directory::default();
        for p in pipelines {
            let id = Uuid::new_v4();
            let stages = p
                .stages
                .iter()
                .zip(0..)
                .map(|(s, position)| StageEntry {
                    id: Uuid::new_v4(),
                    name: s.name.clone(),
                    kind: s.kind,
                    position,
                })
                .collect();
            directory.pipelines.insert(
                id,
                PipelineEntry {
                    id,
                    name: p.name.clone(),
                    stages,
                },
            );
        }
        for a in aliases {
            let Ok(address) = EmailAddress::parse(&a.address) else {
                continue;
            };
            let Some(pipeline) = directory.pipelines.values().find(|p| p.name == a.pipeline) else {
                continue;
            };
            let stage = |name: &str| {
                pipeline
                    .stages
                    .iter()
                    .find(|s| s.name == name)
                    .map(|s| s.id)
            };
            let reopen = a
                .reopen
                .iter()
                .filter_map(|r| Some((stage(&r.from)?, stage(&r.to)?)))
                .collect();
            let entry = AliasEntry {
                id: Uuid::new_v4(),
                address,
                name: a.name.clone(),
                pipeline_id: pipeline.id,
                owner_id: None,
                auth: a.auth,
                tags: a.tags.clone(),
                enabled: a.enabled,
                reopen_on_reply: a.reopen_on_reply,
                reopen,
                follow_up_days: a.follow_up_days,
                also: a
                    .also
                    .iter()
                    .filter_map(|x| EmailAddress::parse(x).ok())
                    .collect(),
            };
            directory.insert_alias(entry);
        }
        directory
    }
}

/// A value the running service shares and swaps whole: SMTP, processing
/// and the API read the current snapshot; an admin change replaces it for
/// all of them at once.
#[derive(Debug, Default)]
pub struct Snapshot<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Snapshot<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Snapshot<T> {
    pub fn new(value: T) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The current snapshot (cheap: an `Arc` clone).
    pub fn current(&self) -> Arc<T> {
        // A writer only ever swaps the Arc, so a poisoned lock still holds a whole value.
        match self.0.read() {
            Ok(d) => Arc::clone(&d),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn replace(&self, value: T) {
        let fresh = Arc::new(value);
        match self.0.write() {
            Ok(mut d) => *d = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }
}

/// The directory the running service routes with.
pub type DirectoryHandle = Snapshot<Directory>;

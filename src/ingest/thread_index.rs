//! The thread index of a batch: Message-IDs already known per pipeline,
//! prefetched for the batch and noted as records are written, so each
//! message's lookups cost no round trip when the batch already asked.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::classify::Class;
use super::thread::ThreadKey;
use crate::store::{RecordState, StoreError, Tx};

/// The keys a message may thread by: a bounce only by the message it returns.
pub(super) fn lookup_keys<'k>(class: &Class, keys: &'k [ThreadKey]) -> Cow<'k, [ThreadKey]> {
    match class {
        Class::Bounce(b) => Cow::Owned(
            b.original_message_id
                .iter()
                .map(|id| ThreadKey::InReplyTo(id.clone()))
                .collect(),
        ),
        _ => Cow::Borrowed(keys),
    }
}

/// The Message-IDs to look up in the thread index: the message's own (is it
/// a duplicate?) and every one it refers to.
pub(super) fn index_ids<'m>(
    message_id: &'m str,
    keys: &'m [ThreadKey],
) -> impl Iterator<Item = &'m str> {
    std::iter::once(message_id).chain(keys.iter().filter_map(|k| match k {
        ThreadKey::InReplyTo(id) | ThreadKey::References(id) => Some(id.as_str()),
        _ => None,
    }))
}

/// Where `apply` looks Message-IDs up: the database, or what a batch read in
/// one query beforehand, kept current as the batch adds messages and moves
/// records (the same transaction holds the only writer, so nothing else
/// changes it meanwhile).
pub(super) enum ThreadIndex {
    Database,
    Prefetched {
        /// Pipeline → Message-ID → record.
        ids: HashMap<Uuid, HashMap<String, Uuid>>,
        records: HashMap<Uuid, RecordState>,
        /// Record → its participants (lower case), for every record above.
        participants: HashMap<Uuid, HashSet<String>>,
    },
}

/// Most Message-IDs bound in one lookup statement.
const LOOKUP_CHUNK: usize = 500;

impl ThreadIndex {
    pub(super) async fn prefetch(
        tx: &mut dyn Tx,
        wanted: HashMap<Uuid, Vec<&str>>,
    ) -> Result<Self, StoreError> {
        let mut ids: HashMap<Uuid, HashMap<String, Uuid>> = HashMap::new();
        let mut records = HashMap::new();
        for (pipeline, mut message_ids) in wanted {
            message_ids.sort_unstable();
            message_ids.dedup();
            let known = ids.entry(pipeline).or_default();
            for chunk in message_ids.chunks(LOOKUP_CHUNK) {
                for (message_id, record) in tx.lookup_message_ids(pipeline, chunk).await? {
                    known.insert(message_id, record.id);
                    records.insert(record.id, record);
                }
            }
        }
        // Whoever is on those records, for the trust check of replies to them.
        let mut participants: HashMap<Uuid, HashSet<String>> =
            records.keys().map(|id| (*id, HashSet::new())).collect();
        let wanted: Vec<Uuid> = records.keys().copied().collect();
        for (record, address) in tx.participants(&wanted).await? {
            participants.entry(record).or_default().insert(address);
        }
        Ok(Self::Prefetched {
            ids,
            records,
            participants,
        })
    }

    /// Whether `address` (any letter case) is on `record` (see [`Tx::participants`]).
    pub(super) async fn is_participant(
        &self,
        tx: &mut dyn Tx,
        record: Uuid,
        address: &str,
    ) -> Result<bool, StoreError> {
        let address = address.to_ascii_lowercase();
        if let Self::Prefetched { participants, .. } = self
            && let Some(known) = participants.get(&record)
        {
            return Ok(known.contains(&address));
        }
        Ok(tx
            .participants(&[record])
            .await?
            .iter()
            .any(|(_, a)| *a == address))
    }

    pub(super) async fn lookup(
        &self,
        tx: &mut dyn Tx,
        pipeline: Uuid,
        message_ids: &[&str],
    ) -> Result<HashMap<String, RecordState>, StoreError> {
        match self {
            Self::Database => Ok(tx
                .lookup_message_ids(pipeline, message_ids)
                .await?
                .into_iter()
                .collect()),
            Self::Prefetched { ids, records, .. } => {
                let Some(known) = ids.get(&pipeline) else {
                    return Ok(HashMap::new());
                };
                Ok(message_ids
                    .iter()
                    .filter_map(|m| {
                        let record = records.get(known.get(*m)?)?;
                        Some(((*m).to_string(), record.clone()))
                    })
                    .collect())
            }
        }
    }

    /// `message_id` now belongs to `record` (whose stage is current) in `pipeline`.
    /// `people` (its contact, its From, To and Cc) are now on it.
    pub(super) fn note<'p>(
        &mut self,
        pipeline: Uuid,
        message_id: &str,
        record: &RecordState,
        people: impl IntoIterator<Item = &'p str>,
    ) {
        if let Self::Prefetched {
            ids,
            records,
            participants,
        } = self
        {
            let known = ids.entry(pipeline).or_default();
            if !known.contains_key(message_id) {
                known.insert(message_id.to_string(), record.id);
            }
            records.insert(record.id, record.clone());
            participants
                .entry(record.id)
                .or_default()
                .extend(people.into_iter().map(str::to_ascii_lowercase));
        }
    }
}

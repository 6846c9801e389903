//! `kafka-in`: a Kafka consumer-group member as a source.
//!
//! The consumer is a librdkafka `BaseConsumer` polled from `pull` (never
//! blocking the worker). The source keeps each partition's position
//! itself, without a lock. What it owns and committed lives in a [`Book`]
//! shared with the rebalance callback (which runs inside `poll`, on the
//! source's worker) and with the commit listener (which runs on the
//! checkpoint coordinator's thread, also after the source has finished);
//! a revocation raises a flag the source looks at after each `poll`.

mod group;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use indexmap::IndexMap;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use serde::Deserialize;

use crate::checkpoint::StateWriter;
use crate::operators::params::params;
use crate::operators::util::write_json_str;
use crate::stage::{Commits, Pull, Reason, SlotWriter, Source, StageError, StageInfo};

use group::{decode, lock, settle_revoked, Context, Shared};

/// Reads the topics as a member of a consumer group; see the module docs.
pub struct KafkaIn {
    params: KafkaInParams,
    shared: Arc<Shared>,
    /// Per topic and partition: the next offset to read (one past the last
    /// element sent).
    positions: HashMap<String, HashMap<i32, i64>>,
    /// Set by the rebalance callback when partitions were revoked.
    revoked: Arc<AtomicBool>,
    /// Elements sent but not committed when their partition was revoked:
    /// the partition's next owner reads them again.
    reread_after_rebalance: u64,
    emitted: u64,
    /// Metadata prefix being built (reused).
    scratch: Vec<u8>,
    /// Values that were not a JSON object, sent without metadata.
    no_metadata: u64,
    /// Consumer errors seen (logged at most every few seconds).
    errors: u64,
    last_error_log_ns: u64,
}

params! {
    /// `kafka-in`'s parameters.
    #[derive(Clone, Debug)]
    pub struct KafkaInParams {
        /// bootstrap brokers, "host:port[,host:port]"
        pub brokers: String,
        /// topics to subscribe to
        pub topics: Vec<String>,
        /// consumer group: processes with the same group share the partitions
        pub group_id: String,
        /// where a partition without a committed offset starts: "earliest"
        /// (default) or "latest"
        #[serde(default)]
        pub start: Start,
        /// the group's session timeout: how soon a dead member's partitions move
        /// (default 10000)
        #[serde(default = "default_session_timeout")]
        pub session_timeout_ms: u64,
        /// without checkpoints: how often offsets of finished elements are
        /// committed (default 1000); with checkpoints, at each checkpoint
        #[serde(default = "default_commit_interval")]
        pub commit_interval_ms: u64,
        /// add _topic, _partition, _offset, _key and _timestamp (ms) fields to
        /// JSON-object values (default false); event_time can read _timestamp
        #[serde(default)]
        pub metadata: bool,
        /// finish after this many elements
        pub max_elements: Option<u64>,
        /// table of extra librdkafka consumer properties
        #[serde(default)]
        pub librdkafka_options: IndexMap<String, String>,
    }
}

/// `start`: where a partition without a committed offset is read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// Its oldest message (nothing already in the topic is skipped).
    #[default]
    Earliest,
    /// Only messages produced from now on.
    Latest,
}

fn default_session_timeout() -> u64 {
    10_000
}

fn default_commit_interval() -> u64 {
    1_000
}

pub(crate) fn build(p: KafkaInParams) -> Result<KafkaIn, String> {
    KafkaIn::new(p)
}

impl KafkaIn {
    /// A source with these parameters (nothing connects before `init`).
    pub fn new(params: KafkaInParams) -> Result<KafkaIn, String> {
        if params.brokers.trim().is_empty() {
            return Err("'brokers' is empty".into());
        }
        if params.topics.is_empty() || params.topics.iter().any(|t| t.is_empty()) {
            return Err("'topics' must name at least one topic, none empty".into());
        }
        if params.group_id.is_empty() {
            return Err("'group_id' is empty".into());
        }
        if params.session_timeout_ms == 0 || params.commit_interval_ms == 0 {
            return Err("'session_timeout_ms' and 'commit_interval_ms' must be positive".into());
        }
        Ok(KafkaIn {
            params,
            shared: Arc::new(Shared {
                book: Arc::default(),
                consumer: OnceLock::new(),
                name: OnceLock::new(),
            }),
            positions: HashMap::new(),
            revoked: Arc::default(),
            reread_after_rebalance: 0,
            emitted: 0,
            scratch: Vec::with_capacity(256),
            no_metadata: 0,
            errors: 0,
            last_error_log_ns: 0,
        })
    }

    fn client_config(&self) -> ClientConfig {
        let p = &self.params;
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &p.brokers)
            .set("group.id", &p.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", p.session_timeout_ms.to_string())
            .set(
                "auto.offset.reset",
                match p.start {
                    Start::Earliest => "earliest",
                    Start::Latest => "latest",
                },
            );
        crate::operators::kafka::apply_options(&mut c, &p.librdkafka_options);
        c
    }

    fn note_error(&mut self, e: &KafkaError) {
        self.errors += 1;
        let now = crate::clock::now_ns();
        if self.errors == 1 || now.saturating_sub(self.last_error_log_ns) > 10_000_000_000 {
            self.last_error_log_ns = now;
            log::warn!(
                "stage '{}': consumer error ({} so far): {e}",
                self.shared.name.get().map_or("kafka-in", String::as_str),
                self.errors
            );
        }
    }
}

impl Source for KafkaIn {
    fn init(&mut self, info: &StageInfo) -> Result<(), StageError> {
        let _ = self.shared.name.set(info.name.clone());
        let context = Context {
            book: Arc::clone(&self.shared.book),
            revoked: Arc::clone(&self.revoked),
            name: info.name.clone(),
        };
        let consumer: BaseConsumer<Context> = self
            .client_config()
            .create_with_context(context)
            .map_err(|e| StageError::Fatal(format!("cannot create the Kafka consumer: {e}")))?;
        let topics: Vec<&str> = self.params.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|e| {
            StageError::Fatal(format!("cannot subscribe to {}: {e}", topics.join(", ")))
        })?;
        if self.shared.consumer.set(consumer).is_err() {
            return Err(StageError::Fatal("kafka-in initialised twice".into()));
        }
        Ok(())
    }

    fn pull(&mut self, slot: &mut SlotWriter<'_>) -> Result<Pull, StageError> {
        if self.params.max_elements.is_some_and(|m| self.emitted >= m) {
            return Ok(Pull::Done);
        }
        let Some(consumer) = self.shared.consumer.get() else {
            return Err(StageError::Fatal("kafka-in pulled before init".into()));
        };
        let polled = consumer.poll(Duration::ZERO);
        // A rebalance inside `poll` may have revoked partitions (rare: one
        // atomic load per call otherwise).
        if self.revoked.load(Ordering::Relaxed) && self.revoked.swap(false, Ordering::Acquire) {
            settle_revoked(
                &mut self.positions,
                &self.shared.book,
                &mut self.reread_after_rebalance,
            );
        }
        let m = match polled {
            None => return Ok(Pull::Pending),
            Some(Err(e)) => {
                self.note_error(&e);
                return Ok(Pull::Pending);
            }
            Some(Ok(m)) => m,
        };
        // The offset counts as read whatever becomes of the element (a
        // value too large for a slot is rejected, counted with its reason).
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        match self
            .positions
            .get_mut(topic)
            .and_then(|t| t.get_mut(&partition))
        {
            Some(next) => *next = offset + 1,
            None => {
                // The first element of a newly assigned partition: it
                // starts at the group's committed offset (or the
                // checkpoint's, or `start`), so that much is done.
                self.positions
                    .entry(topic.to_string())
                    .or_default()
                    .insert(partition, offset + 1);
                lock(&self.shared.book)
                    .committed
                    .entry((topic.to_string(), partition))
                    .or_insert(offset);
            }
        }
        self.emitted += 1;
        let written = write_value(
            self.params.metadata,
            &mut self.scratch,
            &mut self.no_metadata,
            &m,
            slot,
        );
        match written {
            Ok(()) => Ok(Pull::Ready),
            Err(StageError::Rejected(r)) => Err(StageError::Rejected(Reason::new(
                r.kind,
                format!(
                    "{} (topic {topic}, partition {partition}, offset {offset})",
                    r.detail
                ),
            ))),
            Err(e) => Err(e),
        }
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        if self.revoked.swap(false, Ordering::Acquire) {
            settle_revoked(
                &mut self.positions,
                &self.shared.book,
                &mut self.reread_after_rebalance,
            );
        }
        let book = lock(&self.shared.book);
        let mut entries: Vec<(&str, i32, i64)> = Vec::new();
        for (topic, parts) in &self.positions {
            for (&partition, &offset) in parts {
                entries.push((topic, partition, offset));
            }
        }
        // Partitions restored but not assigned yet keep their offsets.
        for ((topic, partition), &offset) in &book.restored {
            entries.push((topic, *partition, offset));
        }
        entries.sort_unstable();
        let mut w = StateWriter::new();
        w.u64(entries.len() as u64);
        for (topic, partition, offset) in entries {
            w.bytes(topic.as_bytes())
                .u64(partition as u64)
                .u64(offset as u64);
        }
        Ok(w.finish())
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), StageError> {
        let offsets = decode(state)?;
        lock(&self.shared.book).restored = offsets.into_iter().collect();
        Ok(())
    }

    fn commits(&mut self) -> Option<Commits> {
        let shared = Arc::clone(&self.shared);
        Some(Commits {
            interval_ms: self.params.commit_interval_ms,
            on_complete: Box::new(move |id, state| shared.commit(id, state)),
        })
    }

    fn counts(&self) -> Vec<(&'static str, u64)> {
        let book = lock(&self.shared.book);
        let mut c = vec![
            ("partitions assigned", book.assigned_total),
            ("partitions revoked", book.revoked_total),
            ("offset commits", book.commits),
        ];
        if self.reread_after_rebalance > 0 {
            c.push((
                "may be read again after a rebalance",
                self.reread_after_rebalance,
            ));
        }
        if book.commit_errors > 0 {
            c.push(("offset commits failed", book.commit_errors));
        }
        if self.errors > 0 {
            c.push(("consumer errors", self.errors));
        }
        if self.no_metadata > 0 {
            c.push((
                "sent without metadata (not a JSON object)",
                self.no_metadata,
            ));
        }
        c
    }
}

/// Writes the value, with the metadata fields in front when asked for
/// and the value is a JSON object: one copy into the slot.
fn write_value(
    metadata: bool,
    scratch: &mut Vec<u8>,
    no_metadata: &mut u64,
    m: &rdkafka::message::BorrowedMessage<'_>,
    slot: &mut SlotWriter<'_>,
) -> Result<(), StageError> {
    let value = m.payload().unwrap_or_default();
    if !metadata {
        return slot.write(value).map_err(StageError::from);
    }
    let start = value
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(value.len());
    if value.get(start) != Some(&b'{') {
        *no_metadata += 1;
        return slot.write(value).map_err(StageError::from);
    }
    let rest = &value[start + 1..];
    let s = scratch;
    s.clear();
    s.extend_from_slice(b"{\"_topic\":");
    write_json_str(s, m.topic());
    s.extend_from_slice(b",\"_partition\":");
    s.extend_from_slice(itoa::Buffer::new().format(m.partition()).as_bytes());
    s.extend_from_slice(b",\"_offset\":");
    s.extend_from_slice(itoa::Buffer::new().format(m.offset()).as_bytes());
    s.extend_from_slice(b",\"_key\":");
    match m.key() {
        Some(k) => write_json_str(s, &String::from_utf8_lossy(k)),
        None => s.extend_from_slice(b"null"),
    }
    s.extend_from_slice(b",\"_timestamp\":");
    match m.timestamp().to_millis() {
        Some(ms) => s.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes()),
        None => s.extend_from_slice(b"null"),
    }
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    if !empty {
        s.push(b',');
    }
    let len = s.len() + rest.len();
    slot.set_len(len)?;
    let buf = slot.buffer();
    buf[..s.len()].copy_from_slice(s);
    buf[s.len()..len].copy_from_slice(rest);
    Ok(())
}

#[cfg(test)]
mod tests;

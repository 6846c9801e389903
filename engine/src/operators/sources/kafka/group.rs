//! `kafka-in`'s part in its consumer group: the [`Book`] of what it owns
//! and committed, the rebalance callback that keeps it ([`Context`]), the
//! commit of a completed snapshot's offsets ([`Shared::commit`]), and the
//! settling of revoked partitions.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::checkpoint::StateReader;
use crate::stage::StageError;

/// A partition: topic and partition number.
pub(super) type Partition = (String, i32);

/// What the consumer owns and committed. Shared by the source, its
/// rebalance callback and its commit listener; the source itself locks it
/// only for what is rare (a partition's first element, a revocation, a
/// snapshot), never per element.
#[derive(Default)]
pub(super) struct Book {
    /// Partitions this member owns now.
    pub(super) assigned: HashSet<Partition>,
    /// Partitions revoked since the source last looked (it forgets their
    /// positions and counts what will be read again).
    pub(super) revoked: Vec<Partition>,
    /// The last offset committed per partition.
    pub(super) committed: HashMap<Partition, i64>,
    /// Offsets of the checkpoint this run resumed from, applied when their
    /// partition is assigned.
    pub(super) restored: HashMap<Partition, i64>,
    /// Partitions assigned and revoked over the run.
    pub(super) assigned_total: u64,
    pub(super) revoked_total: u64,
    pub(super) commits: u64,
    pub(super) commit_errors: u64,
}

pub(super) fn lock(book: &Mutex<Book>) -> MutexGuard<'_, Book> {
    // A panic elsewhere never leaves the book half-updated in a way that
    // matters more than losing the counts: go on with it.
    book.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The consumer's context: rebalances update the book, and offsets of a
/// resumed checkpoint are applied to the partitions as they are assigned.
pub(super) struct Context {
    pub(super) book: Arc<Mutex<Book>>,
    /// Set when partitions were revoked (the source then settles them).
    pub(super) revoked: Arc<AtomicBool>,
    pub(super) name: String,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut book = lock(&self.book);
                let parts: Vec<Partition> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                for p in parts {
                    if let Some(o) = book.restored.remove(&p) {
                        // Resume where the checkpoint left it, whatever the
                        // group committed after it.
                        let _ = tpl.set_partition_offset(&p.0, p.1, Offset::Offset(o));
                    }
                    book.assigned_total += 1;
                    book.assigned.insert(p);
                }
                log::info!(
                    "stage '{}': assigned {} partition(s), now owns {}",
                    self.name,
                    tpl.count(),
                    book.assigned.len()
                );
                drop(book);
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let mut book = lock(&self.book);
                for e in tpl.elements() {
                    let p = (e.topic().to_string(), e.partition());
                    book.assigned.remove(&p);
                    book.revoked.push(p);
                    book.revoked_total += 1;
                }
                self.revoked.store(true, Ordering::Release);
                log::info!(
                    "stage '{}': {} partition(s) revoked, now owns {}",
                    self.name,
                    tpl.count(),
                    book.assigned.len()
                );
                drop(book);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                log::error!("stage '{}': rebalance failed: {other:?}", self.name);
                if cooperative {
                    Ok(())
                } else {
                    consumer.unassign()
                }
            }
        };
        if let Err(e) = result {
            log::error!("stage '{}': applying a rebalance: {e}", self.name);
        }
    }
}

/// What the source, its callback and its listener share.
pub(super) struct Shared {
    pub(super) book: Arc<Mutex<Book>>,
    /// Created in `init` (a dry build never connects).
    pub(super) consumer: OnceLock<BaseConsumer<Context>>,
    pub(super) name: OnceLock<String>,
}

impl Shared {
    /// Commits the offsets of a completed snapshot, for the partitions this
    /// member still owns (a revoked one belongs to its next owner now).
    /// The book stays locked across the commit so that a revocation waits
    /// for it.
    pub(super) fn commit(&self, id: u64, state: &[u8]) {
        let Some(consumer) = self.consumer.get() else {
            return;
        };
        let offsets = match decode(state) {
            Ok(o) => o,
            Err(e) => {
                log::error!("checkpoint {id}: unreadable kafka-in state: {e}");
                return;
            }
        };
        let mut book = lock(&self.book);
        let mut tpl = TopicPartitionList::new();
        let mut news = Vec::new();
        for ((topic, partition), offset) in offsets {
            let p = (topic, partition);
            if !book.assigned.contains(&p) || book.committed.get(&p) >= Some(&offset) {
                continue;
            }
            if tpl
                .add_partition_offset(&p.0, p.1, Offset::Offset(offset))
                .is_ok()
            {
                news.push((p, offset));
            }
        }
        if news.is_empty() {
            return;
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                book.commits += 1;
                for (p, o) in news {
                    book.committed.insert(p, o);
                }
            }
            Err(e) => {
                // The next completed snapshot commits newer offsets; until
                // then a crash reads a little more again.
                book.commit_errors += 1;
                log::warn!(
                    "stage '{}': committing offsets of checkpoint {id}: {e}",
                    self.name.get().map_or("kafka-in", String::as_str)
                );
            }
        }
    }
}

/// Forgets the positions of partitions revoked since the last look, and
/// counts what was sent after their last commit (their next owner reads it
/// again).
pub(super) fn settle_revoked(
    positions: &mut HashMap<String, HashMap<i32, i64>>,
    book: &Mutex<Book>,
    reread: &mut u64,
) {
    let mut book = lock(book);
    for p in std::mem::take(&mut book.revoked) {
        let position = positions.get_mut(&p.0).and_then(|m| m.remove(&p.1));
        if let (Some(position), Some(done)) = (position, book.committed.remove(&p)) {
            *reread += position.saturating_sub(done).max(0) as u64;
        }
    }
}

/// Reads the offsets a snapshot holds.
pub(super) fn decode(state: &[u8]) -> Result<Vec<(Partition, i64)>, StageError> {
    let mut r = StateReader::new(state);
    if r.is_empty() {
        return Ok(Vec::new());
    }
    let n = r.u64()?;
    let mut out = Vec::with_capacity(n.min(1 << 16) as usize);
    for _ in 0..n {
        let topic = std::str::from_utf8(r.bytes()?)
            .map_err(|_| StageError::Fatal("a topic name in the checkpoint is not UTF-8".into()))?
            .to_string();
        let partition = r.u64()? as i32;
        let offset = r.u64()? as i64;
        out.push(((topic, partition), offset));
    }
    r.done()?;
    Ok(out)
}

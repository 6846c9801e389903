//! `kafka-in` and `kafka-out`: Kafka topics in front of and behind a
//! pipeline, on librdkafka (the `rdkafka` crate builds it from source).
//!
//! Scaling out is Kafka's: the same binary and config on several machines
//! join one consumer group (cooperative-sticky assignment), and the broker
//! spreads the topic's partitions over them and moves them when a member
//! leaves or dies. No clustering of our own.
//!
//! **Delivery.** `kafka-in` commits a partition's offset only once every
//! sink has finished with the elements before it: it asks the pipeline to
//! tell it which of its snapshots completed ([`crate::stage::Commits`]).
//! With `[engine] checkpoint`, that is at each checkpoint, and the offsets
//! are also in the checkpoint: a restarted run resumes from them, and into
//! `file-out` (which truncates to its checkpointed length) the result is
//! exactly-once. Without checkpoints the pipeline runs barriers every
//! `commit_interval_ms` for this alone: at-least-once. Either way, after a
//! crash or a rebalance the elements sent since the last commit are read
//! again (by this member or the partition's next owner); at a revocation
//! they are counted as `may be read again after a rebalance`.
//!
//! **Copies.** Reading a message copies its value once, from librdkafka's
//! buffer into an arena slot; from there on it moves as a handle, like
//! every element. `kafka-out` hands the payload to librdkafka, which copies
//! it into its own queue (its delivery happens after the slot is gone).

//!
//! The source is `sources/kafka.rs`, the sink `sinks/kafka.rs`; this module
//! holds what they share and names both for library users.

pub use crate::operators::sinks::kafka::{KafkaOut, KafkaOutParams};
pub use crate::operators::sources::kafka::{KafkaIn, KafkaInParams, Start};

use rdkafka::config::ClientConfig;

/// Extra librdkafka properties from a config's `librdkafka_options`, set
/// after ours (so they win), as Vector's `librdkafka_options` does.
pub(crate) fn apply_options(
    config: &mut ClientConfig,
    options: &indexmap::IndexMap<String, String>,
) {
    for (k, v) in options {
        config.set(k, v);
    }
}

//! `kafka-out`: a librdkafka producer as a sink.
//!
//! `push` hands each payload to librdkafka (which copies it into its
//! queue); delivery reports come back on `poll`, called after each batch.
//! A full local queue is backpressure: `push` polls until there is room.
//! At a checkpoint barrier (and at the end) the producer is flushed, and a
//! delivery that failed since the last one fails the stage, so that the
//! offsets of elements that never reached Kafka are never committed.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use indexmap::IndexMap;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use crate::operators::json::find_field;
use crate::operators::params::params;
use crate::stage::{Element, Reason, Sink, StageError, StageInfo};

/// How long `init` waits for the topic's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts delivery reports.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self
                    .first_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

params! {
    /// `kafka-out`'s parameters.
    #[derive(Clone, Debug)]
    pub struct KafkaOutParams {
        /// bootstrap brokers, "host:port[,host:port]"
        pub brokers: String,
        /// topic to write to
        pub topic: String,
        /// top-level JSON field whose value is the message key (default: no key)
        pub key_field: Option<String>,
        /// "none" (default), "gzip", "snappy", "lz4" or "zstd"
        #[serde(default = "default_compression")]
        pub compression: String,
        /// "all" (default), "1" or "0"
        #[serde(default = "default_acks")]
        pub acks: String,
        /// idempotent producer: retries never duplicate (default true; needs acks =
        /// "all")
        #[serde(default = "default_true")]
        pub idempotent: bool,
        /// how long to wait to fill a batch (default 5)
        #[serde(default = "default_linger")]
        pub linger_ms: u64,
        /// longest wait for acknowledgements at a checkpoint or the end (default
        /// 30000)
        #[serde(default = "default_flush_timeout")]
        pub flush_timeout_ms: u64,
        /// table of extra librdkafka producer properties
        #[serde(default)]
        pub librdkafka_options: IndexMap<String, String>,
    }
}

fn default_compression() -> String {
    "none".into()
}
fn default_acks() -> String {
    "all".into()
}
fn default_true() -> bool {
    true
}
fn default_linger() -> u64 {
    5
}
fn default_flush_timeout() -> u64 {
    30_000
}

/// Writes each element as one message; see the module docs.
pub struct KafkaOut {
    params: KafkaOutParams,
    producer: Option<BaseProducer<Deliveries>>,
    /// Delivery failures already reported by a checkpoint.
    failed_seen: u64,
    name: String,
}

pub(crate) fn build(p: KafkaOutParams) -> Result<KafkaOut, String> {
    KafkaOut::new(p)
}

impl KafkaOut {
    /// A sink with these parameters (nothing connects before `init`).
    pub fn new(params: KafkaOutParams) -> Result<KafkaOut, String> {
        if params.brokers.trim().is_empty() {
            return Err("'brokers' is empty".into());
        }
        if params.topic.is_empty() {
            return Err("'topic' is empty".into());
        }
        const COMPRESSION: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
        if !COMPRESSION.contains(&params.compression.as_str()) {
            return Err(format!(
                "'compression' must be one of {}, not \"{}\"",
                COMPRESSION.join(", "),
                params.compression
            ));
        }
        if !["all", "1", "0"].contains(&params.acks.as_str()) {
            return Err(format!(
                "'acks' must be \"all\", \"1\" or \"0\", not \"{}\"",
                params.acks
            ));
        }
        if params.idempotent && params.acks != "all" {
            return Err(
                "the idempotent producer needs acks = \"all\" (or set idempotent = false)".into(),
            );
        }
        Ok(KafkaOut {
            params,
            producer: None,
            failed_seen: 0,
            name: String::new(),
        })
    }

    fn deliveries(&self) -> Option<&Deliveries> {
        self.producer.as_ref().map(|p| p.context().as_ref())
    }

    /// Flushes, then fails if a delivery failed since the last check.
    fn flush(&mut self, what: &str) -> Result<(), StageError> {
        let Some(producer) = &self.producer else {
            return Ok(());
        };
        let timeout = Duration::from_millis(self.params.flush_timeout_ms);
        if let Err(e) = producer.flush(timeout) {
            return Err(StageError::Fatal(format!(
                "{what}: {} message(s) not acknowledged by Kafka within {} ms: {e}",
                producer.in_flight_count(),
                self.params.flush_timeout_ms
            )));
        }
        let d = producer.context();
        let failed = d.failed.load(Ordering::Relaxed);
        if failed > self.failed_seen {
            let first = d
                .first_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .unwrap_or_default();
            let new = failed - self.failed_seen;
            self.failed_seen = failed;
            return Err(StageError::Fatal(format!(
                "{what}: {new} message(s) could not be delivered to topic '{}' (first error: {first})",
                self.params.topic
            )));
        }
        Ok(())
    }
}

impl Sink for KafkaOut {
    fn init(&mut self, info: &StageInfo) -> Result<(), StageError> {
        self.name = info.name.clone();
        let p = &self.params;
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &p.brokers)
            .set("acks", &p.acks)
            .set("enable.idempotence", p.idempotent.to_string())
            .set("compression.type", &p.compression)
            .set("linger.ms", p.linger_ms.to_string());
        crate::operators::kafka::apply_options(&mut c, &p.librdkafka_options);
        let producer: BaseProducer<Deliveries> = c
            .create_with_context(Deliveries::default())
            .map_err(|e| StageError::Fatal(format!("cannot create the Kafka producer: {e}")))?;
        // A topic the broker does not know (and does not create on first
        // use, as Kafka's auto.create.topics.enable would) is an error
        // now, not messages waiting out `message.timeout.ms`. A broker not
        // reachable yet is only a warning: librdkafka keeps trying.
        match producer
            .client()
            .fetch_metadata(Some(&p.topic), METADATA_TIMEOUT)
        {
            Ok(m) => {
                let unknown = m.topics().iter().any(|t| {
                    t.error() == Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                });
                if unknown {
                    return Err(StageError::Fatal(format!(
                        "topic '{}' does not exist on {} (create it first, e.g. scripts/kafka.sh topic {})",
                        p.topic, p.brokers, p.topic
                    )));
                }
            }
            Err(e) => log::warn!(
                "stage '{}': no metadata from {} yet ({e}); messages wait for the broker",
                self.name,
                p.brokers
            ),
        }
        self.producer = Some(producer);
        Ok(())
    }

    fn push(&mut self, element: &Element<'_>) -> Result<(), StageError> {
        let Some(producer) = &self.producer else {
            return Err(StageError::Fatal("kafka-out pushed to before init".into()));
        };
        let payload = element.payload();
        let key: Option<Cow<'_, str>> = match &self.params.key_field {
            None => None,
            Some(f) => find_field(payload, f)
                .map_err(|e| StageError::Rejected(Reason::new("invalid JSON", e.to_string())))?
                .field
                .map(|v| v.as_text()),
        };
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&self.params.topic).payload(payload);
        if let Some(k) = &key {
            record = record.key(k.as_bytes());
        }
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Backpressure: wait for deliveries to make room. The
                    // queue drains by delivery or by `message.timeout.ms`.
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    return Err(StageError::Failed(Reason::new(
                        "kafka produce failed",
                        e.to_string(),
                    )))
                }
            }
        }
    }

    fn end_batch(&mut self) -> Result<(), StageError> {
        if let Some(p) = &self.producer {
            p.poll(Duration::ZERO);
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        // Everything before the barrier is in Kafka before the checkpoint
        // (and the source's offset commit) can complete.
        self.flush("checkpoint")?;
        Ok(Vec::new())
    }

    fn complete(&mut self) -> Result<(), StageError> {
        self.flush("end of stream")
    }

    fn counts(&self) -> Vec<(&'static str, u64)> {
        let Some(d) = self.deliveries() else {
            return Vec::new();
        };
        vec![
            ("delivered", d.delivered.load(Ordering::Relaxed)),
            ("delivery failed", d.failed.load(Ordering::Relaxed)),
        ]
    }

    fn undelivered(&self) -> u64 {
        let Some(p) = &self.producer else { return 0 };
        p.in_flight_count().max(0) as u64 + p.context().failed.load(Ordering::Relaxed)
    }

    fn teardown(&mut self) {
        if let Some(p) = self.producer.take() {
            let left = p.in_flight_count();
            if left > 0 {
                log::warn!(
                    "stage '{}': {left} message(s) still queued for Kafka at teardown",
                    self.name
                );
            }
        }
    }
}

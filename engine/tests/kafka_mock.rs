//! `kafka-in` and `kafka-out` against librdkafka's mock cluster (in
//! process, no broker): a round trip with keys and metadata, offsets
//! committed once the sink has the elements, a checkpointed run resuming
//! from the offsets in its checkpoint, delivery failures counted, and the
//! parameters' errors. The real broker and consumer groups of several
//! processes are tested end to end in `tests/tests/kafka.rs`.
#![cfg(feature = "kafka")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dataplane::topology::config::load_str;
use dataplane::{Registry, RunReport};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{Offset, TopicPartitionList};

fn run(text: &str) -> RunReport {
    load_str(text, "kafka.toml", &Registry::builtin(), None)
        .build()
        .unwrap_or_else(|e| panic!("invalid config: {e}"))
        .run()
}

fn temp(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dataplane-kafka-mock-{label}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn produce(brokers: &str, topic: &str, count: u64, extra: &str) -> RunReport {
    run(&format!(
        r#"
[engine]
pin = false

[flow.p.nodes.gen]
component = "generator"
count = {count}
template = "{{\"seq\":{{seq}},\"k\":\"k{{rand:7}}\"}}"

[flow.p.nodes.out]
component = "kafka-out"
brokers = "{brokers}"
topic = "{topic}"
key_field = "k"
{extra}

[[flow.p.edges]]
from = {{ node = "gen" }}
to = {{ node = "out" }}
"#
    ))
}

fn consume(brokers: &str, topic: &str, group: &str, max: u64, out: &Path, head: &str) -> RunReport {
    run(&format!(
        r#"
[engine]
pin = false
{head}

[flow.c.nodes.src]
component = "kafka-in"
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "{group}"
metadata = true
max_elements = {max}

[flow.c.nodes.out]
component = "file-out"
path = "{}"

[[flow.c.edges]]
from = {{ node = "src" }}
to = {{ node = "out" }}
"#,
        out.display()
    ))
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn count(report: &RunReport, stage: &str, name: &str) -> u64 {
    report
        .stages
        .iter()
        .find(|s| s.name.ends_with(stage))
        .and_then(|s| s.counts.iter().find(|(n, _)| *n == name))
        .map_or(0, |(_, c)| *c)
}

/// The group's committed offsets, summed over `partitions`.
fn committed(brokers: &str, topic: &str, group: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    got.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

#[test]
fn round_trip_with_keys_metadata_and_committed_offsets() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t", 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();

    let sent = produce(&brokers, "t", 1000, "");
    assert!(sent.is_success(), "{}", sent);
    assert_eq!(count(&sent, "out", "delivered"), 1000);
    assert_eq!(count(&sent, "out", "delivery failed"), 0);

    let dir = temp("round-trip");
    let out = dir.join("out.jsonl");
    let got = consume(&brokers, "t", "g1", 1000, &out, "");
    assert!(got.is_success(), "{}", got);
    let lines = lines(&out);
    assert_eq!(lines.len(), 1000);
    let seqs: BTreeSet<u64> = lines.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..1000).collect());
    for v in &lines {
        // The key is the element's `k`; metadata leads the object.
        assert_eq!(v["_key"], v["k"], "{v}");
        assert_eq!(v["_topic"], "t");
        assert!(v["_partition"].as_i64().unwrap() < 3);
        assert!(v["_timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    }
    // Every offset is committed once the sink had every element (the
    // pipeline's final checkpoint).
    assert_eq!(committed(&brokers, "t", "g1", 3), 1000);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_checkpointed_run_resumes_from_the_offsets_in_its_checkpoint() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("c", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    assert!(produce(&brokers, "c", 600, "").is_success());

    let dir = temp("checkpointed");
    let out = dir.join("out.jsonl");
    let head = format!(
        "checkpoint = {{ dir = \"{}\", interval_ms = 50 }}",
        dir.join("state").display()
    );
    let first = consume(&brokers, "c", "g-first", 400, &out, &head);
    assert!(first.is_success(), "{}", first);
    assert_eq!(lines(&out).len(), 400);
    // Another group id: its own committed offsets would start it at the
    // beginning. The checkpoint's offsets win: it reads the other 200.
    let second = consume(&brokers, "c", "g-second", 200, &out, &head);
    assert!(second.is_success(), "{}", second);
    let seqs: Vec<u64> = lines(&out)
        .iter()
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 600);
    assert_eq!(
        seqs.iter().copied().collect::<BTreeSet<_>>(),
        (0..600).collect(),
        "each element exactly once across the two runs"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn messages_the_broker_refuses_fail_and_are_counted() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("small", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    // librdkafka refuses a message over message.max.bytes before sending:
    // each element fails at `push`, counted (the run exits 74).
    let r = run(&format!(
        r#"
[engine]
pin = false

[flow.p.nodes.gen]
component = "generator"
count = 50
size = 2000

[flow.p.nodes.out]
component = "kafka-out"
brokers = "{brokers}"
topic = "small"
librdkafka_options = {{ "message.max.bytes" = "1000" }}

[[flow.p.edges]]
from = {{ node = "gen" }}
to = {{ node = "out" }}
"#
    ));
    let out = r.stages.iter().find(|s| s.name.ends_with("out")).unwrap();
    assert_eq!(out.failed, 50, "{}", r);
    assert!(r.to_string().contains("kafka produce failed"), "{}", r);
}

#[test]
fn bad_parameters_are_config_errors() {
    for (params, error) in [
        (
            "brokers = \"b:1\"\ntopic = \"t\"\nacks = \"2\"",
            "'acks' must be \"all\", \"1\" or \"0\", not \"2\"",
        ),
        (
            "brokers = \"b:1\"\ntopic = \"t\"\nacks = \"1\"",
            "the idempotent producer needs acks = \"all\"",
        ),
        (
            "brokers = \"b:1\"\ntopic = \"t\"\ncompression = \"brotli\"",
            "'compression' must be one of none, gzip, snappy, lz4, zstd",
        ),
        ("brokers = \"b:1\"", "missing field `topic`"),
        (
            "brokers = \"b:1\"\ntopic = \"t\"\nretries = 3",
            "unknown field `retries`",
        ),
    ] {
        let text = format!(
            "[flow.f.nodes.gen]\ncomponent = \"generator\"\n\n[flow.f.nodes.out]\ncomponent = \"kafka-out\"\n{params}\n\n[[flow.f.edges]]\nfrom = {{ node = \"gen\" }}\nto = {{ node = \"out\" }}\n"
        );
        let e = match load_str(&text, "bad.toml", &Registry::builtin(), None).build() {
            Ok(_) => panic!("accepted: {params}"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(error), "{params}: {e}");
        assert!(e.contains("bad.toml:"), "{e}");
    }
    for (params, error) in [
        (
            "brokers = \"b:1\"\ngroup_id = \"g\"\ntopics = []",
            "'topics' must name at least one topic",
        ),
        (
            "brokers = \"b:1\"\ntopics = [\"t\"]",
            "missing field `group_id`",
        ),
        (
            "brokers = \"b:1\"\ntopics = [\"t\"]\ngroup_id = \"g\"\nstart = \"middle\"",
            "unknown variant `middle`",
        ),
    ] {
        let text = format!(
            "[flow.f.nodes.src]\ncomponent = \"kafka-in\"\n{params}\n\n[flow.f.nodes.out]\ncomponent = \"discard\"\n\n[[flow.f.edges]]\nfrom = {{ node = \"src\" }}\nto = {{ node = \"out\" }}\n"
        );
        let e = match load_str(&text, "bad.toml", &Registry::builtin(), None).build() {
            Ok(_) => panic!("accepted: {params}"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(error), "{params}: {e}");
    }
}

//! `kafka`: what does the engine cost over the Kafka client alone?
//!
//! Against one broker (`scripts/kafka.sh up`), interleaved rep by rep, the
//! two orders alternating:
//!
//! * **consume**: `kafka-in -> sink` (a sink that notes the time of its
//!   first and last element) against a plain librdkafka `BaseConsumer`
//!   loop with the same settings, each reading the same `count` messages
//!   as a fresh consumer group. The rate runs from the first message to
//!   the last, so the group join (the same for both) is left out.
//! * **produce**: `generator -> kafka-out` against a plain `BaseProducer`
//!   loop sending the same payloads with the same settings (idempotent,
//!   acks = all, linger 5 ms), each up to its final flush.
//!
//! Each ratio (engine / client) is the median of per-rep ratios.
//!
//! ```sh
//! scripts/kafka.sh up
//! cargo run --release -p bench --bin kafka -- --count 500000 --reps 5
//! ```

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use dataplane::operators::kafka::{KafkaIn, KafkaInParams, Start};
use dataplane::topology::config::load_str;
use dataplane::{Element, PipelineBuilder, Registry, Settings, Sink, Stage, StageError};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

// The allocator the `dataplane` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "kafka",
    about = "kafka-in and kafka-out against the plain librdkafka client, same broker, same run"
)]
struct Args {
    /// Bootstrap brokers.
    #[arg(long, env = "DATAPLANE_KAFKA", default_value = "127.0.0.1:19092")]
    brokers: String,
    /// Messages per run.
    #[arg(long, value_name = "N", default_value_t = 500_000)]
    count: u64,
    /// Repetitions (each runs both ways, both directions).
    #[arg(long, value_name = "N", default_value_t = 5)]
    reps: usize,
    /// Partitions of the topics created.
    #[arg(long, value_name = "N", default_value_t = 4)]
    partitions: i32,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

/// The payload of message `seq`, as the generator template below makes it.
const TEMPLATE: &str =
    r#"{"seq":{seq},"host":"h{pick:1|2|3|4}","msg":"a log line of a typical size"}"#;

fn payload(seq: u64) -> String {
    format!(
        r#"{{"seq":{seq},"host":"h{}","msg":"a log line of a typical size"}}"#,
        seq % 4 + 1
    )
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| e.to_string())?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for r in block_on(admin.create_topics(&[new], &AdminOptions::new()))
        .map_err(|e| format!("{brokers}: {e} (is the broker up? scripts/kafka.sh up)"))?
    {
        r.map_err(|(t, e)| format!("creating {t}: {e}"))?;
    }
    Ok(())
}

fn producer_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "none")
        .set("linger.ms", "5");
    c
}

/// The plain client: send `count` payloads, flush. Messages per second.
fn plain_produce(brokers: &str, topic: &str, count: u64) -> Result<f64, String> {
    let started = Instant::now();
    let producer: BaseProducer = producer_config(brokers)
        .create()
        .map_err(|e| e.to_string())?;
    for seq in 0..count {
        let p = payload(seq);
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(p.as_bytes());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
        if seq % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| e.to_string())?;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// The engine: generator -> kafka-out. Messages per second.
fn engine_produce(brokers: &str, topic: &str, count: u64) -> Result<f64, String> {
    let text = format!(
        r#"
[engine]
pin = false

[flow.p.nodes.gen]
component = "generator"
count = {count}
template = '{TEMPLATE}'

[flow.p.nodes.out]
component = "kafka-out"
brokers = "{brokers}"
topic = "{topic}"

[[flow.p.edges]]
from = {{ node = "gen" }}
to = {{ node = "out" }}
"#
    );
    let started = Instant::now();
    let report = load_str(&text, "bench", &Registry::builtin(), None)
        .build()
        .map_err(|e| e.to_string())?
        .run();
    let elapsed = started.elapsed();
    if !report.is_success() || report.failed() > 0 {
        return Err(format!("the run failed:\n{report}"));
    }
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// The plain client: read `count` messages as a fresh group; messages per
/// second from the first to the last.
fn plain_consume(brokers: &str, topic: &str, group: &str, count: u64) -> Result<f64, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| e.to_string())?;
    consumer.subscribe(&[topic]).map_err(|e| e.to_string())?;
    let mut seen = 0u64;
    let mut bytes = 0usize;
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen < count {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                use rdkafka::message::Message;
                first.get_or_insert_with(Instant::now);
                // Touch the value, as a pipeline would.
                bytes += m.payload().map_or(0, <[u8]>::len);
                seen += 1;
            }
            Some(Err(e)) => return Err(format!("consumer: {e}")),
            None if Instant::now() > deadline => return Err("consume timed out".into()),
            None => {}
        }
    }
    std::hint::black_box(bytes);
    let span = first.map_or(Duration::ZERO, |t| t.elapsed());
    Ok((count - 1) as f64 / span.as_secs_f64().max(1e-9))
}

/// When the first and the last element arrived, and how many did.
type Times = (Option<Instant>, Option<Instant>, u64);

/// A sink that notes when its first and last element arrived.
struct Clock(Arc<Mutex<Times>>);

impl Sink for Clock {
    fn push(&mut self, element: &Element<'_>) -> Result<(), StageError> {
        std::hint::black_box(element.payload().len());
        let mut t = self.0.lock().expect("clock");
        let now = Instant::now();
        t.0.get_or_insert(now);
        t.1 = Some(now);
        t.2 += 1;
        Ok(())
    }
}

/// The engine: kafka-in -> clock sink, a fresh group; messages per second
/// from the first to the last.
fn engine_consume(brokers: &str, topic: &str, group: &str, count: u64) -> Result<f64, String> {
    let source = KafkaIn::new(KafkaInParams {
        brokers: brokers.into(),
        topics: vec![topic.into()],
        group_id: group.into(),
        start: Start::Earliest,
        session_timeout_ms: 10_000,
        commit_interval_ms: 1_000,
        metadata: false,
        max_elements: Some(count),
        librdkafka_options: Default::default(),
    })?;
    let times = Arc::new(Mutex::new((None, None, 0)));
    let mut b = PipelineBuilder::new();
    b.settings(Settings {
        pin: false,
        ..Settings::default()
    });
    b.add("src", "kafka-in", Stage::Source(Box::new(source)))
        .add(
            "out",
            "clock",
            Stage::Sink(Box::new(Clock(Arc::clone(&times)))),
        )
        .connect(("src", "output"), ("out", "input"));
    let report = b.build().map_err(|e| e.to_string())?.run();
    if !report.is_success() {
        return Err(format!("the run failed:\n{report}"));
    }
    let (first, last, n) = *times.lock().expect("clock");
    if n != count {
        return Err(format!("the sink got {n} of {count}"));
    }
    let span = match (first, last) {
        (Some(a), Some(b)) => b - a,
        _ => Duration::ZERO,
    };
    Ok((count - 1) as f64 / span.as_secs_f64().max(1e-9))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `a` then `b`, or `b` then `a`: (a's rate, b's rate).
fn pair(
    swap: bool,
    a: impl FnOnce() -> Result<f64, String>,
    b: impl FnOnce() -> Result<f64, String>,
) -> Result<(f64, f64), String> {
    if swap {
        let y = b()?;
        Ok((a()?, y))
    } else {
        let x = a()?;
        Ok((x, b()?))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args) -> Result<(), String> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let pid = std::process::id();
    // One topic to read (filled once by the plain producer), fresh topics
    // to write to.
    let input = format!("bench-in-{pid}-{stamp}");
    create_topic(&args.brokers, &input, args.partitions)?;
    plain_produce(&args.brokers, &input, args.count)?;
    let (mut c_plain, mut c_engine, mut c_ratio) = (Vec::new(), Vec::new(), Vec::new());
    let (mut p_plain, mut p_engine, mut p_ratio) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..args.reps {
        let swap = rep % 2 == 1;
        let g = |who: &str| format!("bench-{who}-{pid}-{stamp}-{rep}");
        let (plain, engine) = pair(
            swap,
            || plain_consume(&args.brokers, &input, &g("plain"), args.count),
            || engine_consume(&args.brokers, &input, &g("engine"), args.count),
        )?;
        println!(
            "rep {rep} consume: client {:.0} k/s, engine {:.0} k/s, ratio {:.3}",
            plain / 1e3,
            engine / 1e3,
            engine / plain
        );
        c_plain.push(plain);
        c_engine.push(engine);
        c_ratio.push(engine / plain);

        let (tp, te) = (g("out-plain"), g("out-engine"));
        create_topic(&args.brokers, &tp, args.partitions)?;
        create_topic(&args.brokers, &te, args.partitions)?;
        let (plain, engine) = pair(
            swap,
            || plain_produce(&args.brokers, &tp, args.count),
            || engine_produce(&args.brokers, &te, args.count),
        )?;
        println!(
            "rep {rep} produce: client {:.0} k/s, engine {:.0} k/s, ratio {:.3}",
            plain / 1e3,
            engine / 1e3,
            engine / plain
        );
        p_plain.push(plain);
        p_engine.push(engine);
        p_ratio.push(engine / plain);
    }
    let c_ratios = c_ratio.clone();
    let p_ratios = p_ratio.clone();
    let (cm, ce, cr) = (
        median(&mut c_plain),
        median(&mut c_engine),
        median(&mut c_ratio),
    );
    let (pm, pe, pr) = (
        median(&mut p_plain),
        median(&mut p_engine),
        median(&mut p_ratio),
    );
    println!(
        "median consume: client {:.0} k/s, engine {:.0} k/s, ratio engine/client {cr:.3}",
        cm / 1e3,
        ce / 1e3
    );
    println!(
        "median produce: client {:.0} k/s, engine {:.0} k/s, ratio engine/client {pr:.3}",
        pm / 1e3,
        pe / 1e3
    );
    println!(
        "({} reps, {} messages each, {} partitions)",
        args.reps, args.count, args.partitions
    );
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "count": args.count,
            "reps": args.reps,
            "partitions": args.partitions,
            "consume": { "client_mps_median": cm, "engine_mps_median": ce, "ratio_median": cr, "ratios": c_ratios },
            "produce": { "client_mps_median": pm, "engine_mps_median": pe, "ratio_median": pr, "ratios": p_ratios },
        });
        std::fs::write(
            path,
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

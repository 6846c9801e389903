//! The built-in catalog: every component's name, role, one-line summary and
//! parameter docs (what `dataplane list` prints), and its factory.

use crate::operators::{
    processors::{chaos, dedupe, fields, filter, rate_limit, sample, set_field, window},
    routers::{basic, by_field},
    sinks::{console, file as file_sink, tcp as tcp_sink, udp as udp_sink},
    sources::{file as file_source, synthetic, tcp as tcp_source, ticker, udp as udp_source},
    Discard, Forward, Mux, NoParams, Registry,
};
#[cfg(feature = "kafka")]
use crate::operators::{sinks::kafka as kafka_out, sources::kafka as kafka_in};
use crate::stage::{Role, Stage};

/// Sources.
pub(crate) fn register_sources(r: &mut Registry) {
    r.register(
        "list",
        Role::Source,
        "emits a fixed list of payloads, in order",
        |p: synthetic::ListParams| Ok(Stage::Source(Box::new(synthetic::build_list(p)?))),
    );
    r.register(
        "generator",
        Role::Source,
        "generates payloads from a template: a count of them or until stopped",
        |p: synthetic::GeneratorParams| Ok(Stage::Source(Box::new(synthetic::build_generator(p)?))),
    );
    r.register(
        "ticker",
        Role::Source,
        "emits an element every interval: {\"tick\":N,\"unix_ms\":T} or a fixed payload (late ticks are skipped)",
        |p: ticker::TickerParams| Ok(Stage::Source(Box::new(ticker::build(p)?))),
    );
    r.register(
        "file-in",
        Role::Source,
        "reads a file line by line (newline-delimited elements); can follow appended data",
        |p: file_source::FileSourceParams| Ok(Stage::Source(Box::new(file_source::build_file(p)?))),
    );
    r.register(
        "stdin",
        Role::Source,
        "reads standard input line by line, without blocking the worker; finishes at end of input",
        |p: file_source::StdinParams| Ok(Stage::Source(Box::new(file_source::build_stdin(p)))),
    );
    r.register(
        "udp-in",
        Role::Source,
        "receives UDP datagrams, one element each, straight into arena slots",
        |p: udp_source::UdpSourceParams| Ok(Stage::Source(Box::new(udp_source::build_source(p)?))),
    );
    r.register(
        "tcp-in",
        Role::Source,
        "TCP listener: newline-delimited elements from any number of clients, served in turn",
        |p: tcp_source::TcpSourceParams| Ok(Stage::Source(Box::new(tcp_source::build(p)?))),
    );
    #[cfg(feature = "kafka")]
    r.register(
        "kafka-in",
        Role::Source,
        "reads Kafka topics as a member of a consumer group; commits offsets once every sink has finished with the elements",
        |p: kafka_in::KafkaInParams| Ok(Stage::Source(Box::new(kafka_in::build(p)?))),
    );
}

/// Routers.
pub(crate) fn register_routers(r: &mut Registry) {
    r.register(
        "route-by-field",
        Role::Router,
        "routes JSON elements by a top-level field's value; one element to several ports shares one slot",
        |p: by_field::RouteParams| {
            let (router, ports) = by_field::build(p)?;
            Ok(Stage::Router(Box::new(router), ports))
        },
    );
    r.register(
        "route-by-hash",
        Role::Router,
        "partitions by a key field: FNV-1a 64 of the key's text modulo the port count (stable across runs)",
        |p: basic::HashParams| {
            let (router, ports) = basic::build_hash(p)?;
            Ok(Stage::Router(Box::new(router), ports))
        },
    );
    r.register(
        "round-robin",
        Role::Router,
        "sends each element to the next port in turn",
        |p: basic::PortsParams| {
            let (router, ports) = basic::build_round_robin(p)?;
            Ok(Stage::Router(Box::new(router), ports))
        },
    );
    r.register(
        "broadcast",
        Role::Router,
        "sends every element to every port (one shared slot, no copies)",
        |p: basic::PortsParams| {
            let (router, ports) = basic::build_broadcast(p)?;
            Ok(Stage::Router(Box::new(router), ports))
        },
    );
}

/// Processors.
pub(crate) fn register_processors(r: &mut Registry) {
    r.register(
        "filter",
        Role::Processor,
        "keeps JSON elements whose top-level fields satisfy a condition",
        |p: filter::FilterParams| Ok(Stage::Processor(Box::new(filter::build(p)?))),
    );
    r.register(
        "set-field",
        Role::Processor,
        "sets a top-level JSON field to a value (in place unless the element is shared)",
        |p: set_field::SetFieldParams| {
            Ok(Stage::Processor(Box::new(set_field::build_set_field(p)?)))
        },
    );
    r.register(
        "remove-field",
        Role::Processor,
        "removes top-level JSON fields (elements without them pass unchanged)",
        |p: fields::RemoveParams| Ok(Stage::Processor(Box::new(fields::build_remove(p)?))),
    );
    r.register(
        "rename-field",
        Role::Processor,
        "renames a top-level JSON field, keeping its value and position",
        |p: fields::RenameParams| Ok(Stage::Processor(Box::new(fields::build_rename(p)?))),
    );
    r.register(
        "sample",
        Role::Processor,
        "keeps one element in N",
        |p: sample::SampleParams| Ok(Stage::Processor(Box::new(sample::build(p)?))),
    );
    r.register(
        "chaos",
        Role::Processor,
        "fault injection for testing restart policies: forwards elements, panics or fails fatally every N",
        |p: chaos::ChaosParams| Ok(Stage::Processor(Box::new(chaos::build(p)?))),
    );
    r.register(
        "dedupe",
        Role::Processor,
        "drops repeats of a key seen within a time window (bounded memory)",
        |p: dedupe::DedupeParams| Ok(Stage::Processor(Box::new(dedupe::build(p)?))),
    );
    r.register(
        "rate-limit",
        Role::Processor,
        "token bucket: drops or delays elements beyond a rate, optionally per key",
        |p: rate_limit::RateLimitParams| Ok(Stage::Processor(Box::new(rate_limit::build(p)?))),
    );
    r.register(
        "window",
        Role::Processor,
        "tumbling or sliding windows over a count of elements or time, aggregating a field per key; one element per key per window",
        |p: window::WindowParams| Ok(Stage::Processor(window::build(p)?)),
    );
    r.register(
        "forward",
        Role::Processor,
        "passes elements through unchanged",
        |_: NoParams| Ok(Stage::Processor(Box::new(Forward))),
    );
}

/// Sinks.
pub(crate) fn register_sinks(r: &mut Registry) {
    r.register(
        "console",
        Role::Sink,
        "prints each element on a line of stdout",
        |p: console::ConsoleParams| Ok(Stage::Sink(Box::new(console::build_console(p)?))),
    );
    r.register(
        "file-out",
        Role::Sink,
        "writes each element as a line to a file (appends; flushed on completion)",
        |p: file_sink::FileSinkParams| Ok(Stage::Sink(Box::new(file_sink::build(p)?))),
    );
    r.register(
        "udp-out",
        Role::Sink,
        "sends each element as one UDP datagram (never blocks: drops with a reason when the socket is full)",
        |p: udp_sink::UdpSinkParams| Ok(Stage::Sink(Box::new(udp_sink::build_sink(p)?))),
    );
    r.register(
        "tcp-out",
        Role::Sink,
        "TCP client: writes each element as a line; reconnects when the connection is lost",
        |p: tcp_sink::TcpSinkParams| Ok(Stage::Sink(Box::new(tcp_sink::build(p)?))),
    );
    #[cfg(feature = "kafka")]
    r.register(
        "kafka-out",
        Role::Sink,
        "writes each element as a Kafka message (idempotent producer); flushed at each checkpoint and at the end",
        |p: kafka_out::KafkaOutParams| Ok(Stage::Sink(Box::new(kafka_out::build(p)?))),
    );
    r.register(
        "mux",
        Role::Sink,
        "serves its elements to clients subscribed through the control endpoint, each with a predicate (counts them when nobody listens)",
        |_: NoParams| {
            Ok(Stage::Sink(Box::new(Mux::new())))
        },
    );
    r.register(
        "discard",
        Role::Sink,
        "counts elements, nothing else",
        |_: NoParams| Ok(Stage::Sink(Box::new(Discard))),
    );
}

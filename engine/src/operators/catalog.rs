//! The built-in catalog: every component's name, role, one-line summary and
//! parameter docs (what `dataplane list` prints), and its factory.

#[cfg(feature = "kafka")]
use crate::operators::kafka;
use crate::operators::{
    chaos, dedupe, fields, file_sink, file_source, filter, params, processors, rate_limit,
    route_by_field, routers, sample, sinks, sources, tcp_sink, tcp_source, ticker, udp, window,
    Discard, Forward, Mux, NoParams, Registry,
};
use crate::stage::{Role, Stage};

/// Sources.
pub(crate) fn register_sources(r: &mut Registry) {
    r.register(
        "list",
        Role::Source,
        "emits a fixed list of payloads, in order",
        &[
            (
                "payloads",
                "array of strings (sent as is) or tables (sent as compact JSON)",
            ),
            ("repeat", "times to emit the list (default 1)"),
        ],
        |t| Ok(Stage::Source(Box::new(sources::build_list(params(t)?)?))),
    );
    r.register(
        "generator",
        Role::Source,
        "generates payloads from a template: a count of them or until stopped",
        &[
            ("template", "payload with {seq}, {ts} (ns), {pick:a|b|c} (in turn), {rand:N} (0..N) and {choose:a|b|c} (random) placeholders (default {\"seq\":{seq}})"),
            ("count", "elements to emit (default: until stopped)"),
            ("size", "pad each payload with spaces to this many bytes, or a list of sizes used in turn"),
            ("rate", "elements per second, stamped with their intended send time (default: as fast as possible)"),
            ("seed", "seed of {rand:N} and {choose:..} (default 0)"),
        ],
        |t| Ok(Stage::Source(Box::new(sources::build_generator(params(t)?)?))),
    );
    r.register(
        "ticker",
        Role::Source,
        "emits an element every interval: {\"tick\":N,\"unix_ms\":T} or a fixed payload (late ticks are skipped)",
        &[
            ("interval_ms", "time between ticks"),
            ("count", "ticks to emit (default: until stopped)"),
            ("payload", "send this text instead of the tick record"),
        ],
        |t| Ok(Stage::Source(Box::new(ticker::build(params(t)?)?))),
    );
    r.register(
        "file-in",
        Role::Source,
        "reads a file line by line (newline-delimited elements); can follow appended data",
        &[
            ("path", "file to read"),
            (
                "follow",
                "at the end, wait for appended data like tail -f (default false)",
            ),
            (
                "idle_timeout_ms",
                "with follow: finish after this long without new data (default: until stopped)",
            ),
            ("max_elements", "finish after this many elements"),
        ],
        |t| {
            Ok(Stage::Source(Box::new(file_source::build_file(params(
                t,
            )?)?)))
        },
    );
    r.register(
        "stdin",
        Role::Source,
        "reads standard input line by line, without blocking the worker; finishes at end of input",
        &[("max_elements", "finish after this many elements")],
        |t| {
            Ok(Stage::Source(Box::new(file_source::build_stdin(params(
                t,
            )?))))
        },
    );
    r.register(
        "udp-in",
        Role::Source,
        "receives UDP datagrams, one element each, straight into arena slots",
        &[
            ("address", "address to bind, e.g. \"127.0.0.1:9000\""),
            ("max_elements", "finish after this many elements"),
            (
                "idle_timeout_ms",
                "finish after this long without a datagram (default: until stopped)",
            ),
            (
                "recv_buffer",
                "socket receive buffer to ask for, bytes (default 4 MiB; the kernel may cap it)",
            ),
        ],
        |t| Ok(Stage::Source(Box::new(udp::build_source(params(t)?)?))),
    );
    r.register(
        "tcp-in",
        Role::Source,
        "TCP listener: newline-delimited elements from any number of clients, served in turn",
        &[
            ("address", "address to bind, e.g. \"127.0.0.1:9000\""),
            (
                "max_connections",
                "clients served at once (default 1024); one more is accepted, closed and counted as dropped (connection refused)",
            ),
            ("max_elements", "finish after this many elements"),
            (
                "idle_timeout_ms",
                "finish after this long with no data and no new client (default: until stopped)",
            ),
        ],
        |t| Ok(Stage::Source(Box::new(tcp_source::build(params(t)?)?))),
    );
    #[cfg(feature = "kafka")]
    r.register(
        "kafka-in",
        Role::Source,
        "reads Kafka topics as a member of a consumer group; commits offsets once every sink has finished with the elements",
        &[
            ("brokers", "bootstrap brokers, \"host:port[,host:port]\""),
            ("topics", "topics to subscribe to"),
            ("group_id", "consumer group: processes with the same group share the partitions"),
            ("start", "where a partition without a committed offset starts: \"earliest\" (default) or \"latest\""),
            ("session_timeout_ms", "the group's session timeout: how soon a dead member's partitions move (default 10000)"),
            ("commit_interval_ms", "without checkpoints: how often offsets of finished elements are committed (default 1000); with checkpoints, at each checkpoint"),
            ("metadata", "add _topic, _partition, _offset, _key and _timestamp (ms) fields to JSON-object values (default false); event_time can read _timestamp"),
            ("max_elements", "finish after this many elements"),
            ("librdkafka_options", "table of extra librdkafka consumer properties"),
        ],
        |t| Ok(Stage::Source(Box::new(kafka::build_source(params(t)?)?))),
    );
}

/// Routers.
pub(crate) fn register_routers(r: &mut Registry) {
    r.register(
        "route-by-field",
        Role::Router,
        "routes JSON elements by a top-level field's value; one element to several ports shares one slot",
        &[
            ("field", "top-level field to route on"),
            ("routes", "table: value = port or [ports]"),
            ("unmatched", "ports for other values, \"broadcast\" (default) or \"drop\""),
            ("missing", "ports when the field is absent (default: as unmatched)"),
            ("ports", "extra output ports to declare"),
        ],
        |t| {
            let (router, ports) = route_by_field::build(params(t)?)?;
            Ok(Stage::Router(Box::new(router), ports))
        },
    );
    r.register(
        "route-by-hash",
        Role::Router,
        "partitions by a key field: FNV-1a 64 of the key's text modulo the port count (stable across runs)",
        &[
            ("field", "top-level key field"),
            ("ports", "output ports, in partition order"),
            ("missing", "without the field: \"error\" (reject, default), \"drop\" or a port"),
        ],
        |t| {
            let (router, ports) = routers::build_hash(params(t)?)?;
            Ok(Stage::Router(Box::new(router), ports))
        },
    );
    r.register(
        "round-robin",
        Role::Router,
        "sends each element to the next port in turn",
        &[("ports", "output ports")],
        |t| {
            let (router, ports) = routers::build_round_robin(params(t)?)?;
            Ok(Stage::Router(Box::new(router), ports))
        },
    );
    r.register(
        "broadcast",
        Role::Router,
        "sends every element to every port (one shared slot, no copies)",
        &[("ports", "output ports")],
        |t| {
            let (router, ports) = routers::build_broadcast(params(t)?)?;
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
        &[
            ("where", "{ field = \"f\", <test> = value } with test eq, ne, gt, ge, lt, le, contains or exists; combine with { all = [..] }, { any = [..] }, { not = {..} }"),
            ("strict", "reject (to the error port) elements missing a tested field or with a non-number in a numeric test, instead of treating the test as false (default false)"),
        ],
        |t| Ok(Stage::Processor(Box::new(filter::build(params(t)?)?))),
    );
    r.register(
        "set-field",
        Role::Processor,
        "sets a top-level JSON field to a value (in place unless the element is shared)",
        &[
            ("field", "field name"),
            ("value", "any TOML value, written as JSON"),
        ],
        |t| {
            Ok(Stage::Processor(Box::new(processors::build_set_field(
                params(t)?,
            )?)))
        },
    );
    r.register(
        "remove-field",
        Role::Processor,
        "removes top-level JSON fields (elements without them pass unchanged)",
        &[("fields", "names of the fields to remove")],
        |t| {
            Ok(Stage::Processor(Box::new(fields::build_remove(params(
                t,
            )?)?)))
        },
    );
    r.register(
        "rename-field",
        Role::Processor,
        "renames a top-level JSON field, keeping its value and position",
        &[
            ("from", "current name"),
            (
                "to",
                "new name (an existing field of that name is replaced)",
            ),
            (
                "strict",
                "reject elements without 'from' instead of passing them (default false)",
            ),
        ],
        |t| {
            Ok(Stage::Processor(Box::new(fields::build_rename(params(
                t,
            )?)?)))
        },
    );
    r.register(
        "sample",
        Role::Processor,
        "keeps one element in N",
        &[
            ("every", "N: keep the 1st, (N+1)th, ... element"),
            (
                "random",
                "keep each with probability 1/N instead (default false)",
            ),
            ("seed", "seed of the random choice (default 0)"),
        ],
        |t| Ok(Stage::Processor(Box::new(sample::build(params(t)?)?))),
    );
    r.register(
        "chaos",
        Role::Processor,
        "fault injection for testing restart policies: forwards elements, panics or fails fatally every N",
        &[
            (
                "panic_every",
                "N: the k-th element the node sees (1-based, counted across its restarts) panics when k % N == 0",
            ),
            (
                "error_every",
                "N: the k-th element returns a fatal error when k % N == 0 (a panic wins when both match)",
            ),
        ],
        |t| Ok(Stage::Processor(Box::new(chaos::build(params(t)?)?))),
    );
    r.register(
        "dedupe",
        Role::Processor,
        "drops repeats of a key seen within a time window (bounded memory)",
        &[
            ("field", "top-level key field (default: the whole payload)"),
            (
                "window_ms",
                "a key passes again once this long has passed since it last passed",
            ),
            (
                "max_keys",
                "keys remembered at most; the oldest is forgotten early, counted in the summary as keys evicted (default 100000)",
            ),
        ],
        |t| Ok(Stage::Processor(Box::new(dedupe::build(params(t)?)?))),
    );
    r.register(
        "rate-limit",
        Role::Processor,
        "token bucket: drops or delays elements beyond a rate, optionally per key",
        &[
            ("rate", "tokens (elements) per second"),
            ("burst", "bucket size (default: rate, at least 1)"),
            (
                "mode",
                "\"drop\" (default) or \"delay\" (hold the input until a token is free)",
            ),
            (
                "key",
                "top-level field: one bucket per value (default: one bucket)",
            ),
            (
                "max_keys",
                "per-key buckets at most; beyond, keys share one (default 10000)",
            ),
        ],
        |t| Ok(Stage::Processor(Box::new(rate_limit::build(params(t)?)?))),
    );
    r.register(
        "window",
        Role::Processor,
        "tumbling or sliding windows over a count of elements or time, aggregating a field per key; one element per key per window",
        &[
            ("kind", "\"tumbling\" (default) or \"sliding\""),
            ("size", "window length in elements (count windows; whole stream, all keys)"),
            ("size_ms", "window length in ms, aligned on the Unix epoch (time windows)"),
            ("time", "\"processing\" (default: the clock when an element arrives) or \"event\" (the timestamps its upstream sources declare with event_time; windows close as the watermark passes their end)"),
            ("allowed_lateness_ms", "event time: keep a window open this long after the watermark passed its end (default 0); later elements go to the port 'late'"),
            ("slide", "sliding count windows: advance by this many elements (must divide size)"),
            ("slide_ms", "sliding time windows: advance by this many ms (must divide size_ms)"),
            ("key", "top-level field to group by (default: one group)"),
            ("field", "top-level numeric field to aggregate"),
            ("aggregates", "any of count, sum, min, max, avg (default: all with a field, else count)"),
            (
                "max_keys",
                "keys per window at most; elements of more keys are rejected, and the keys refused counted in the summary (default 10000)",
            ),
        ],
        |t| Ok(Stage::Processor(window::build(params(t)?)?)),
    );
    r.register(
        "forward",
        Role::Processor,
        "passes elements through unchanged",
        &[],
        |t| {
            params::<NoParams>(t)?;
            Ok(Stage::Processor(Box::new(Forward)))
        },
    );
}

/// Sinks.
pub(crate) fn register_sinks(r: &mut Registry) {
    r.register(
        "console",
        Role::Sink,
        "prints each element on a line of stdout",
        &[
            ("format", "\"prefix\" (default): prefix then payload; \"raw\": payload; \"json\": a JSON record with the metadata (node, seq, source, ingest_ns, content_type, reason) and the payload (payload_base64 instead when it is not UTF-8)"),
            ("prefix", "text before each payload (format \"prefix\"; default none)"),
            ("on_complete", "line printed when the stream completes"),
        ],
        |t| Ok(Stage::Sink(Box::new(sinks::build_console(params(t)?)?))),
    );
    r.register(
        "file-out",
        Role::Sink,
        "writes each element as a line to a file (appends; flushed on completion)",
        &[
            ("path", "file to write (its directory must exist)"),
            (
                "format",
                "\"raw\" (default), \"prefix\" or \"json\" (as for console)",
            ),
            ("prefix", "text before each payload (format \"prefix\")"),
            (
                "append",
                "append to an existing file (default true); false truncates it",
            ),
            (
                "fsync",
                "sync the file to disk on completion (default false)",
            ),
        ],
        |t| Ok(Stage::Sink(Box::new(file_sink::build(params(t)?)?))),
    );
    r.register(
        "udp-out",
        Role::Sink,
        "sends each element as one UDP datagram (never blocks: drops with a reason when the socket is full)",
        &[("address", "destination, e.g. \"127.0.0.1:9000\"")],
        |t| Ok(Stage::Sink(Box::new(udp::build_sink(params(t)?)?))),
    );
    r.register(
        "tcp-out",
        Role::Sink,
        "TCP client: writes each element as a line; reconnects when the connection is lost",
        &[
            ("address", "server, e.g. \"127.0.0.1:9000\""),
            ("format", "\"raw\" (default), \"prefix\" or \"json\" (as for console)"),
            ("prefix", "text before each payload (format \"prefix\")"),
            ("reconnect_ms", "first wait between connection attempts, doubled after each failure up to 30 s (default 500)"),
            ("buffer_bytes", "undelivered bytes kept while slow or disconnected; beyond, elements are dropped (default 1 MiB)"),
            ("linger_ms", "at the end of the stream, try this long to deliver the rest (default 2000)"),
        ],
        |t| Ok(Stage::Sink(Box::new(tcp_sink::build(params(t)?)?))),
    );
    #[cfg(feature = "kafka")]
    r.register(
        "kafka-out",
        Role::Sink,
        "writes each element as a Kafka message (idempotent producer); flushed at each checkpoint and at the end",
        &[
            ("brokers", "bootstrap brokers, \"host:port[,host:port]\""),
            ("topic", "topic to write to"),
            ("key_field", "top-level JSON field whose value is the message key (default: no key)"),
            ("compression", "\"none\" (default), \"gzip\", \"snappy\", \"lz4\" or \"zstd\""),
            ("acks", "\"all\" (default), \"1\" or \"0\""),
            ("idempotent", "idempotent producer: retries never duplicate (default true; needs acks = \"all\")"),
            ("linger_ms", "how long to wait to fill a batch (default 5)"),
            ("flush_timeout_ms", "longest wait for acknowledgements at a checkpoint or the end (default 30000)"),
            ("librdkafka_options", "table of extra librdkafka producer properties"),
        ],
        |t| Ok(Stage::Sink(Box::new(kafka::build_sink(params(t)?)?))),
    );
    r.register(
        "mux",
        Role::Sink,
        "serves its elements to clients subscribed through the control endpoint, each with a predicate (counts them when nobody listens)",
        &[],
        |t| {
            params::<NoParams>(t)?;
            Ok(Stage::Sink(Box::new(Mux::new())))
        },
    );
    r.register(
        "discard",
        Role::Sink,
        "counts elements, nothing else",
        &[],
        |t| {
            params::<NoParams>(t)?;
            Ok(Stage::Sink(Box::new(Discard)))
        },
    );
}

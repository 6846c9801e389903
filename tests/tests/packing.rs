//! Many stages packed onto few cores: a 15-stage chain and fan-out on (at
//! most) two cores, so several stages share each worker. It must finish
//! with every element accounted for, whatever the wait strategy; a livelock
//! shows up as the harness timeout.

use dataplane_tests::{run_config, usable_cores, Output, TempDir, EXIT_OK};

const COUNT: u64 = 200_000;
const BRANCHES: [&str; 3] = ["a", "b", "c"];

/// generator -> fwd1..fwd4 -> router -> 3 x (set-field -> forward -> discard).
fn config(wait: Option<&str>) -> String {
    let cores: Vec<String> = usable_cores()
        .iter()
        .take(2)
        .map(ToString::to_string)
        .collect();
    let mut t = String::from("[engine]\n");
    if let Some(w) = wait {
        t += &format!("wait = \"{w}\"\n");
    }
    t += &format!("cores = [{}]\n\n", cores.join(", "));
    t += &format!(
        "[flow.packed.nodes.gen]\ncomponent = \"generator\"\ncount = {COUNT}\n\
         template = '{{\"seq\":{{seq}},\"kind\":\"{{pick:a|b|c}}\"}}'\n\n"
    );
    let mut edges = Vec::new();
    let mut prev = "gen".to_string();
    for i in 1..=4 {
        let name = format!("fwd{i}");
        t += &format!("[flow.packed.nodes.{name}]\ncomponent = \"forward\"\n\n");
        edges.push((prev, "output".to_string(), name.clone()));
        prev = name;
    }
    t += "[flow.packed.nodes.router]\ncomponent = \"route-by-field\"\nfield = \"kind\"\n\
          routes = { a = \"a\", b = \"b\", c = \"c\" }\nunmatched = \"drop\"\n\n";
    edges.push((prev, "output".to_string(), "router".to_string()));
    for b in BRANCHES {
        t += &format!(
            "[flow.packed.nodes.tag-{b}]\ncomponent = \"set-field\"\nfield = \"branch\"\nvalue = \"{b}\"\n\n\
             [flow.packed.nodes.pass-{b}]\ncomponent = \"forward\"\n\n\
             [flow.packed.nodes.sink-{b}]\ncomponent = \"discard\"\n\n"
        );
        edges.push(("router".to_string(), b.to_string(), format!("tag-{b}")));
        edges.push((
            format!("tag-{b}"),
            "output".to_string(),
            format!("pass-{b}"),
        ));
        edges.push((
            format!("pass-{b}"),
            "output".to_string(),
            format!("sink-{b}"),
        ));
    }
    for (from, port, to) in edges {
        t += &format!(
            "[[flow.packed.edges]]\nfrom = {{ node = \"{from}\", port = \"{port}\" }}\n\
             to = {{ node = \"{to}\", port = \"input\" }}\n\n"
        );
    }
    t
}

/// Element counts: 200000 through the chain, split 66667/66667/66666 by the
/// router (`{pick:a|b|c}` cycles by sequence number, from 0).
fn assert_counts(out: &Output) {
    out.assert_stderr_contains(&format!(
        "{COUNT} events routed by 'router': 66667 to a, 66667 to b, 66666 to c"
    ))
    .assert_stderr_contains("0 slots leaked");
    let table = out.stage_table();
    assert_eq!(table.len(), 15, "15 stages\n{}", out.dump());
    assert_eq!(out.stage("gen").sent, COUNT);
    for i in 1..=4 {
        let row = out.stage(&format!("fwd{i}"));
        assert_eq!((row.received, row.sent), (COUNT, COUNT), "{row:?}");
    }
    let router = out.stage("router");
    assert_eq!(
        (router.received, router.sent, router.dropped),
        (COUNT, COUNT, 0),
        "{router:?}"
    );
    let mut total = 0;
    for (b, want) in BRANCHES.iter().zip([66667, 66667, 66666]) {
        for stage in [format!("tag-{b}"), format!("pass-{b}")] {
            let row = out.stage(&stage);
            assert_eq!((row.received, row.sent), (want, want), "{row:?}");
        }
        let sink = out.stage(&format!("sink-{b}"));
        assert_eq!(sink.received, want, "{sink:?}");
        total += sink.received;
    }
    assert_eq!(total, COUNT);
    assert!(table.iter().all(|r| r.dropped == 0), "{table:?}");

    // Packed: 15 stages on at most two cores.
    let workers: std::collections::BTreeSet<usize> = table.iter().map(|r| r.worker).collect();
    assert!(
        workers.len() <= 2,
        "more workers than cores\n{}",
        out.dump()
    );
}

fn run_packed(label: &str, wait: Option<&str>) {
    let dir = TempDir::new(label);
    let path = dir.write("packed.toml", &config(wait));

    let quiet = run_config(&path, &["--quiet"]);
    quiet.assert_code(EXIT_OK).assert_no_panic();
    assert!(
        quiet.stdout.is_empty(),
        "discard sinks print nothing\n{}",
        quiet.dump()
    );
    assert!(
        quiet.stderr.is_empty(),
        "--quiet prints nothing on success\n{}",
        quiet.dump()
    );

    let out = run_config(&path, &[]);
    out.assert_code(EXIT_OK).assert_no_panic();
    if let Some(w) = wait {
        out.assert_stderr_contains(&format!("wait strategy {w}"));
    }
    assert_counts(&out);
}

#[test]
fn packed_chain_and_fanout_default_wait() {
    run_packed("packed-park", None);
}

#[test]
fn packed_chain_and_fanout_yield() {
    run_packed("packed-yield", Some("yield"));
}

#[test]
fn packed_chain_and_fanout_busy_spin() {
    run_packed("packed-spin", Some("busy-spin"));
}

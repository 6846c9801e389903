//! A 10-stage pipeline of the built-in operators packed onto (at most) two
//! cores: it completes, loses nothing, and keeps the order of every branch.
//! The branches end in files, read back after the run.

use dataplane_tests::{run_config, usable_cores, TempDir, EXIT_OK};

const COUNT: u64 = 200_000;

/// gen -> filter -> rename -> remove -> set -> route-by-hash
///   -> (forward -> file-out) x 2: ten stages.
fn config(dir: &TempDir) -> String {
    let cores: Vec<String> = usable_cores()
        .iter()
        .take(2)
        .map(ToString::to_string)
        .collect();
    let file = |p: u32| {
        dir.path()
            .join(format!("p{p}.ndjson"))
            .display()
            .to_string()
    };
    format!(
        r#"
[engine]
cores = [{cores}]

[flow.ten.nodes.gen]
component = "generator"
count = {COUNT}
template = '{{"seq":{{seq}},"k":"{{pick:a|b|c|d|e|f}}","pad":"xxxxxxxx","tmp":1}}'

[flow.ten.nodes.filter]
component = "filter"
where = {{ all = [ {{ field = "seq", ge = 0 }}, {{ field = "k", exists = true }} ] }}

[flow.ten.nodes.rename]
component = "rename-field"
from = "pad"
to = "padding"

[flow.ten.nodes.remove]
component = "remove-field"
fields = ["tmp"]

[flow.ten.nodes.set]
component = "set-field"
field = "checked"
value = true

[flow.ten.nodes.split]
component = "route-by-hash"
field = "k"
ports = ["p0", "p1"]

[flow.ten.nodes.fwd0]
component = "forward"

[flow.ten.nodes.fwd1]
component = "forward"

[flow.ten.nodes.file0]
component = "file-out"
path = "{f0}"
append = false

[flow.ten.nodes.file1]
component = "file-out"
path = "{f1}"
append = false

[[flow.ten.edges]]
from = {{ node = "gen" }}
to = {{ node = "filter" }}

[[flow.ten.edges]]
from = {{ node = "filter" }}
to = {{ node = "rename" }}

[[flow.ten.edges]]
from = {{ node = "rename" }}
to = {{ node = "remove" }}

[[flow.ten.edges]]
from = {{ node = "remove" }}
to = {{ node = "set" }}

[[flow.ten.edges]]
from = {{ node = "set" }}
to = {{ node = "split" }}

[[flow.ten.edges]]
from = {{ node = "split", port = "p0" }}
to = {{ node = "fwd0" }}

[[flow.ten.edges]]
from = {{ node = "split", port = "p1" }}
to = {{ node = "fwd1" }}

[[flow.ten.edges]]
from = {{ node = "fwd0" }}
to = {{ node = "file0" }}

[[flow.ten.edges]]
from = {{ node = "fwd1" }}
to = {{ node = "file1" }}
"#,
        cores = cores.join(", "),
        f0 = file(0),
        f1 = file(1),
    )
}

#[test]
fn ten_stages_on_two_cores_keep_order_per_branch() {
    let dir = TempDir::new("ten-stages");
    let out = run_config(&dir.write("ten.toml", &config(&dir)), &[]);
    out.assert_code(EXIT_OK)
        .assert_no_panic()
        .assert_stderr_contains("0 slots leaked");
    let table = out.stage_table();
    assert_eq!(table.len(), 10);
    let workers: std::collections::BTreeSet<usize> = table.iter().map(|r| r.worker).collect();
    assert!(workers.len() <= 2, "{}", out.dump());
    assert!(table.iter().all(|r| r.dropped == 0), "{}", out.dump());

    // FNV-1a 64 mod 2: a, c, e -> p0; b, d, f -> p1.
    for (p, keys) in [(0, ["a", "c", "e"]), (1, ["b", "d", "f"])] {
        let text = std::fs::read_to_string(dir.path().join(format!("p{p}.ndjson"))).unwrap();
        let want: Vec<u64> = (0..COUNT).filter(|s| s % 6 % 2 == p).collect();
        let mut got = Vec::with_capacity(want.len());
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(keys.contains(&v["k"].as_str().unwrap()), "{line}");
            assert_eq!(v["padding"], "xxxxxxxx");
            assert_eq!(v["checked"], true);
            assert!(v.get("tmp").is_none() && v.get("pad").is_none(), "{line}");
            got.push(v["seq"].as_u64().unwrap());
        }
        assert_eq!(got.len(), want.len(), "partition p{p}: everything arrived");
        assert!(got == want, "partition p{p}: in order");
    }
}

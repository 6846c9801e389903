//! Nothing is lost between stages: for every shipped config that runs on
//! its own, every node received exactly what its upstream ports sent on
//! the edges into it, less what those edges dropped (`--report` JSON).

use std::path::PathBuf;

use dataplane_tests::{repo_root, run_config, TempDir};

/// Configs that need input from outside (stdin, a TCP or UDP client) or a
/// peer, or run until stopped; the network and control tests run those
/// (and the Kafka tests `kafka.toml`, which needs a broker).
const NEEDS_INPUT: &[&str] = &[
    "kafka.toml",
    "stdin.toml",
    "tcp.toml",
    "udp.toml",
    "udp_out.toml",
    "live.toml",
];

fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("configs"))
        .expect("configs/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !NEEDS_INPUT.contains(&name.as_ref())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_config_balances_edge_by_edge() {
    let dir = TempDir::new("conservation");
    let files = shipped();
    assert!(files.len() >= 8, "{files:?}");
    for path in files {
        let report = dir.path().join("report.json");
        let out = run_config(&path, &["--report", report.to_str().unwrap()]);
        out.assert_no_panic();
        let text = std::fs::read_to_string(&report)
            .unwrap_or_else(|e| panic!("{}: no report ({e})\n{}", path.display(), out.dump()));
        let r: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(r["arena"]["leaked"], 0, "{}", path.display());
        let stages = r["stages"].as_array().unwrap();
        let stage = |name: &str| {
            stages
                .iter()
                .find(|s| s["name"] == name)
                .unwrap_or_else(|| panic!("{}: no stage {name}", path.display()))
        };
        for s in stages {
            let name = s["name"].as_str().unwrap();
            let expected: u64 = r["edges"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["to"] == name)
                .map(|e| {
                    let from = stage(e["from"].as_str().unwrap());
                    let sent = from["ports"][e["port"].as_str().unwrap()].as_u64().unwrap();
                    sent - e["dropped"].as_u64().unwrap()
                })
                .sum();
            if s["role"] == "source" {
                continue;
            }
            assert_eq!(
                s["received"].as_u64().unwrap(),
                expected,
                "{}: stage {name} received what its inputs sent less edge drops",
                path.display()
            );
            // A sink accounts for every element it received.
            if s["role"] == "sink" {
                let (dropped, failed) = (
                    s["dropped"].as_u64().unwrap(),
                    s["failed"].as_u64().unwrap(),
                );
                assert!(
                    dropped + failed <= s["received"].as_u64().unwrap(),
                    "{}: {name}",
                    path.display()
                );
            }
        }
    }
}

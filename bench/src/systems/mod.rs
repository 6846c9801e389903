//! The systems under test: the engine and the baselines.
//!
//! Every system runs a [`Workload`] through its own build of the same
//! [`Graph`] and returns a [`RunOutcome`]. Placement is the engine's: the
//! harness asks the engine where it would put each stage
//! ([`engine::placement`]) and pins each baseline thread to that stage's
//! core. The engine runs one worker per core and packs neighbouring stages
//! onto it; a channel baseline runs one thread per stage (that is how such
//! pipelines are written), blocking on its channel when idle, so threads
//! sharing a core never spin against each other.

pub mod channels;
pub mod engine;
pub mod limit;
pub mod lmax;
pub mod pingpong;
pub mod timely_df;

use core_affinity::CoreId;

use crate::measure::RunOutcome;
use crate::scenario::{Graph, Load, Scenario, Topology, Workload};

/// A system the harness can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// The dataplane engine (`PipelineBuilder`, built-in stages).
    Engine,
    /// crossbeam-channel `bounded`, one thread per stage, `Vec<u8>` elements
    /// cloned per fan-out branch.
    Crossbeam,
    /// `std::sync::mpsc::sync_channel`, otherwise as crossbeam.
    Mpsc,
    /// The `disruptor` crate (LMAX port), single producer, busy-spinning.
    Disruptor,
    /// Two threads bouncing one cache line: the floor of one hop.
    PingPong,
    /// The engine's design with nothing else: slots, `u32` indices over
    /// `rtrb` rings, a return ring (the ceiling the engine is gated on).
    Limit,
    /// timely-dataflow: two pinned workers, worker 0 produces, an exchange
    /// moves every record to worker 1, which runs the sinks.
    Timely,
}

impl System {
    /// Every system, in report order (the engine first: ratios refer to it).
    pub const ALL: [System; 7] = [
        System::Engine,
        System::Limit,
        System::Timely,
        System::Crossbeam,
        System::Mpsc,
        System::Disruptor,
        System::PingPong,
    ];

    /// Name in the table, the JSON and `--system`.
    pub fn name(self) -> &'static str {
        match self {
            System::Engine => "engine",
            System::Crossbeam => "crossbeam",
            System::Mpsc => "std-mpsc",
            System::Disruptor => "disruptor",
            System::PingPong => "pingpong",
            System::Limit => "limit",
            System::Timely => "timely",
        }
    }

    /// The system called `name`.
    pub fn parse(name: &str) -> Option<System> {
        System::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Whether and how a system runs a scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Runs, with this many threads, described in words.
    Run {
        /// Threads doing pipeline work.
        threads: usize,
        /// How they are placed, for the report.
        threading: String,
    },
    /// Shown as not run, with the reason.
    Skip(String),
    /// Not shown for this scenario at all.
    Absent,
}

/// Where things run: the usable cores (read once, in the main thread,
/// before anything is pinned) and the engine's core for each graph node.
#[derive(Clone, Debug)]
pub struct Placement {
    /// Usable cores.
    pub cores: Vec<CoreId>,
    /// Core of each node of the graph (the engine's choice).
    pub node_cores: Vec<CoreId>,
}

impl Placement {
    /// Distinct cores the stages use.
    pub fn cores_used(&self) -> usize {
        let mut ids: Vec<usize> = self.node_cores.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }
}

/// For the one-hop shapes (chain-1, or fanout-N behind its router), placed
/// on `node_cores` (graph order): the sinks' cores, checked to be off the
/// source's core (the hop is between cores).
pub(crate) fn hop_sink_cores(
    topology: Topology,
    node_cores: &[CoreId],
) -> Result<&[CoreId], String> {
    let sinks = match topology {
        Topology::Chain(1) => &node_cores[1..],
        Topology::FanOut(_) => &node_cores[2..],
        _ => return Err("written for chain-1 and fanout-N only".to_string()),
    };
    match node_cores.first() {
        Some(src) if !sinks.is_empty() && sinks.iter().all(|c| c.id != src.id) => Ok(sinks),
        _ => Err("a sink shares the source's core; the hop needs its own".to_string()),
    }
}

fn busy_threads(t: Topology) -> usize {
    match t {
        Topology::Chain(h) => h + 1,
        Topology::FanOut(n) => n + 1,
        Topology::FanIn(n) => n + 1,
        Topology::Diamond => 4,
    }
}

/// How `system` would run `scenario` (as `workload`: its payload size) on
/// `graph` placed by `placement`.
pub fn plan(
    system: System,
    scenario: &Scenario,
    workload: &Workload,
    graph: &Graph,
    placement: &Placement,
) -> Plan {
    let stages = graph.nodes.len();
    let per_stage = |what: &str| {
        Plan::Run {
        threads: stages,
        threading: format!(
            "{what}: 1 thread per stage ({stages}), pinned like the engine's stages ({} cores), blocking when idle",
            placement.cores_used()
        ),
    }
    };
    match system {
        System::Engine => Plan::Run {
            threads: placement.cores_used(),
            threading: format!(
                "{} workers, one per core, {stages} stages packed in topological order",
                placement.cores_used()
            ),
        },
        System::Crossbeam => per_stage("crossbeam-channel bounded"),
        System::Mpsc => per_stage("std sync_channel"),
        System::Disruptor => {
            let need = busy_threads(scenario.topology);
            let cores = placement.cores.len();
            if scenario.topology != Topology::Chain(1) && need > cores {
                Plan::Skip(format!(
                    "needs {need} busy-spinning threads (the crate's consumers and full-ring producers spin), \
                     {cores} cores here"
                ))
            } else if scenario.topology != Topology::Chain(1) {
                Plan::Skip("not wired in this harness (only chain-1 is)".to_string())
            } else if need > cores {
                Plan::Skip(format!(
                    "needs {need} busy-spinning threads, {cores} cores here"
                ))
            } else {
                Plan::Run {
                    threads: need,
                    threading: "producer + 1 consumer (BusySpinWithSpinLoopHint), pinned like the engine's stages".to_string(),
                }
            }
        }
        System::Limit => match limit::supports(scenario.topology, &placement.node_cores) {
            Ok(()) => {
                let mut sink_cores: Vec<usize> = graph
                    .sinks()
                    .iter()
                    .map(|&s| placement.node_cores[s].id)
                    .collect();
                sink_cores.sort_unstable();
                sink_cores.dedup();
                let consumers = sink_cores.len();
                Plan::Run {
                    threads: 1 + consumers,
                    threading: format!(
                        "bare hop: producer on the source's core, one consumer per sink core, spinning then yielding; batch {}",
                        limit::batch()
                    ),
                }
            }
            Err(reason) => Plan::Skip(reason),
        },
        System::Timely => match timely_df::supports(
            scenario,
            workload.size,
            &placement.node_cores,
            placement.cores.len(),
        ) {
            Ok(()) => {
                let sinks = graph.sinks().len();
                Plan::Run {
                    threads: 2,
                    threading: format!(
                        "2 timely workers (Config::process(2)), worker 0 on the source's core produces batches of {}, \
                         exchange(|_| 1) to worker 1 on the first sink's core, which runs {sinks} sink(s); both step, spinning",
                        timely_df::BATCH
                    ),
                }
            }
            Err(reason) => Plan::Skip(reason),
        },
        System::PingPong => {
            if scenario.topology != Topology::Chain(1)
                || scenario.load != Load::Saturating
                || scenario.size.is_some()
            {
                Plan::Absent
            } else if placement.cores.len() < 2 {
                Plan::Skip("needs two cores".to_string())
            } else {
                Plan::Run {
                    threads: 2,
                    threading: format!(
                        "2 spinning threads on cores {} and {}; one cache line, round trip / 2",
                        placement.cores[0].id, placement.cores[1].id
                    ),
                }
            }
        }
    }
}

/// Runs `system` once.
pub fn run(
    system: System,
    workload: &Workload,
    graph: &Graph,
    placement: &Placement,
) -> Result<RunOutcome, String> {
    match system {
        System::Engine => engine::run(workload, graph),
        System::Crossbeam => {
            channels::run::<channels::Crossbeam>(workload, graph, &placement.node_cores)
        }
        System::Mpsc => channels::run::<channels::StdMpsc>(workload, graph, &placement.node_cores),
        System::Disruptor => lmax::run(workload, &placement.node_cores),
        System::Limit => limit::run(workload, graph, &placement.node_cores),
        System::Timely => timely_df::run(workload, &placement.node_cores),
        System::PingPong => Ok(pingpong::run(
            pingpong::rounds(workload.count),
            placement.cores[0],
            placement.cores[1],
        )),
    }
}

//! Named scenarios and the stage graph every system builds from them.
//!
//! A scenario fixes a topology, a payload size and a load (saturating or a
//! fixed offered rate). [`Graph`] is the one description of its stages and
//! edges that the engine and the channel baselines are both built from, so
//! they run the same pipeline with the same stage names (and so the same
//! cores: the baselines pin each stage's thread to the core the engine puts
//! that stage on).

use std::fmt;

/// The shape of a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// A source, `hops - 1` forwarding stages, a sink: `hops` hops.
    Chain(usize),
    /// A source, a broadcasting router, `n` sinks (each gets every element).
    FanOut(usize),
    /// `n` sources into one sink's input.
    FanIn(usize),
    /// A source, a router broadcasting to two forwarding stages, both into
    /// one sink (which gets every element twice).
    Diamond,
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::Chain(1) => write!(f, "gen -> sink (1 hop)"),
            Topology::Chain(h) => {
                write!(f, "gen -> {} forward -> sink ({h} hops)", h - 1)
            }
            Topology::FanOut(n) => write!(f, "gen -> broadcast to {n} sinks"),
            Topology::FanIn(n) => write!(f, "{n} gens -> one sink input"),
            Topology::Diamond => write!(f, "gen -> broadcast router -> 2 forward -> one sink"),
        }
    }
}

/// How elements are offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// As fast as the pipeline takes them (`--count` elements).
    Saturating,
    /// At `--rate` elements/s for `--rate-secs`, each stamped with its
    /// intended send time (coordinated-omission safe).
    Rate,
    /// At half the engine's saturated throughput on the named saturating
    /// scenario, measured in the same run (latency below saturation), for
    /// `--rate-secs`.
    HalfOf(&'static str),
}

/// A named benchmark case.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Name used by `--scenario`.
    pub name: &'static str,
    /// The pipeline shape.
    pub topology: Topology,
    /// A fixed payload size, or `None` for `--size`.
    pub size: Option<usize>,
    /// Saturating or fixed rate.
    pub load: Load,
}

impl Scenario {
    /// Payload bytes for this scenario given `--size`.
    pub fn payload(&self, default_size: usize) -> usize {
        self.size.unwrap_or(default_size)
    }
}

const fn sat(name: &'static str, topology: Topology, size: Option<usize>) -> Scenario {
    Scenario {
        name,
        topology,
        size,
        load: Load::Saturating,
    }
}

const fn rate(name: &'static str, topology: Topology) -> Scenario {
    Scenario {
        name,
        topology,
        size: None,
        load: Load::Rate,
    }
}

const fn half(name: &'static str, topology: Topology, base: &'static str) -> Scenario {
    Scenario {
        name,
        topology,
        size: None,
        load: Load::HalfOf(base),
    }
}

/// Every scenario, in the order they run.
pub const ALL: &[Scenario] = &[
    sat("chain-1", Topology::Chain(1), None),
    sat("chain-2", Topology::Chain(2), None),
    sat("chain-4", Topology::Chain(4), None),
    sat("chain-8", Topology::Chain(8), None),
    sat("fanout-1", Topology::FanOut(1), None),
    sat("fanout-2", Topology::FanOut(2), None),
    sat("fanout-4", Topology::FanOut(4), None),
    sat("fanin-2", Topology::FanIn(2), None),
    sat("diamond", Topology::Diamond, None),
    sat("chain-1-1k", Topology::Chain(1), Some(1024)),
    sat("fanout-2-1k", Topology::FanOut(2), Some(1024)),
    rate("chain-1-rate", Topology::Chain(1)),
    rate("chain-4-rate", Topology::Chain(4)),
    rate("fanout-2-rate", Topology::FanOut(2)),
    rate("diamond-rate", Topology::Diamond),
    half("chain-1-half", Topology::Chain(1), "chain-1"),
    half("fanout-2-half", Topology::FanOut(2), "fanout-2"),
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<Scenario> {
    ALL.iter().copied().find(|s| s.name == name)
}

/// What one run offers: the same for every system.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// The pipeline shape.
    pub topology: Topology,
    /// Payload bytes per element.
    pub size: usize,
    /// Elements created by all sources together.
    pub count: u64,
    /// Offered rate in elements/s for all sources together (`None`:
    /// saturating).
    pub rate: Option<f64>,
    /// Ring / channel capacity per edge, in elements.
    pub capacity: usize,
}

/// What a stage does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Creates `count` elements (its share of the workload).
    Source {
        /// Elements this source creates.
        count: u64,
    },
    /// Passes each element on.
    Forward,
    /// Sends each element to all of its `n` output ports.
    Broadcast(usize),
    /// Consumes and measures.
    Sink,
}

/// A stage of the graph.
#[derive(Clone, Debug)]
pub struct Node {
    /// Stage name (the same in the engine and the baselines).
    pub name: String,
    /// What it does.
    pub kind: Kind,
}

/// An edge: from `(node, output port)` to a node's single input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    /// Producing node index.
    pub from: usize,
    /// Output port index (0 unless the producer broadcasts).
    pub port: usize,
    /// Consuming node index.
    pub to: usize,
}

/// Stages and edges of a workload, nodes in topological order.
#[derive(Clone, Debug)]
pub struct Graph {
    /// The stages.
    pub nodes: Vec<Node>,
    /// The edges.
    pub edges: Vec<Edge>,
}

impl Graph {
    /// The graph of `w`: the sources share `w.count` (the first takes the
    /// remainder).
    pub fn of(w: &Workload) -> Graph {
        let mut g = Graph {
            nodes: Vec::new(),
            edges: Vec::new(),
        };
        let sources = match w.topology {
            Topology::FanIn(n) => n.max(1),
            _ => 1,
        };
        let share = |i: usize| {
            let base = w.count / sources as u64;
            if i == 0 {
                base + w.count % sources as u64
            } else {
                base
            }
        };
        match w.topology {
            Topology::Chain(hops) => {
                let src = g.add("gen", Kind::Source { count: share(0) });
                let mut prev = src;
                for i in 1..hops.max(1) {
                    let f = g.add(&format!("fwd{i}"), Kind::Forward);
                    g.link(prev, 0, f);
                    prev = f;
                }
                let sink = g.add("sink", Kind::Sink);
                g.link(prev, 0, sink);
            }
            Topology::FanOut(n) => {
                let src = g.add("gen", Kind::Source { count: share(0) });
                let r = g.add("router", Kind::Broadcast(n.max(1)));
                g.link(src, 0, r);
                for i in 0..n.max(1) {
                    let s = g.add(&format!("sink{i}"), Kind::Sink);
                    g.link(r, i, s);
                }
            }
            Topology::FanIn(_) => {
                let srcs: Vec<usize> = (0..sources)
                    .map(|i| g.add(&format!("gen{i}"), Kind::Source { count: share(i) }))
                    .collect();
                let sink = g.add("sink", Kind::Sink);
                for s in srcs {
                    g.link(s, 0, sink);
                }
            }
            Topology::Diamond => {
                let src = g.add("gen", Kind::Source { count: share(0) });
                let r = g.add("router", Kind::Broadcast(2));
                g.link(src, 0, r);
                let a = g.add("fwd-a", Kind::Forward);
                let b = g.add("fwd-b", Kind::Forward);
                g.link(r, 0, a);
                g.link(r, 1, b);
                let sink = g.add("sink", Kind::Sink);
                g.link(a, 0, sink);
                g.link(b, 0, sink);
            }
        }
        g
    }

    fn add(&mut self, name: &str, kind: Kind) -> usize {
        self.nodes.push(Node {
            name: name.to_string(),
            kind,
        });
        self.nodes.len() - 1
    }

    fn link(&mut self, from: usize, port: usize, to: usize) {
        self.edges.push(Edge { from, port, to });
    }

    /// Indices of the sink nodes.
    pub fn sinks(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].kind == Kind::Sink)
            .collect()
    }

    /// Elements sink `sink` receives per element created (2 for the
    /// diamond's sink): paths from the sources, weighted by their shares.
    pub fn deliveries_per_element(&self, sink: usize) -> f64 {
        let (mut weighted, mut total) = (0.0, 0.0);
        for (i, n) in self.nodes.iter().enumerate() {
            if let Kind::Source { count } = n.kind {
                weighted += count as f64 * self.paths(i, sink) as f64;
                total += count as f64;
            }
        }
        if total == 0.0 {
            0.0
        } else {
            weighted / total
        }
    }

    fn paths(&self, from: usize, to: usize) -> u64 {
        if from == to {
            return 1;
        }
        self.edges
            .iter()
            .filter(|e| e.from == from)
            .map(|e| self.paths(e.to, to))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(topology: Topology) -> Workload {
        Workload {
            topology,
            size: 64,
            count: 101,
            rate: None,
            capacity: 1024,
        }
    }

    #[test]
    fn graphs() {
        let g = Graph::of(&w(Topology::Chain(3)));
        let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["gen", "fwd1", "fwd2", "sink"]);
        assert_eq!(g.edges.len(), 3);

        let g = Graph::of(&w(Topology::Diamond));
        assert_eq!(g.deliveries_per_element(g.sinks()[0]), 2.0);

        let g = Graph::of(&w(Topology::FanIn(2)));
        let counts: Vec<u64> = g
            .nodes
            .iter()
            .filter_map(|n| match n.kind {
                Kind::Source { count } => Some(count),
                _ => None,
            })
            .collect();
        assert_eq!(counts, [51, 50]);
        assert_eq!(g.deliveries_per_element(g.sinks()[0]), 1.0);

        let g = Graph::of(&w(Topology::FanOut(4)));
        assert_eq!(g.sinks().len(), 4);
    }

    #[test]
    fn names_are_unique() {
        for (i, s) in ALL.iter().enumerate() {
            assert!(ALL[..i].iter().all(|o| o.name != s.name), "{}", s.name);
        }
    }
}

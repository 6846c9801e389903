//! The pipeline as a picture: Graphviz DOT or Mermaid, edges labelled with
//! their ports (tributary prints its network the same way).

use std::fmt::Write;

use crate::stage::Role;
use crate::topology::Plan;

/// Output format of [`render`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    /// Graphviz DOT (`dataplane graph ... | dot -Tsvg > pipeline.svg`).
    Dot,
    /// Mermaid flowchart (renders in GitHub Markdown).
    Mermaid,
}

fn shape(role: Role) -> &'static str {
    match role {
        Role::Source => "invhouse",
        Role::Router => "diamond",
        Role::Processor => "box",
        Role::Sink => "house",
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn mermaid_id(i: usize) -> String {
    format!("n{i}")
}

/// Renders the validated pipeline, with each node's component, role and
/// core, and each edge's ports and ring capacity.
pub fn render(p: &Plan, format: GraphFormat) -> String {
    let mut out = String::new();
    let placement = p.placement();
    let core_of = |name: &str| placement.iter().find(|e| e.stage == name).map(|e| e.core);
    match format {
        GraphFormat::Dot => {
            out.push_str("digraph pipeline {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n");
            for n in p.nodes() {
                let core = core_of(&n.name).map_or(String::new(), |c| format!("\\ncore {c}"));
                let _ = writeln!(
                    out,
                    "  \"{}\" [shape={}, label=\"{}\\n{} ({}){}\"];",
                    dot_escape(&n.name),
                    shape(n.stage.role()),
                    dot_escape(&n.name),
                    dot_escape(&n.component),
                    n.stage.role(),
                    core
                );
            }
            for e in p.edges() {
                let from = &p.nodes()[e.from];
                let port = &from.stage.output_ports()[e.port];
                let style = if port == crate::stage::ERROR_PORT {
                    ", style=dashed, color=red"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "  \"{}\" -> \"{}\" [label=\"{} -> input\\ncap {}\"{}];",
                    dot_escape(&from.name),
                    dot_escape(&p.nodes()[e.to].name),
                    dot_escape(port),
                    e.capacity,
                    style
                );
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (i, n) in p.nodes().iter().enumerate() {
                let label = format!("{}<br/>{} ({})", n.name, n.component, n.stage.role())
                    .replace('"', "'");
                let (open, close) = match n.stage.role() {
                    Role::Source => ("([", "])"),
                    Role::Router => ("{", "}"),
                    Role::Processor => ("[", "]"),
                    Role::Sink => ("[(", ")]"),
                };
                let _ = writeln!(out, "  {}{open}\"{label}\"{close}", mermaid_id(i));
            }
            for e in p.edges() {
                let port = &p.nodes()[e.from].stage.output_ports()[e.port];
                let _ = writeln!(
                    out,
                    "  {} -- \"{}\" --> {}",
                    mermaid_id(e.from),
                    port.replace('"', "'"),
                    mermaid_id(e.to)
                );
            }
        }
    }
    out
}

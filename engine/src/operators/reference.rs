//! The component reference: what `dataplane list` prints, as text for a
//! terminal or as the Markdown the README's "Component reference" holds.
//! Both come from the registry, whose parameter docs come from each
//! component's parameter struct ([`params!`](super::params::params)).

use std::fmt::Write;

use super::Registry;
use crate::stage::Role;

/// The roles in the order the reference lists them.
const ROLES: [Role; 4] = [Role::Source, Role::Router, Role::Processor, Role::Sink];

/// The ports every component of a role has.
fn ports(role: Role) -> &'static str {
    match role {
        Role::Source => "out: output, error (optional: elements whose event_time cannot be read)",
        Role::Router => "in: input; out: the ports named in its parameters, error (optional)",
        Role::Processor => "in: input; out: output, error (optional)",
        Role::Sink => "in: input; out: error (optional: what it could not deliver)",
    }
}

/// Keys any node may set besides its component's parameters.
const ENGINE_KEYS: &str = "engine keys of any node: core, description, targets (sinks), restart; \
     of sources: event_time = { field, unit = \"ms\" | \"s\" | \"rfc3339\" }, \
     watermark = { max_out_of_orderness_ms, idle_timeout_ms }";

/// The reference for a terminal: components by role, each with its
/// parameters in one aligned column.
pub fn text(registry: &Registry) -> String {
    let mut out = String::new();
    for role in ROLES {
        let _ = writeln!(out, "{role}s ({})", ports(role));
        for (name, c) in registry.iter().filter(|(_, c)| c.role == role) {
            let _ = writeln!(out, "  {name:<16} {}", c.summary);
            let width = c.params.iter().map(|p| p.name().len()).max().unwrap_or(0);
            for p in c.params {
                let _ = writeln!(out, "      {:<width$} {}", p.name(), p.doc());
            }
        }
        out.push('\n');
    }
    out.push_str(ENGINE_KEYS);
    out.push('\n');
    out
}

/// The reference as Markdown: a section per role, a table per component.
pub fn markdown(registry: &Registry) -> String {
    let mut out = String::new();
    for role in ROLES {
        let _ = writeln!(
            out,
            "#### {}s\n\nPorts: {}.\n",
            capitalized(role),
            ports(role)
        );
        for (name, c) in registry.iter().filter(|(_, c)| c.role == role) {
            let _ = writeln!(out, "**`{name}`**: {}\n", escape(c.summary));
            if c.params.is_empty() {
                out.push_str("No parameters.\n\n");
                continue;
            }
            out.push_str("| parameter | meaning |\n|---|---|\n");
            for p in c.params {
                let _ = writeln!(out, "| `{}` | {} |", p.name(), escape(&p.doc()));
            }
            out.push('\n');
        }
    }
    let _ = writeln!(
        out,
        "Any node: {}.",
        escape(ENGINE_KEYS.trim_start_matches("engine keys of any node: "))
    );
    out
}

fn capitalized(role: Role) -> String {
    let name = role.to_string();
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => name,
    }
}

/// Table cells: `|` would end the cell.
fn escape(text: &str) -> String {
    text.replace('|', "\\|")
}

//! `route-by-field`: routes JSON elements by the value of a top-level field.

use std::collections::HashMap;

use serde::Deserialize;

use crate::operators::json::find_field;
use crate::operators::params::params;
use crate::stage::{Element, PortMask, Reason, Router, StageError};

/// Routes by a field's value through a table built once: value -> ports.
pub struct RouteByField {
    field: String,
    table: Table,
    unmatched: PortMask,
    missing: PortMask,
}

/// Value -> ports. Route tables are usually a handful of entries, where
/// comparing the bytes of each (length first) is cheaper than hashing the
/// value with SipHash; large tables use a hash map.
enum Table {
    Few(Vec<(String, PortMask)>),
    Many(HashMap<String, PortMask>),
}

/// Above this many routes, the table hashes.
const LINEAR_MAX: usize = 16;

impl Table {
    fn new(entries: Vec<(String, PortMask)>) -> Table {
        if entries.len() <= LINEAR_MAX {
            Table::Few(entries)
        } else {
            Table::Many(entries.into_iter().collect())
        }
    }

    #[inline]
    fn get(&self, value: &str) -> Option<PortMask> {
        match self {
            Table::Few(entries) => entries.iter().find(|(v, _)| v == value).map(|(_, m)| *m),
            Table::Many(map) => map.get(value).copied(),
        }
    }
}

impl Router for RouteByField {
    fn route(&mut self, element: &Element<'_>, ports: &mut PortMask) -> Result<(), StageError> {
        let lookup = find_field(element.payload(), &self.field)
            .map_err(|e| StageError::Rejected(Reason::new("invalid JSON", e.to_string())))?;
        *ports = match lookup.field {
            Some(f) => self
                .table
                .get(f.as_text().as_ref())
                .unwrap_or(self.unmatched),
            None => self.missing,
        };
        Ok(())
    }
}

/// Where a value goes: one port, several, `"broadcast"` (all ports) or
/// `"drop"`.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub(crate) enum Target {
    One(String),
    Many(Vec<String>),
}

impl Target {
    fn names(&self) -> Vec<&str> {
        match self {
            Target::One(s) => vec![s.as_str()],
            Target::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

params! {
    /// Parameters of `route-by-field`.
    pub(crate) struct RouteParams {
        /// top-level field to route on
        field: String,
        /// table: value = port or [ports]
        routes: toml::map::Map<String, toml::Value>,
        /// ports for other values, "broadcast" (default) or "drop"
        #[serde(default)]
        unmatched: Option<Target>,
        /// ports when the field is absent (default: as unmatched)
        #[serde(default)]
        missing: Option<Target>,
        /// extra output ports to declare
        #[serde(default)]
        ports: Vec<String>,
    }
}

pub(crate) fn build(p: RouteParams) -> Result<(RouteByField, Vec<String>), String> {
    let mut ports: Vec<String> = Vec::new();
    let declare = |name: &str, ports: &mut Vec<String>| {
        if !ports.iter().any(|p| p == name) {
            ports.push(name.to_string());
        }
    };
    let mut routes = Vec::new();
    for (value, target) in p.routes {
        let target: Target = target
            .try_into()
            .map_err(|_| format!("routes.{value}: expected a port name or a list of port names"))?;
        for name in target.names() {
            if name == "broadcast" || name == "drop" {
                return Err(format!("routes.{value}: '{name}' is reserved; name a port"));
            }
            declare(name, &mut ports);
        }
        routes.push((value, target));
    }
    for name in &p.ports {
        declare(name, &mut ports);
    }
    for t in [&p.unmatched, &p.missing].into_iter().flatten() {
        for name in t.names() {
            if name != "broadcast" && name != "drop" {
                declare(name, &mut ports);
            }
        }
    }
    if ports.is_empty() {
        return Err("routes must name at least one port".to_string());
    }
    if ports.len() > PortMask::MAX_PORTS {
        return Err(format!("at most {} ports", PortMask::MAX_PORTS));
    }
    let mask_of = |t: &Target| -> PortMask {
        let mut m = PortMask::default();
        for name in t.names() {
            match name {
                "broadcast" => m = PortMask::all(ports.len()),
                "drop" => {}
                n => m.add(ports.iter().position(|p| p == n).expect("declared")),
            }
        }
        m
    };
    let table = Table::new(
        routes
            .iter()
            .map(|(v, t)| (v.clone(), mask_of(t)))
            .collect(),
    );
    let unmatched = p
        .unmatched
        .as_ref()
        .map_or(PortMask::all(ports.len()), &mask_of);
    let missing = p.missing.as_ref().map_or(unmatched, mask_of);
    Ok((
        RouteByField {
            field: p.field,
            table,
            unmatched,
            missing,
        },
        ports,
    ))
}

#[cfg(test)]
mod table_tests {
    use super::*;

    /// Small tables scan, large ones hash: both give the same answers.
    #[test]
    fn few_and_many_routes_agree() {
        for n in [1usize, 3, LINEAR_MAX, LINEAR_MAX + 1, 40] {
            let entries: Vec<(String, PortMask)> = (0..n)
                .map(|i| (format!("v{i}"), PortMask(1 << (i % 64))))
                .collect();
            let table = Table::new(entries.clone());
            assert_eq!(matches!(table, Table::Few(_)), n <= LINEAR_MAX);
            for (v, m) in &entries {
                assert_eq!(table.get(v), Some(*m), "n={n} {v}");
            }
            assert_eq!(table.get("absent"), None);
            assert_eq!(table.get(""), None);
        }
    }
}

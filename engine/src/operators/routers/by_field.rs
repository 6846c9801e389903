//! `route-by-field`: routes JSON elements by the value of a top-level field.

use std::collections::HashMap;

use serde::Deserialize;

use crate::operators::json::{
    find_field, find_value_flat, find_value_rest, short_eq, simd, Detect, Isa, JsonError, OneBlock,
    RawValue, Simd,
};
use crate::operators::params::params;
use crate::stage::{Element, Inbox, PortMask, Reason, Router, StageError};

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

    /// [`Table::get`] on bytes not known to be UTF-8: an entry they equal
    /// is, so a match means the same as `get` on that text.
    #[inline(always)]
    fn get_bytes(&self, value: &[u8]) -> Option<PortMask> {
        match self {
            Table::Few(entries) => {
                for (v, mask) in entries {
                    if short_eq(v.as_bytes(), value) {
                        return Some(*mask);
                    }
                }
                None
            }
            Table::Many(map) => std::str::from_utf8(value)
                .ok()
                .and_then(|v| map.get(v).copied()),
        }
    }
}

impl RouteByField {
    /// Where `payload` goes, decided as [`find_field`] and
    /// [`Field::as_text`](crate::operators::json::Field::as_text) decide
    /// it, without decoding a value that needs none: a string without
    /// escapes, or not a string, is compared as bytes (bytes equal to an
    /// entry are UTF-8), and only checked to be UTF-8 when no entry
    /// matches. An invalid document takes the full path for the error
    /// `find_field` gives.
    #[inline(always)]
    fn ports_for<I: Isa>(&self, isa: I, payload: &[u8]) -> Result<PortMask, JsonError> {
        let found = match find_value_flat(isa, payload, &self.field) {
            Ok(found) => found,
            Err(rest) => return self.ports_rest(payload, rest),
        };
        self.ports_of(payload, found)
    }

    /// [`RouteByField::ports_for`] where the flat walk did not decide.
    #[inline(never)]
    fn ports_rest(&self, payload: &[u8], rest: OneBlock) -> Result<PortMask, JsonError> {
        let Ok(found) = find_value_rest(payload, &self.field, rest) else {
            return self.ports_slow(payload);
        };
        self.ports_of(payload, found)
    }

    /// The ports for the value `found` in `payload`.
    #[inline(always)]
    fn ports_of(&self, payload: &[u8], found: Option<RawValue<'_>>) -> Result<PortMask, JsonError> {
        let Some(value) = found else {
            return Ok(self.missing);
        };
        if let Some(text) = value.plain_text() {
            return match self.table.get_bytes(text) {
                Some(mask) => Ok(mask),
                None if value.is_utf8() => Ok(self.unmatched),
                None => self.ports_slow(payload),
            };
        }
        match value.field() {
            Some(f) => Ok(self.table.get(&f.as_text()).unwrap_or(self.unmatched)),
            None => self.ports_slow(payload),
        }
    }

    /// The full path: [`find_field`] (the value checked as UTF-8), then the
    /// value unescaped.
    #[cold]
    fn ports_slow(&self, payload: &[u8]) -> Result<PortMask, JsonError> {
        let lookup = find_field(payload, &self.field)?;
        Ok(match lookup.field {
            Some(f) => self
                .table
                .get(f.as_text().as_ref())
                .unwrap_or(self.unmatched),
            None => self.missing,
        })
    }
}

impl Router for RouteByField {
    fn route(&mut self, element: &Element<'_>, ports: &mut PortMask) -> Result<(), StageError> {
        self.route_with(Detect, element, ports)
    }

    fn route_batch(&mut self, inbox: &mut Inbox<'_, '_>) {
        // The loop compiled for AVX2 where the CPU has it, the JSON
        // scanner's block classifier inlined into it.
        simd(Batch(self, inbox))
    }
}

impl RouteByField {
    /// [`Router::route`], classifying with `isa`.
    #[inline(always)]
    fn route_with<I: Isa>(
        &mut self,
        isa: I,
        element: &Element<'_>,
        ports: &mut PortMask,
    ) -> Result<(), StageError> {
        match self.ports_for(isa, element.payload()) {
            Ok(mask) => {
                *ports = mask;
                Ok(())
            }
            Err(e) => Err(invalid(e)),
        }
    }
}

/// A batch to route, run by [`simd`].
struct Batch<'r, 'i, 'b, 'l>(&'r mut RouteByField, &'i mut Inbox<'b, 'l>);

impl Simd for Batch<'_, '_, '_, '_> {
    type Out = ();

    #[inline(always)]
    fn run<I: Isa>(self, isa: I) {
        let Batch(router, inbox) = self;
        inbox.route_each(|element, ports| router.route_with(isa, element, ports));
    }
}

/// The rejection of a payload that is not one valid JSON object.
#[cold]
#[inline(never)]
fn invalid(e: JsonError) -> StageError {
    StageError::Rejected(Reason::new("invalid JSON", e.to_string()))
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
    use crate::operators::json::Baseline;

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

    fn router(routes: &str) -> RouteByField {
        let p: RouteParams = toml::from_str(&format!(
            "field = \"type\"\nunmatched = \"other\"\nmissing = \"none\"\n[routes]\n{routes}"
        ))
        .unwrap();
        build(p).unwrap().0
    }

    /// The byte-level fast path decides as the full path (`find_field`,
    /// then the unescaped text) on every kind of value: plain and escaped
    /// strings, non-ASCII, invalid UTF-8, numbers, containers, and broken
    /// documents (the same error message).
    #[test]
    fn fast_path_agrees_with_the_full_path() {
        let few = router("metric = \"m\"\n\"é\" = \"e\"\n42 = \"n\"\n'{\"a\":1}' = \"o\"");
        let many = router(
            &(0..LINEAR_MAX + 2)
                .map(|i| format!("v{i} = \"p{}\"\n", i % 3))
                .chain(["metric = \"m\"\n\"é\" = \"e\"\n".to_string()])
                .collect::<String>(),
        );
        let values: [&[u8]; 16] = [
            b"\"metric\"",
            b"\"m\\u0065tric\"",
            b"\"metrics\"",
            b"\"\xc3\xa9\"",
            b"\"\\u00e9\"",
            b"\"\xff\"",
            b"\"metric\xff\"",
            b"42",
            b"42.0",
            b"{\"a\":1}",
            b"{\"a\":\"\xff\"}",
            b"\"v3\"",
            b"\"v\\u0033\"",
            b"\"\"",
            b"null",
            b"\"metric",
        ];
        for r in [&few, &many] {
            for v in values {
                for (pre, post) in [
                    ("", ""),
                    ("\"a\":1,", ""),
                    ("", ",\"b\":x"),
                    ("", ",\"type\":1"),
                ] {
                    let mut doc = format!("{{{pre}\"type\":").into_bytes();
                    doc.extend_from_slice(v);
                    doc.extend_from_slice(format!("{post}}}").as_bytes());
                    let fast = ports_every_way(r, &doc);
                    let full = r.ports_slow(&doc).map_err(|e| e.to_string());
                    assert_eq!(fast, full, "{}", String::from_utf8_lossy(&doc));
                }
            }
            assert_eq!(ports_every_way(r, b"{\"x\":1}").unwrap(), r.missing);
        }
        // The cases above reach every outcome.
        let m = |d: &[u8]| ports_every_way(&few, d).unwrap();
        assert_eq!(m(br#"{"type":"metric"}"#), PortMask(1));
        assert_eq!(m(br#"{"type":"m\u0065tric"}"#), PortMask(1));
        assert_eq!(m(br#"{"type":42}"#), PortMask(1 << 2));
        assert_eq!(m(br#"{"type":"nope"}"#), few.unmatched);
        assert!(ports_every_way(&few, b"{\"type\":\"\xff\"}").is_err());
    }

    /// `ports_for` with each classifier: detected per block, the baseline,
    /// and whatever `simd` picks (AVX2 on a CPU with it); all agree.
    fn ports_every_way(r: &RouteByField, doc: &[u8]) -> Result<PortMask, String> {
        struct Picked<'a>(&'a RouteByField, &'a [u8]);
        impl Simd for Picked<'_> {
            type Out = Result<PortMask, String>;
            fn run<I: Isa>(self, isa: I) -> Self::Out {
                self.0.ports_for(isa, self.1).map_err(|e| e.to_string())
            }
        }
        let detected = r.ports_for(Detect, doc).map_err(|e| e.to_string());
        let baseline = r.ports_for(Baseline, doc).map_err(|e| e.to_string());
        let picked = simd(Picked(r, doc));
        let doc = String::from_utf8_lossy(doc);
        assert_eq!(detected, baseline, "{doc}");
        assert_eq!(detected, picked, "{doc}");
        detected
    }
}

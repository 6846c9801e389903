//! Routers that do not look at a value's meaning: `route-by-hash`
//! (partitioning by a key), `round-robin` and `broadcast`.

use crate::operators::json::find_field;
use crate::operators::params::params;
use crate::operators::util::fnv1a64;
use crate::stage::{Element, PortMask, Reason, Router, StageError};

fn check_ports(ports: &[String]) -> Result<(), String> {
    if ports.is_empty() {
        return Err("ports must name at least one port".to_string());
    }
    if ports.len() > PortMask::MAX_PORTS {
        return Err(format!("at most {} ports", PortMask::MAX_PORTS));
    }
    for (i, p) in ports.iter().enumerate() {
        if ports[..i].contains(p) {
            return Err(format!("port '{p}' is listed twice"));
        }
        if p == crate::stage::ERROR_PORT {
            return Err("'error' is the reserved error port".to_string());
        }
    }
    Ok(())
}

/// What to do with an element that lacks the key field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Missing {
    /// Reject it (to the `error` port, or dropped with the reason).
    Reject,
    /// Send it to this port.
    Port(usize),
    /// Drop it.
    Drop,
}

/// Partitions by a key: each element goes to port
/// `fnv1a64(key text) % ports`, so one key always lands on the same port,
/// on every run and machine (FNV-1a 64 is a fixed, published function).
/// The key text is a JSON string's unescaped value, or any other value as
/// written.
pub struct RouteByHash {
    field: String,
    n: u64,
    missing: Missing,
}

impl RouteByHash {
    /// The port index for a key's text.
    pub fn port_of(key: &[u8], ports: usize) -> usize {
        (fnv1a64(key) % ports as u64) as usize
    }
}

impl Router for RouteByHash {
    fn route(&mut self, element: &Element<'_>, ports: &mut PortMask) -> Result<(), StageError> {
        let lookup = find_field(element.payload(), &self.field)
            .map_err(|e| StageError::Rejected(Reason::new("invalid JSON", e.to_string())))?;
        match (lookup.field, self.missing) {
            (Some(f), _) => ports.add((fnv1a64(f.as_text().as_bytes()) % self.n) as usize),
            (None, Missing::Port(p)) => ports.add(p),
            (None, Missing::Drop) => {}
            (None, Missing::Reject) => {
                return Err(StageError::Rejected(Reason::new(
                    "missing field",
                    self.field.clone(),
                )))
            }
        }
        Ok(())
    }
}

params! {
    /// Parameters of `route-by-hash`.
    pub(crate) struct HashParams {
        /// top-level key field
        field: String,
        /// output ports, in partition order
        ports: Vec<String>,
        /// without the field: "error" (reject, default), "drop" or a port
        missing: Option<String>,
    }
}

pub(crate) fn build_hash(p: HashParams) -> Result<(RouteByHash, Vec<String>), String> {
    check_ports(&p.ports)?;
    let missing = match p.missing.as_deref() {
        None | Some("error") => Missing::Reject,
        Some("drop") => Missing::Drop,
        Some(port) => Missing::Port(p.ports.iter().position(|q| q == port).ok_or_else(|| {
            format!("missing: '{port}' is not one of ports (or \"error\", \"drop\")")
        })?),
    };
    Ok((
        RouteByHash {
            field: p.field,
            n: p.ports.len() as u64,
            missing,
        },
        p.ports,
    ))
}

/// Sends each element to the next port in turn. Looks at no payload, so
/// any bytes pass.
pub struct RoundRobin {
    n: usize,
    next: usize,
}

impl Router for RoundRobin {
    #[inline]
    fn route(&mut self, _element: &Element<'_>, ports: &mut PortMask) -> Result<(), StageError> {
        ports.add(self.next);
        self.next = (self.next + 1) % self.n;
        Ok(())
    }
}

/// Sends every element to every port: one slot, its refcount raised, no
/// copy.
pub struct Broadcast {
    all: PortMask,
}

impl Router for Broadcast {
    #[inline]
    fn route(&mut self, _element: &Element<'_>, ports: &mut PortMask) -> Result<(), StageError> {
        *ports = self.all;
        Ok(())
    }
}

params! {
    /// Parameters of `round-robin` and `broadcast`.
    pub(crate) struct PortsParams {
        /// output ports
        ports: Vec<String>,
    }
}

pub(crate) fn build_round_robin(p: PortsParams) -> Result<(RoundRobin, Vec<String>), String> {
    check_ports(&p.ports)?;
    Ok((
        RoundRobin {
            n: p.ports.len(),
            next: 0,
        },
        p.ports,
    ))
}

pub(crate) fn build_broadcast(p: PortsParams) -> Result<(Broadcast, Vec<String>), String> {
    check_ports(&p.ports)?;
    Ok((
        Broadcast {
            all: PortMask::all(p.ports.len()),
        },
        p.ports,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::Harness;

    fn ports(names: &[&str]) -> Vec<String> {
        names.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn hash_is_stable_and_spreads() {
        let (mut r, names) = build_hash(HashParams {
            field: "user".into(),
            ports: ports(&["p0", "p1", "p2"]),
            missing: None,
        })
        .unwrap();
        assert_eq!(names.len(), 3);
        let mut h = Harness::new(128);
        let mut counts = [0; 3];
        for i in 0..300 {
            let doc = format!(r#"{{"user":"u{i}"}}"#);
            let m = h.route(&mut r, doc.as_bytes()).unwrap();
            let p: Vec<usize> = m.iter().collect();
            assert_eq!(p.len(), 1);
            assert_eq!(p[0], RouteByHash::port_of(format!("u{i}").as_bytes(), 3));
            counts[p[0]] += 1;
        }
        assert!(counts.iter().all(|&c| c > 60), "{counts:?}");
        // Pinned values: FNV-1a 64 must never change between releases.
        assert_eq!(
            RouteByHash::port_of(b"a", 3),
            (0xaf63_dc4c_8601_ec8c_u64 % 3) as usize
        );
        // Numbers hash as written; strings by their unescaped text.
        let a = h.route(&mut r, br#"{"user":"\u0061"}"#).unwrap();
        assert_eq!(a, h.route(&mut r, br#"{"user":"a"}"#).unwrap());
        assert!(matches!(
            h.route(&mut r, br#"{"x":1}"#),
            Err(StageError::Rejected(e)) if e.kind == "missing field"
        ));
        assert!(h.route(&mut r, b"\xff").is_err());
    }

    #[test]
    fn hash_missing_policies() {
        let build = |m: &str| {
            build_hash(HashParams {
                field: "k".into(),
                ports: ports(&["a", "b"]),
                missing: Some(m.into()),
            })
        };
        let mut h = Harness::new(64);
        let (mut r, _) = build("b").unwrap();
        assert_eq!(h.route(&mut r, b"{}").unwrap(), PortMask(0b10));
        let (mut r, _) = build("drop").unwrap();
        assert!(h.route(&mut r, b"{}").unwrap().is_empty());
        assert!(build("zz").is_err());
    }

    #[test]
    fn round_robin_and_broadcast() {
        let mut h = Harness::new(64);
        let (mut rr, _) = build_round_robin(PortsParams {
            ports: ports(&["a", "b", "c"]),
        })
        .unwrap();
        let seq: Vec<u64> = (0..7).map(|_| h.route(&mut rr, b"x").unwrap().0).collect();
        assert_eq!(seq, [1, 2, 4, 1, 2, 4, 1]);
        let (mut b, _) = build_broadcast(PortsParams {
            ports: ports(&["a", "b"]),
        })
        .unwrap();
        assert_eq!(h.route(&mut b, b"not json").unwrap(), PortMask(0b11));
        assert!(build_broadcast(PortsParams { ports: vec![] }).is_err());
        assert!(build_broadcast(PortsParams {
            ports: ports(&["a", "a"])
        })
        .is_err());
    }
}

//! Routers: one input, named output ports. Each looks at an element and
//! sets the ports it goes to ([`Router::route`](crate::stage::Router::route));
//! sending one element to several ports shares its slot (a refcount bump).
//!
//! - [`by_field`]: `route-by-field` (a field's value picks the ports).
//! - [`basic`]: `route-by-hash`, `round-robin`, `broadcast`.

pub(crate) mod basic;
pub(crate) mod by_field;

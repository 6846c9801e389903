//! Configuration errors: every problem found, each with its kind, where it
//! is, the node it concerns and, where one helps, a hint.
//!
//! The loader and the validation passes collect them all before giving up
//! (see [`passes`](super::passes)), so one run of `dataplane validate` lists
//! every mistake in a file. `validate` and `run` print them the same way and
//! exit 78 (`EX_CONFIG`):
//!
//! ```text
//! invalid pipeline: 2 errors (1 name, 1 bound)
//!   error: pipeline.toml:7:1: node 'out' (dicsard): unknown component 'dicsard' (known: ...)
//!     hint: did you mean 'discard'?
//!   error: pipeline.toml: engine: batch 9000000 is larger than the largest batch, 65536
//! ```

use std::fmt;

use crate::operators::util::closest;

/// What sort of mistake a [`ConfigError`] is, in the order the checks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The file is not TOML, or a value has the wrong TOML type.
    Syntax,
    /// A table the description needs is missing or misplaced (no flow, a
    /// node without `component`, targets on a source...).
    Structure,
    /// A name that is empty, used twice, or names nothing (a node, a
    /// component, a flow).
    Name,
    /// An edge or port that does not fit: an output used as an input, a
    /// port a node does not have, a port left unconnected.
    Port,
    /// A cycle in the graph.
    Cycle,
    /// A parameter of a node or of the engine that is not valid.
    Parameter,
    /// A size or count beyond what the engine or this machine allows (ring
    /// capacity, slot size, slot count, batch, arena bytes, cores).
    Bound,
    /// A resource that could not be opened when the run started (a socket
    /// already bound, say): found by `run`, never by `validate`.
    Resource,
    /// A `[[tests]]` block that cannot be run.
    Test,
}

impl ErrorKind {
    /// The kind's name, as printed in the error summary.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "syntax",
            ErrorKind::Structure => "structure",
            ErrorKind::Name => "name",
            ErrorKind::Port => "port",
            ErrorKind::Cycle => "cycle",
            ErrorKind::Parameter => "parameter",
            ErrorKind::Bound => "bound",
            ErrorKind::Resource => "resource",
            ErrorKind::Test => "test",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with a pipeline description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// What sort of problem it is.
    pub kind: ErrorKind,
    /// Where: `file:line:col`, a node, an edge... (empty when global).
    pub location: String,
    /// The node the problem is about, when there is one.
    pub node: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What would probably be right ("did you mean 'discard'?").
    pub hint: Option<String>,
}

macro_rules! kind_constructors {
    ($($(#[$doc:meta])* $fn:ident => $kind:ident,)*) => {
        impl ConfigError {
            $(
                $(#[$doc])*
                pub fn $fn(location: impl Into<String>, message: impl Into<String>) -> ConfigError {
                    ConfigError::new(ErrorKind::$kind, location, message)
                }
            )*
        }
    };
}

kind_constructors! {
    /// An [`ErrorKind::Syntax`] error.
    syntax => Syntax,
    /// An [`ErrorKind::Structure`] error.
    structure => Structure,
    /// An [`ErrorKind::Name`] error.
    name => Name,
    /// An [`ErrorKind::Port`] error.
    port => Port,
    /// An [`ErrorKind::Cycle`] error.
    cycle => Cycle,
    /// An [`ErrorKind::Parameter`] error.
    parameter => Parameter,
    /// An [`ErrorKind::Bound`] error.
    bound => Bound,
    /// An [`ErrorKind::Resource`] error.
    resource => Resource,
    /// An [`ErrorKind::Test`] error.
    test => Test,
}

impl ConfigError {
    /// A located error of `kind`.
    pub fn new(
        kind: ErrorKind,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            kind,
            location: location.into(),
            node: None,
            message: message.into(),
            hint: None,
        }
    }

    /// The same error, about node `name`.
    pub fn at_node(mut self, name: impl Into<String>) -> ConfigError {
        self.node = Some(name.into());
        self
    }

    /// The same error, with a hint (none when `hint` is `None`).
    pub fn with_hint(mut self, hint: Option<String>) -> ConfigError {
        self.hint = hint;
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.location, self.message)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n    hint: {hint}")?;
        }
        Ok(())
    }
}

/// `file:line:col` of a byte offset.
pub(crate) fn locate(file: &str, text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{file}:{line}:{col}")
}

/// A TOML syntax or shape error, located and on one line.
pub(crate) fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let loc = match e.span() {
        Some(span) => locate(file, text, span.start),
        None => file.to_string(),
    };
    let message: Vec<&str> = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    ConfigError::syntax(loc, message.join(": "))
}

/// "did you mean 'x'?" for a `name` close to one of `known`.
pub fn did_you_mean(name: &str, known: &[&str]) -> Option<String> {
    closest(name, known).map(|near| format!("did you mean '{near}'?"))
}

/// A hint for serde's "unknown field `x`, expected one of `a`, `b`" (or
/// "expected `a`"): the nearest expected field.
pub fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected")?.1;
    let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    did_you_mean(field, &known)
}

/// All problems found in a pipeline description (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// How many errors of each kind, in kind order.
    pub fn kinds(&self) -> Vec<(ErrorKind, usize)> {
        let mut counts = std::collections::BTreeMap::new();
        for e in &self.0 {
            *counts.entry(e.kind).or_insert(0) += 1;
        }
        counts.into_iter().collect()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        let kinds: Vec<String> = self
            .kinds()
            .into_iter()
            .map(|(k, c)| format!("{c} {k}"))
            .collect();
        writeln!(
            f,
            "invalid pipeline: {n} error{} ({})",
            if n == 1 { "" } else { "s" },
            kinds.join(", ")
        )?;
        for e in &self.0 {
            writeln!(f, "  error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_each_kind_and_hints_go_under_their_error() {
        let errors = ConfigErrors(vec![
            ConfigError::bound("f.toml: engine", "batch 0"),
            ConfigError::name("f.toml:3:1", "unknown component 'dicsard'")
                .at_node("out")
                .with_hint(Some("did you mean 'discard'?".into())),
            ConfigError::bound("f.toml: engine", "ring_capacity 0"),
        ]);
        assert_eq!(
            errors.to_string(),
            "invalid pipeline: 3 errors (1 name, 2 bound)\n\
             \x20 error: f.toml: engine: batch 0\n\
             \x20 error: f.toml:3:1: unknown component 'dicsard'\n\
             \x20   hint: did you mean 'discard'?\n\
             \x20 error: f.toml: engine: ring_capacity 0\n"
        );
        assert_eq!(errors.0[1].node.as_deref(), Some("out"));
    }

    #[test]
    fn serde_unknown_fields_get_the_nearest_expected_one() {
        let one_of = "unknown field `tempalte`, expected one of `template`, `count`, `size`";
        assert_eq!(
            unknown_field_hint(one_of).as_deref(),
            Some("did you mean 'template'?")
        );
        let only = "unknown field `cunt`, expected `count`";
        assert_eq!(
            unknown_field_hint(only).as_deref(),
            Some("did you mean 'count'?")
        );
        assert_eq!(
            unknown_field_hint("unknown field `zzzzzz`, expected `count`"),
            None
        );
        assert_eq!(unknown_field_hint("missing field `path`"), None);
    }
}

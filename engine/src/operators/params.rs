//! Component parameters, declared once.
//!
//! Each component's parameters are one struct written inside [`params!`]:
//! its fields are what a node may set, their doc comments are what
//! `dataplane list` and the README's component reference print. The macro
//! derives the parser (serde, unknown keys refused, so a misspelt key is an
//! error that names the known ones) and the docs from the same text, so the
//! three cannot drift apart; `tests/tests/cli.rs` fails when the README's
//! reference and `dataplane list --format markdown` disagree.

use serde::de::DeserializeOwned;

/// One parameter of a component, as `dataplane list` shows it.
#[derive(Clone, Copy, Debug)]
pub struct ParamDoc {
    field: &'static str,
    doc: &'static [&'static str],
}

impl ParamDoc {
    /// A parameter named after a struct field (`r#where` is `where`), with
    /// its doc comment's lines.
    pub const fn new(field: &'static str, doc: &'static [&'static str]) -> ParamDoc {
        ParamDoc { field, doc }
    }

    /// The key a node sets.
    pub fn name(&self) -> &'static str {
        self.field.strip_prefix("r#").unwrap_or(self.field)
    }

    /// The doc comment, on one line.
    pub fn doc(&self) -> String {
        let lines: Vec<&str> = self
            .doc
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        lines.join(" ")
    }
}

/// A component's parameters: parsed from the node's table, documented by
/// [`Params::DOCS`]. Implemented by [`params!`].
pub trait Params: DeserializeOwned {
    /// Every parameter, in declaration order.
    const DOCS: &'static [ParamDoc];
}

/// No parameters (a node of `forward`, `discard`, `mux` may set none).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

impl Params for NoParams {
    const DOCS: &'static [ParamDoc] = &[];
}

/// Declares a component's parameter struct: serde's `Deserialize` with
/// unknown fields refused, and [`Params`] with each field's doc comment.
/// Every field needs a doc comment (it is the user's documentation);
/// `#[serde(...)]` attributes go after it.
macro_rules! params {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])+
                $(#[serde($($serde:tt)*)])*
                $fvis:vis $field:ident : $ty:ty
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        $vis struct $name {
            $(
                $(#[doc = $doc])+
                $(#[serde($($serde)*)])*
                $fvis $field: $ty,
            )*
        }

        impl $crate::operators::params::Params for $name {
            const DOCS: &'static [$crate::operators::params::ParamDoc] = &[
                $($crate::operators::params::ParamDoc::new(stringify!($field), &[$($doc),+])),*
            ];
        }
    };
}
pub(crate) use params;

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    params! {
        /// A test component's parameters.
        struct Example {
            /// The field to read.
            field: String,
            /// How many, at most
            /// (default 3).
            #[serde(default)]
            max: Option<u32>,
            /// A keyword as a key.
            #[serde(default)]
            r#where: Option<String>,
        }
    }

    #[test]
    fn docs_come_from_the_fields() {
        let docs: Vec<(&str, String)> = Example::DOCS.iter().map(|d| (d.name(), d.doc())).collect();
        assert_eq!(
            docs,
            [
                ("field", "The field to read.".to_string()),
                ("max", "How many, at most (default 3).".to_string()),
                ("where", "A keyword as a key.".to_string()),
            ]
        );
    }

    #[test]
    fn unknown_keys_are_refused_naming_the_known_ones() {
        let table: toml::Table = toml::from_str("feild = \"x\"").unwrap();
        let err = Example::deserialize(toml::Value::Table(table))
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("unknown field `feild`, expected one of `field`, `max`, `where`"),
            "{err}"
        );
        let table: toml::Table = toml::from_str("field = \"x\"\nwhere = \"y\"").unwrap();
        let ok = Example::deserialize(toml::Value::Table(table)).expect("parsed");
        assert_eq!(
            (ok.field.as_str(), ok.max, ok.r#where.as_deref()),
            ("x", None, Some("y"))
        );
    }
}

//! Built-in processors: `set-field` and `forward`.

use crate::operators::json::set_field;
use crate::operators::params::params;
use crate::stage::{Element, Processor, Reason, StageError, Verdict};

/// Sets a top-level JSON field to a fixed value (replacing or appending it).
/// Writes in place when the element is not shared with another branch.
pub struct SetField {
    field: String,
    key_json: String,
    value_json: Vec<u8>,
    scratch: Vec<u8>,
}

impl SetField {
    /// Sets `field` to the JSON value `value`.
    pub fn new(field: &str, value: &serde_json::Value) -> SetField {
        SetField {
            field: field.to_string(),
            key_json: serde_json::to_string(field).expect("a string serializes"),
            value_json: serde_json::to_vec(value).expect("a JSON value serializes"),
            scratch: Vec::new(),
        }
    }
}

impl Processor for SetField {
    fn process(&mut self, element: &mut Element<'_>) -> Result<Verdict, StageError> {
        set_field(
            element.payload(),
            &self.field,
            &self.key_json,
            &self.value_json,
            &mut self.scratch,
        )
        .map_err(|e| StageError::Rejected(Reason::new("invalid JSON", e.to_string())))?;
        element.set_payload(&self.scratch)?;
        Ok(Verdict::Emit)
    }
}

params! {
    /// Parameters of `set-field`.
    pub(crate) struct SetFieldParams {
        /// field name
        field: String,
        /// any TOML value, written as JSON
        value: toml::Value,
    }
}

pub(crate) fn build_set_field(p: SetFieldParams) -> Result<SetField, String> {
    let value = serde_json::to_value(&p.value).map_err(|e| format!("value: {e}"))?;
    Ok(SetField::new(&p.field, &value))
}

/// Passes every element through unchanged.
pub struct Forward;

impl Processor for Forward {
    #[inline]
    fn process(&mut self, _element: &mut Element<'_>) -> Result<Verdict, StageError> {
        Ok(Verdict::Emit)
    }
}

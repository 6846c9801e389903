//! `remove-field` and `rename-field`: edit top-level members of JSON
//! elements. Both write in place when the element is not shared with
//! another branch (copy-on-write otherwise), through a scratch buffer kept
//! in the operator, so the hot path does not allocate.

use crate::operators::json::{find_members, remove_members, Member};
use crate::operators::params::params;
use crate::stage::{Element, Processor, Reason, StageError, Verdict};

fn invalid_json(e: impl ToString) -> StageError {
    StageError::Rejected(Reason::new("invalid JSON", e.to_string()))
}

/// Most fields one `remove-field` may remove.
pub const MAX_REMOVE: usize = 16;

/// Removes top-level fields; elements without them pass unchanged.
pub struct RemoveField {
    fields: Vec<String>,
    scratch: Vec<u8>,
}

impl RemoveField {
    /// Removes `fields` (at most [`MAX_REMOVE`]).
    pub fn new(fields: Vec<String>) -> Result<RemoveField, String> {
        if fields.is_empty() || fields.len() > MAX_REMOVE {
            return Err(format!("fields: name 1 to {MAX_REMOVE} fields"));
        }
        Ok(RemoveField {
            fields,
            scratch: Vec::new(),
        })
    }
}

impl Processor for RemoveField {
    fn process(&mut self, element: &mut Element<'_>) -> Result<Verdict, StageError> {
        let keys: [&str; MAX_REMOVE] =
            std::array::from_fn(|i| self.fields.get(i).map_or("", String::as_str));
        let n = self.fields.len();
        let mut found: [Option<Member<'_>>; MAX_REMOVE] = [None; MAX_REMOVE];
        let payload = element.payload();
        find_members(payload, &keys[..n], &mut found[..n]).map_err(invalid_json)?;
        if found[..n].iter().all(Option::is_none) {
            return Ok(Verdict::Emit);
        }
        remove_members(payload, &mut found[..n], &mut self.scratch);
        element.set_payload(&self.scratch)?;
        Ok(Verdict::Emit)
    }
}

/// Renames a top-level field, keeping its value and position. A field
/// already called `to` is replaced. Elements without `from` pass unchanged
/// (or are rejected, with `strict`).
pub struct RenameField {
    from: String,
    to: String,
    to_json: Vec<u8>,
    strict: bool,
    scratch: Vec<u8>,
    scratch2: Vec<u8>,
}

impl RenameField {
    /// Renames `from` to `to`.
    pub fn new(from: &str, to: &str, strict: bool) -> Result<RenameField, String> {
        if from == to {
            return Err("from and to name the same field".to_string());
        }
        Ok(RenameField {
            from: from.to_string(),
            to: to.to_string(),
            to_json: serde_json::to_vec(to).map_err(|e| e.to_string())?,
            strict,
            scratch: Vec::new(),
            scratch2: Vec::new(),
        })
    }
}

/// Writes `payload` with the key of member `m` replaced by `new_key_json`.
fn rename(payload: &[u8], m: &Member<'_>, new_key_json: &[u8], out: &mut Vec<u8>) {
    // Back from the value over whitespace, the ':' and whitespace: the byte
    // before is the key's closing quote.
    let mut i = m.value.start;
    while i > m.key_start && payload[i - 1].is_ascii_whitespace() {
        i -= 1;
    }
    debug_assert_eq!(payload.get(i - 1), Some(&b':'));
    i -= 1;
    while i > m.key_start && payload[i - 1].is_ascii_whitespace() {
        i -= 1;
    }
    out.clear();
    out.extend_from_slice(&payload[..m.key_start]);
    out.extend_from_slice(new_key_json);
    out.extend_from_slice(&payload[i..]);
}

impl Processor for RenameField {
    fn process(&mut self, element: &mut Element<'_>) -> Result<Verdict, StageError> {
        let payload = element.payload();
        let mut found = [None; 2];
        find_members(payload, &[&self.from, &self.to], &mut found).map_err(invalid_json)?;
        let Some(from) = found[0] else {
            if self.strict {
                return Err(StageError::Rejected(Reason::new(
                    "missing field",
                    self.from.clone(),
                )));
            }
            return Ok(Verdict::Emit);
        };
        match found[1] {
            None => rename(payload, &from, &self.to_json, &mut self.scratch),
            Some(to) => {
                // Drop the old `to` first, then rename in what is left.
                remove_members(payload, &mut [Some(to)], &mut self.scratch2);
                let mut again = [None];
                find_members(&self.scratch2, &[&self.from], &mut again).map_err(invalid_json)?;
                let from = again[0].ok_or_else(|| invalid_json("field vanished"))?;
                rename(&self.scratch2, &from, &self.to_json, &mut self.scratch);
            }
        }
        element.set_payload(&self.scratch)?;
        Ok(Verdict::Emit)
    }
}

params! {
    /// Parameters of `remove-field`.
    pub(crate) struct RemoveParams {
        /// names of the fields to remove
        fields: Vec<String>,
    }
}

pub(crate) fn build_remove(p: RemoveParams) -> Result<RemoveField, String> {
    RemoveField::new(p.fields)
}

params! {
    /// Parameters of `rename-field`.
    pub(crate) struct RenameParams {
        /// current name
        from: String,
        /// new name (an existing field of that name is replaced)
        to: String,
        /// reject elements without 'from' instead of passing them (default false)
        #[serde(default)]
        strict: bool,
    }
}

pub(crate) fn build_rename(p: RenameParams) -> Result<RenameField, String> {
    RenameField::new(&p.from, &p.to, p.strict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::Harness;

    fn renamed(doc: &str, from: &str, to: &str) -> String {
        let r = RenameField::new(from, to, false).unwrap();
        let mut found = [None; 2];
        find_members(doc.as_bytes(), &[from, to], &mut found).unwrap();
        let mut out = Vec::new();
        let mut tmp = Vec::new();
        match found[1] {
            None => rename(doc.as_bytes(), &found[0].unwrap(), &r.to_json, &mut out),
            Some(t) => {
                remove_members(doc.as_bytes(), &mut [Some(t)], &mut tmp);
                let mut again = [None];
                find_members(&tmp, &[from], &mut again).unwrap();
                rename(&tmp, &again[0].unwrap(), &r.to_json, &mut out);
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renames_keep_value_and_position() {
        assert_eq!(
            renamed(r#"{"a":1,"b":{"x":[1]},"c":3}"#, "b", "bee"),
            r#"{"a":1,"bee":{"x":[1]},"c":3}"#
        );
        assert_eq!(
            renamed(r#"{ "b\"q" : 2 }"#, "b\"q", "new"),
            r#"{ "new" : 2 }"#
        );
        assert_eq!(renamed(r#"{"a":1,"b":2}"#, "a", "b"), r#"{"b":1}"#);
        assert_eq!(renamed(r#"{"b":2,"a":1}"#, "a", "b"), r#"{"b":1}"#);
        assert!(RenameField::new("a", "a", false).is_err());
    }

    #[test]
    fn processors_edit_elements() {
        let mut h = Harness::new(256);
        let mut rm = RemoveField::new(vec!["b".into(), "zz".into()]).unwrap();
        let r = h.process(&mut rm, br#"{"a":1,"b":[2],"c":3}"#);
        assert_eq!(
            (r.verdict, r.payload),
            (Ok(Verdict::Emit), br#"{"a":1,"c":3}"#.to_vec())
        );
        let r = h.process(&mut rm, br#"{"a":1}"#);
        assert_eq!(r.payload, br#"{"a":1}"#, "untouched");
        assert!(h.process(&mut rm, b"{oops").verdict.is_err());

        let mut rn = RenameField::new("a", "x", false).unwrap();
        let r = h.process(&mut rn, br#"{"a":1,"x":0}"#);
        assert_eq!(r.payload, br#"{"x":1}"#);
        let r = h.process(&mut rn, br#"{"b":1}"#);
        assert_eq!(
            (r.verdict, r.payload),
            (Ok(Verdict::Emit), br#"{"b":1}"#.to_vec())
        );
        let mut strict = RenameField::new("a", "x", true).unwrap();
        assert!(matches!(
            h.process(&mut strict, br#"{"b":1}"#).verdict,
            Err(StageError::Rejected(r)) if r.kind == "missing field"
        ));
    }

    #[test]
    fn remove_needs_fields() {
        assert!(RemoveField::new(vec![]).is_err());
        assert!(RemoveField::new(vec!["a".into()]).is_ok());
    }
}

//! `filter`: keeps the JSON elements that satisfy a condition on their
//! top-level fields, drops the rest.
//!
//! The condition is a small tree given in TOML:
//!
//! ```toml
//! where = { field = "type", eq = "metric" }
//! where = { all = [ { field = "value", gt = 50 }, { not = { field = "host", contains = "test" } } ] }
//! where = { any = [ { field = "level", eq = "error" }, { field = "alert", exists = true } ] }
//! ```
//!
//! Every field the tree names is found in one pass over the payload (no
//! allocation); the tree is then evaluated on those spans.

use crate::operators::json::{find_members, Field, Member};
use crate::operators::params::params;
use crate::stage::{Element, Processor, Reason, StageError, Verdict};

/// Most distinct fields one filter may test.
pub const MAX_FIELDS: usize = 16;

/// A literal a field is compared with.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// Compared with the field's text (a JSON string unescaped, anything
    /// else as written).
    Str(String),
    /// Compared numerically (the field, or a string holding a number).
    Num(f64),
    /// `true` or `false`.
    Bool(bool),
}

/// A test on one field.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The field is present (`true`) or absent (`false`).
    Exists(bool),
    /// The field equals the literal.
    Eq(Literal),
    /// The field is present and differs from the literal.
    Ne(Literal),
    /// Numeric `>`.
    Gt(f64),
    /// Numeric `>=`.
    Ge(f64),
    /// Numeric `<`.
    Lt(f64),
    /// Numeric `<=`.
    Le(f64),
    /// The field's text contains this substring.
    Contains(String),
}

/// A condition tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    /// Every child holds (true when empty).
    All(Vec<Cond>),
    /// Some child holds (false when empty).
    Any(Vec<Cond>),
    /// The child does not hold.
    Not(Box<Cond>),
    /// A test on the field with this index in the filter's field list.
    Test(usize, Op),
}

/// Keeps elements whose fields satisfy a [`Cond`].
///
/// A missing field makes its test false (except `exists = false`), and so
/// does a numeric comparison with a non-number; with `strict`, either
/// rejects the element instead (to the `error` port). A payload that is not
/// a JSON object is always rejected.
pub struct Filter {
    fields: Vec<String>,
    cond: Cond,
    strict: bool,
}

/// Why a strict evaluation failed.
enum Bad {
    Missing(usize),
    NotANumber(usize),
}

impl Filter {
    /// A filter keeping what satisfies `cond`, whose tests index `fields`.
    pub fn new(fields: Vec<String>, cond: Cond, strict: bool) -> Result<Filter, String> {
        if fields.len() > MAX_FIELDS {
            return Err(format!(
                "a filter may test at most {MAX_FIELDS} distinct fields"
            ));
        }
        Ok(Filter {
            fields,
            cond,
            strict,
        })
    }

    /// Parses a condition given as a TOML value (the `where` parameter).
    pub fn from_toml(value: &toml::Value, strict: bool) -> Result<Filter, String> {
        let mut fields = Vec::new();
        let cond = parse_cond(value, "where", &mut fields)?;
        Filter::new(fields, cond, strict)
    }

    /// Parses a condition given as JSON (the same tree as the TOML form,
    /// e.g. `{"field":"type","eq":"metric"}`), as subscribers send it.
    pub fn from_json(text: &str) -> Result<Filter, String> {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("where: not JSON: {e}"))?;
        let value = toml::Value::try_from(&json)
            .map_err(|e| format!("where: not a condition tree: {e}"))?;
        Filter::from_toml(&value, false)
    }

    fn eval(&self, c: &Cond, found: &[Option<Member<'_>>]) -> Result<bool, Bad> {
        Ok(match c {
            Cond::All(cs) => {
                for c in cs {
                    if !self.eval(c, found)? {
                        return Ok(false);
                    }
                }
                true
            }
            Cond::Any(cs) => {
                for c in cs {
                    if self.eval(c, found)? {
                        return Ok(true);
                    }
                }
                false
            }
            Cond::Not(c) => !self.eval(c, found)?,
            Cond::Test(i, op) => {
                let field = found[*i].map(|m| m.value);
                if let Op::Exists(want) = op {
                    return Ok(field.is_some() == *want);
                }
                let Some(f) = field else {
                    return if self.strict {
                        Err(Bad::Missing(*i))
                    } else {
                        Ok(false)
                    };
                };
                let num = |f: &Field<'_>| match f.as_f64().filter(|v| v.is_finite()) {
                    Some(v) => Ok(Some(v)),
                    None if self.strict => Err(Bad::NotANumber(*i)),
                    None => Ok(None),
                };
                match op {
                    Op::Exists(_) => unreachable!("handled above"),
                    Op::Eq(l) => equals(&f, l),
                    Op::Ne(l) => !equals(&f, l),
                    Op::Gt(v) => num(&f)?.is_some_and(|x| x > *v),
                    Op::Ge(v) => num(&f)?.is_some_and(|x| x >= *v),
                    Op::Lt(v) => num(&f)?.is_some_and(|x| x < *v),
                    Op::Le(v) => num(&f)?.is_some_and(|x| x <= *v),
                    Op::Contains(s) => f.as_text().contains(s.as_str()),
                }
            }
        })
    }
}

fn equals(f: &Field<'_>, l: &Literal) -> bool {
    match l {
        Literal::Str(s) => f.as_text() == s.as_str(),
        Literal::Num(n) => f.as_f64() == Some(*n),
        Literal::Bool(b) => f.raw == if *b { "true" } else { "false" },
    }
}

impl Filter {
    /// Whether `payload` satisfies the condition; `Err` when the filter
    /// would reject it instead (not a JSON object, or with `strict` a
    /// missing field or a non-number). The test runner's `where` uses this
    /// too, so a test's predicate means what the `filter` component means.
    #[inline]
    pub fn matches(&self, payload: &[u8]) -> Result<bool, Reason> {
        let keys: [&str; MAX_FIELDS] =
            std::array::from_fn(|i| self.fields.get(i).map_or("", String::as_str));
        let mut found = [None; MAX_FIELDS];
        let n = self.fields.len();
        find_members(payload, &keys[..n], &mut found[..n])
            .map_err(|e| Reason::new("invalid JSON", e.to_string()))?;
        self.eval(&self.cond, &found[..n]).map_err(|bad| match bad {
            Bad::Missing(i) => Reason::new("missing field", self.fields[i].clone()),
            Bad::NotANumber(i) => Reason::new("not a number", self.fields[i].clone()),
        })
    }
}

impl Processor for Filter {
    fn process(&mut self, element: &mut Element<'_>) -> Result<Verdict, StageError> {
        match self.matches(element.payload()) {
            Ok(true) => Ok(Verdict::Emit),
            Ok(false) => Ok(Verdict::Drop),
            Err(reason) => Err(StageError::Rejected(reason)),
        }
    }
}

const OPS: &str = "eq, ne, gt, ge, lt, le, contains, exists";

fn parse_cond(v: &toml::Value, at: &str, fields: &mut Vec<String>) -> Result<Cond, String> {
    let t = v
        .as_table()
        .ok_or_else(|| format!("{at}: expected a table like {{ field = \"x\", eq = 1 }}"))?;
    let list = |key: &str, v: &toml::Value, fields: &mut Vec<String>| {
        let items = v
            .as_array()
            .ok_or_else(|| format!("{at}.{key}: expected an array of conditions"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, c)| parse_cond(c, &format!("{at}.{key}[{i}]"), fields))
            .collect::<Result<Vec<_>, _>>()
    };
    for combinator in ["all", "any", "not"] {
        if let Some(inner) = t.get(combinator) {
            if t.len() != 1 {
                return Err(format!(
                    "{at}: '{combinator}' must be the only key of its table"
                ));
            }
            return Ok(match combinator {
                "all" => Cond::All(list("all", inner, fields)?),
                "any" => Cond::Any(list("any", inner, fields)?),
                _ => Cond::Not(Box::new(parse_cond(inner, &format!("{at}.not"), fields)?)),
            });
        }
    }
    let field = t
        .get("field")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| {
            format!("{at}: expected 'field' (a name) and one of {OPS}, or 'all', 'any', 'not'")
        })?;
    let ops: Vec<(&String, &toml::Value)> = t.iter().filter(|(k, _)| *k != "field").collect();
    let [(op, value)] = ops[..] else {
        return Err(format!(
            "{at}: expected exactly one test ({OPS}) beside 'field'"
        ));
    };
    let number = || {
        value
            .as_float()
            .or_else(|| value.as_integer().map(|i| i as f64))
            .ok_or_else(|| format!("{at}.{op}: expected a number"))
    };
    let literal = || match value {
        toml::Value::String(s) => Ok(Literal::Str(s.clone())),
        toml::Value::Integer(i) => Ok(Literal::Num(*i as f64)),
        toml::Value::Float(f) => Ok(Literal::Num(*f)),
        toml::Value::Boolean(b) => Ok(Literal::Bool(*b)),
        _ => Err(format!("{at}.{op}: expected a string, number or boolean")),
    };
    let op = match op.as_str() {
        "exists" => Op::Exists(
            value
                .as_bool()
                .ok_or_else(|| format!("{at}.exists: expected true or false"))?,
        ),
        "eq" => Op::Eq(literal()?),
        "ne" => Op::Ne(literal()?),
        "gt" => Op::Gt(number()?),
        "ge" => Op::Ge(number()?),
        "lt" => Op::Lt(number()?),
        "le" => Op::Le(number()?),
        "contains" => Op::Contains(
            value
                .as_str()
                .ok_or_else(|| format!("{at}.contains: expected a string"))?
                .to_string(),
        ),
        other => return Err(format!("{at}: unknown test '{other}' (known: {OPS})")),
    };
    let index = match fields.iter().position(|f| f == field) {
        Some(i) => i,
        None => {
            fields.push(field.to_string());
            fields.len() - 1
        }
    };
    Ok(Cond::Test(index, op))
}

params! {
    /// Parameters of `filter`.
    pub(crate) struct FilterParams {
        /// { field = "f", <test> = value } with test eq, ne, gt, ge, lt, le,
        /// contains or exists; combine with { all = [..] }, { any = [..] }, { not =
        /// {..} }
        r#where: toml::Value,
        /// reject (to the error port) elements missing a tested field or with a
        /// non-number in a numeric test, instead of treating the test as false
        /// (default false)
        #[serde(default)]
        strict: bool,
    }
}

pub(crate) fn build(p: FilterParams) -> Result<Filter, String> {
    Filter::from_toml(&p.r#where, p.strict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::json::find_members;

    fn filter(spec: &str, strict: bool) -> Filter {
        let v: toml::Table = toml::from_str(spec).unwrap();
        Filter::from_toml(&v["where"], strict).unwrap()
    }

    fn keeps(f: &Filter, doc: &str) -> Result<bool, String> {
        let keys: Vec<&str> = f.fields.iter().map(String::as_str).collect();
        let mut found = [None; MAX_FIELDS];
        find_members(doc.as_bytes(), &keys, &mut found[..keys.len()]).map_err(|e| e.to_string())?;
        f.eval(&f.cond, &found[..keys.len()]).map_err(|b| match b {
            Bad::Missing(i) => format!("missing {}", f.fields[i]),
            Bad::NotANumber(i) => format!("nan {}", f.fields[i]),
        })
    }

    #[test]
    fn comparisons() {
        let eq = filter(r#"where = { field = "type", eq = "metric" }"#, false);
        assert_eq!(keeps(&eq, r#"{"type":"metric"}"#), Ok(true));
        assert_eq!(keeps(&eq, r#"{"type":"log"}"#), Ok(false));
        assert_eq!(keeps(&eq, r#"{"other":1}"#), Ok(false));
        let ne = filter(r#"where = { field = "type", ne = "metric" }"#, false);
        assert_eq!(keeps(&ne, r#"{"type":"log"}"#), Ok(true));
        assert_eq!(keeps(&ne, r#"{"type":"metric"}"#), Ok(false));
        assert_eq!(keeps(&ne, r#"{"x":1}"#), Ok(false), "missing is false");
        let gt = filter(r#"where = { field = "v", gt = 50 }"#, false);
        assert_eq!(keeps(&gt, r#"{"v":50.5}"#), Ok(true));
        assert_eq!(keeps(&gt, r#"{"v":50}"#), Ok(false));
        assert_eq!(keeps(&gt, r#"{"v":"75"}"#), Ok(true), "string number");
        assert_eq!(keeps(&gt, r#"{"v":"high"}"#), Ok(false));
        let le = filter(r#"where = { field = "v", le = -1.5 }"#, false);
        assert_eq!(keeps(&le, r#"{"v":-1.5}"#), Ok(true));
        let num_eq = filter(r#"where = { field = "v", eq = 3 }"#, false);
        assert_eq!(keeps(&num_eq, r#"{"v":3.0}"#), Ok(true));
        let b = filter(r#"where = { field = "ok", eq = true }"#, false);
        assert_eq!(keeps(&b, r#"{"ok":true}"#), Ok(true));
        assert_eq!(keeps(&b, r#"{"ok":"true"}"#), Ok(false));
        let c = filter(r#"where = { field = "msg", contains = "disk" }"#, false);
        assert_eq!(keeps(&c, r#"{"msg":"disk usage"}"#), Ok(true));
        assert_eq!(keeps(&c, r#"{"msg":"cpu"}"#), Ok(false));
        let ex = filter(r#"where = { field = "a", exists = false }"#, false);
        assert_eq!(keeps(&ex, r#"{"b":1}"#), Ok(true));
        assert_eq!(keeps(&ex, r#"{"a":null}"#), Ok(false));
    }

    #[test]
    fn combinators() {
        let f = filter(
            r#"where = { any = [
                { all = [ { field = "type", eq = "metric" }, { field = "value", ge = 50 } ] },
                { not = { field = "level", ne = "error" } },
            ] }"#,
            false,
        );
        assert_eq!(f.fields, ["type", "value", "level"]);
        assert_eq!(keeps(&f, r#"{"type":"metric","value":72.5}"#), Ok(true));
        assert_eq!(
            keeps(&f, r#"{"type":"metric","value":10,"level":"info"}"#),
            Ok(false)
        );
        // `ne` on a missing field is false, so `not` of it holds.
        assert_eq!(keeps(&f, r#"{"type":"metric","value":10}"#), Ok(true));
        assert_eq!(keeps(&f, r#"{"type":"log","level":"error"}"#), Ok(true));
        assert_eq!(keeps(&f, r#"{"type":"log","level":"info"}"#), Ok(false));
        let empty_all = filter("where = { all = [] }", false);
        assert_eq!(keeps(&empty_all, "{}"), Ok(true));
    }

    #[test]
    fn strict_rejects_missing_and_non_numbers() {
        let f = filter(r#"where = { field = "v", gt = 1 }"#, true);
        assert_eq!(keeps(&f, r#"{"w":1}"#), Err("missing v".into()));
        assert_eq!(keeps(&f, r#"{"v":"x"}"#), Err("nan v".into()));
        assert_eq!(keeps(&f, r#"{"v":2}"#), Ok(true));
        assert!(keeps(&f, "not json").is_err());
    }

    #[test]
    fn config_errors_name_the_place() {
        let err = |spec: &str| {
            let v: toml::Table = toml::from_str(spec).unwrap();
            Filter::from_toml(&v["where"], false).err().unwrap()
        };
        assert!(err(r#"where = { field = "a", gtt = 1 }"#).contains("unknown test 'gtt'"));
        assert!(err(r#"where = { field = "a", gt = "x" }"#).contains("where.gt: expected a number"));
        assert!(err(r#"where = { all = [ { field = "a" } ] }"#).contains("where.all[0]"));
        assert!(err(r#"where = { all = [], field = "a" }"#).contains("only key"));
        assert!(err(r#"where = "a > 1""#).contains("expected a table"));
    }
}

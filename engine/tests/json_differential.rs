//! Differential test: the hand-written JSON scanner behind
//! `operators::json::{find_field, find_members}` against the serde_json
//! walk it replaced (kept below as the reference), on generated objects and
//! on random byte mutations and truncations of them.
//!
//! Compared: accept/reject, field presence, raw value text, start offset,
//! key offset and the member count. `find_value` (the same lookup without
//! the value's UTF-8 check) is held to `find_field`: the same value where
//! both accept, and a refusal by `find_field` alone only for a value that
//! is not UTF-8.

use dataplane::operators::json::{find_field, find_members, find_value, Member};
use proptest::prelude::*;

/// The serde_json implementation the scanner replaced, unchanged in
/// behaviour: a `DeserializeSeed` over the top object, the wanted value as a
/// `&RawValue`, every other value as `IgnoredAny` (in `find_field`).
mod reference {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    use serde_json::value::RawValue;

    /// (raw, start) of the field, and the member count.
    pub type Lookup<'a> = (Option<(&'a str, usize)>, usize);

    pub fn find_field<'a>(payload: &'a [u8], key: &str) -> Result<Lookup<'a>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(payload);
        let found = Seek { key, base: payload }.deserialize(&mut de)?;
        de.end()?;
        Ok(found)
    }

    struct Seek<'k, 'a> {
        key: &'k str,
        base: &'a [u8],
    }

    impl<'de> DeserializeSeed<'de> for Seek<'_, 'de> {
        type Value = Lookup<'de>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Seek<'_, 'de> {
        type Value = Lookup<'de>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut field = None;
            let mut members = 0;
            while let Some(is_key) = map.next_key_seed(KeyIn(&[self.key]))? {
                members += 1;
                if is_key.is_some() && field.is_none() {
                    let raw: &'de RawValue = map.next_value()?;
                    let text = raw.get();
                    field = Some((text, text.as_ptr() as usize - self.base.as_ptr() as usize));
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok((field, members))
        }
    }

    /// (key_start, raw, start) per wanted key, and the member count.
    pub type Many<'a> = (Vec<Option<(usize, &'a str, usize)>>, usize);

    pub fn find_members<'a>(
        payload: &'a [u8],
        keys: &[&str],
    ) -> Result<Many<'a>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(payload);
        let found = SeekMany {
            keys,
            base: payload,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok(found)
    }

    struct SeekMany<'k, 'a> {
        keys: &'k [&'k str],
        base: &'a [u8],
    }

    impl<'de> DeserializeSeed<'de> for SeekMany<'_, 'de> {
        type Value = Many<'de>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for SeekMany<'_, 'de> {
        type Value = Many<'de>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let base = self.base;
            let mut found = vec![None; self.keys.len()];
            let mut cursor = base.iter().position(|&b| b == b'{').map_or(0, |p| p + 1);
            let mut members = 0;
            while let Some(which) = map.next_key_seed(KeyIn(self.keys))? {
                members += 1;
                let raw: &'de RawValue = map.next_value()?;
                let text = raw.get();
                let start = text.as_ptr() as usize - base.as_ptr() as usize;
                if let Some(i) = which.filter(|&i| found[i].is_none()) {
                    let key_start = base[cursor..start]
                        .iter()
                        .position(|&b| b == b'"')
                        .map_or(cursor, |p| cursor + p);
                    found[i] = Some((key_start, text, start));
                }
                cursor = start + text.len();
            }
            Ok((found, members))
        }
    }

    struct KeyIn<'k>(&'k [&'k str]);

    impl<'de> DeserializeSeed<'de> for KeyIn<'_> {
        type Value = Option<usize>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for KeyIn<'_> {
        type Value = Option<usize>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a key")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
            Ok(self.0.iter().position(|k| *k == v))
        }
    }
}

/// Keys looked up, one by one and all together (duplicates on purpose).
const KEYS: &[&str] = &["type", "a", "é", "😀", "", "x\"y", "a"];

/// Runs both implementations on `doc`; panics with a readable report on
/// any difference.
fn check(doc: &[u8]) {
    let show = || String::from_utf8_lossy(doc).into_owned();
    for key in KEYS {
        let got = find_field(doc, key);
        let want = reference::find_field(doc, key);
        match (&got, find_value(doc, key)) {
            (Ok(g), Ok(v)) => assert_eq!(
                g.field.map(|f| (f.raw.as_bytes(), f.start)),
                v.map(|v| (v.bytes(), v.start())),
                "find_value({key:?}) on {:?}",
                show()
            ),
            (Err(_), Err(_)) => {}
            (Err(_), Ok(v)) => assert!(
                v.is_some_and(|v| v.field().is_none()),
                "find_value({key:?}) accepted {:?}, find_field refused it, yet the value is UTF-8",
                show()
            ),
            (Ok(_), Err(e)) => panic!("find_value({key:?}) refused {:?}: {e}", show()),
        }
        match (&got, &want) {
            (Ok(g), Ok((field, members))) => {
                let g_field = g.field.map(|f| (f.raw, f.start));
                assert_eq!(
                    (g_field, g.members),
                    (*field, *members),
                    "find_field({key:?}) on {:?}",
                    show()
                );
            }
            (Err(_), Err(_)) => {}
            _ => panic!(
                "find_field({key:?}) on {:?}: scanner {:?}, serde_json {:?}",
                show(),
                got.map(|l| (l.field.map(|f| f.raw), l.members))
                    .map_err(|e| e.to_string()),
                want.map_err(|e| e.to_string())
            ),
        }
    }
    let mut found: [Option<Member<'_>>; 7] = [None; 7];
    let got = find_members(doc, KEYS, &mut found);
    let want = reference::find_members(doc, KEYS);
    match (&got, &want) {
        (Ok(members), Ok((w, w_members))) => {
            let g: Vec<_> = found
                .iter()
                .map(|m| m.map(|m| (m.key_start, m.value.raw, m.value.start)))
                .collect();
            assert_eq!(
                (&g, members),
                (w, w_members),
                "find_members on {:?}",
                show()
            );
        }
        (Err(_), Err(_)) => {}
        _ => panic!(
            "find_members on {:?}: scanner {:?}, serde_json {:?}",
            show(),
            got.map_err(|e| e.to_string()),
            want.map(|w| w.1).map_err(|e| e.to_string())
        ),
    }
}

fn ws() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(""),
        2 => Just(" "),
        1 => Just("\n  "),
        1 => Just("\t"),
        1 => Just("\r\n"),
    ]
    .prop_map(str::to_string)
}

/// String contents, escapes included (some of them invalid on purpose).
fn string_body() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        8 => "[a-z0-9 ]{1,4}",
        2 => Just("type".to_string()),
        2 => "[éß中😀]",
        1 => Just(r#"\""#.to_string()),
        1 => Just(r"\\".to_string()),
        1 => Just(r"\/".to_string()),
        1 => Just(r"\n\t\r\b\f".to_string()),
        3 => prop_oneof![
            Just("0079"), Just("0041"), Just("00e9"), Just("00E9"), Just("0000"),
            Just("d83d"), Just("D83D"), Just("de00"), Just("DE00"), Just("dbff"),
            Just("dc00"), Just("dfff"), Just("d800"), Just("fffe"), Just("12g4"),
        ]
        .prop_map(|h| format!(r"\u{h}")),
        1 => prop_oneof![Just("\u{1}"), Just("\u{1f}"), Just("\u{7f}")].prop_map(str::to_string),
        1 => Just(r"\x".to_string()),
    ];
    prop::collection::vec(piece, 0..5).prop_map(|v| v.concat())
}

fn string() -> impl Strategy<Value = String> {
    string_body().prop_map(|b| format!("\"{b}\""))
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => r"-?(0|[1-9][0-9]{0,22})(\.[0-9]{1,4})?([eE][+-]?[0-9]{1,3})?",
        1 => r"-?0[0-9]",
        1 => r"-?[0-9]{0,2}\.?[eE]?[+-]?",
        1 => prop_oneof![
            Just("1.7976931348623157e308"), Just("1.7976931348623159e308"),
            Just("1.8e308"), Just("17976931348623157e292"), Just("0e99999999999"),
            Just("1e99999999999"), Just("1e-99999999999"), Just("-1e400"),
            Just("123456789012345678901234567890e280"),
        ]
        .prop_map(str::to_string),
        1 => (0usize..3, 298usize..312).prop_map(|(s, n)| {
            format!("{}1{}", ["", "-", ""][s], "9".repeat(n))
        }),
    ]
}

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => number(),
        3 => string(),
        1 => prop_oneof![Just("true"), Just("false"), Just("null"), Just("nul"), Just("tru")]
            .prop_map(str::to_string),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop_oneof![
            Just(r#""type""#), Just(r#""a""#), Just(r#""t\u0079pe""#), Just(r#""\u0061""#),
            Just(r#""é""#), Just(r#""\u00e9""#), Just(r#""😀""#), Just(r#""\ud83d\ude00""#),
            Just(r#""""#), Just(r#""x\"y""#), Just(r#""x\u0022y""#), Just(r#""typ""#),
        ]
        .prop_map(str::to_string),
        1 => string(),
    ]
}

fn value() -> impl Strategy<Value = String> {
    leaf().prop_recursive(5, 40, 5, |inner| {
        let member = (ws(), key(), ws(), ws(), inner.clone(), ws())
            .prop_map(|(a, k, b, c, v, d)| format!("{a}{k}{b}:{c}{v}{d}"));
        prop_oneof![
            (prop::collection::vec((ws(), inner, ws()), 0..5), ws()).prop_map(|(items, w)| {
                let items: Vec<String> = items.into_iter().map(|(a, v, b)| a + &v + &b).collect();
                format!("[{}{w}]", items.join(","))
            }),
            (prop::collection::vec(member, 0..5), ws())
                .prop_map(|(members, w)| format!("{{{}{w}}}", members.join(","))),
        ]
    })
}

/// A value nested `depth` containers deep, mixing arrays and objects.
fn deep() -> impl Strategy<Value = String> {
    (
        120usize..135,
        prop::collection::vec(any::<bool>(), 135),
        leaf(),
    )
        .prop_map(|(depth, kinds, leaf)| {
            let mut s = String::new();
            for &object in &kinds[..depth] {
                s += if object { r#"{"k":"# } else { "[" };
            }
            s += &leaf;
            for &object in kinds[..depth].iter().rev() {
                s += if object { "}" } else { "]" };
            }
            s
        })
}

fn object() -> impl Strategy<Value = String> {
    let member_value = prop_oneof![12 => value(), 1 => deep()];
    let member = (ws(), key(), ws(), ws(), member_value, ws())
        .prop_map(|(a, k, b, c, v, d)| format!("{a}{k}{b}:{c}{v}{d}"));
    (ws(), prop::collection::vec(member, 0..6), ws(), ws())
        .prop_map(|(a, members, b, c)| format!("{a}{{{}{b}}}{c}", members.join(",")))
}

/// A clean object: compact or spaced with spaces only, ASCII strings
/// without escapes, nested values, padding to several 64-byte blocks; and
/// some UTF-8 strings, where the index stops and the byte walk takes over.
fn clean_object() -> impl Strategy<Value = String> {
    let space = || prop_oneof![4 => Just(""), 1 => Just(" "), 1 => Just("  ")];
    let leaf = prop_oneof![
        r"-?(0|[1-9][0-9]{0,6})(\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
        r#""[a-z0-9 :,{}\[\]]{0,16}""#,
        r#""[a-zé中😀 ]{0,8}""#,
        Just("true".to_string()),
        Just("false".to_string()),
        Just("null".to_string()),
    ];
    let value = leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-z]{0,3}", inner), 0..3).prop_map(|v| {
                let m: Vec<String> = v.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", m.join(","))
            }),
        ]
    });
    let key =
        prop_oneof![2 => Just("type".to_string()), 1 => Just("a".to_string()), 3 => "[a-z]{0,6}"];
    let member = (space(), key, space(), space(), value, space())
        .prop_map(|(a, k, b, c, v, d)| format!("{a}\"{k}\"{b}:{c}{v}{d}"));
    (
        space(),
        prop::collection::vec(member, 0..10),
        space(),
        0usize..70,
    )
        .prop_map(|(a, m, b, pad)| format!("{a}{{{}{b}}}{}", m.join(","), " ".repeat(pad)))
}

#[derive(Clone, Debug)]
enum Edit {
    Truncate(usize),
    Delete(usize),
    Insert(usize, u8),
    Replace(usize, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    let byte = prop_oneof![
        4 => prop::sample::select(
            b"\"\\,:{}[] \n0123456789-+.eEutrfnl\x01\x1f\xff\xc3\xa9\x80\xed\xa0x".to_vec()
        ),
        1 => any::<u8>(),
    ];
    let pos = any::<prop::sample::Index>();
    prop_oneof![
        (pos.clone()).prop_map(|p| Edit::Truncate(p.index(usize::MAX))),
        (pos.clone()).prop_map(|p| Edit::Delete(p.index(usize::MAX))),
        (pos.clone(), byte.clone()).prop_map(|(p, b)| Edit::Insert(p.index(usize::MAX), b)),
        (pos, byte).prop_map(|(p, b)| Edit::Replace(p.index(usize::MAX), b)),
    ]
}

fn apply(doc: &mut Vec<u8>, edit: &Edit) {
    let len = doc.len();
    match *edit {
        Edit::Truncate(p) => doc.truncate(p % (len + 1)),
        Edit::Delete(p) if len > 0 => {
            doc.remove(p % len);
        }
        Edit::Insert(p, b) => doc.insert(p % (len + 1), b),
        Edit::Replace(p, b) if len > 0 => doc[p % len] = b,
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6000))]

    /// Generated objects (mostly valid) agree exactly.
    #[test]
    fn generated_objects_agree(doc in object()) {
        check(doc.as_bytes());
    }

    /// Mutated and truncated objects (mostly invalid) agree exactly.
    #[test]
    fn mutated_objects_agree(doc in object(), edits in prop::collection::vec(edit(), 1..4)) {
        let mut doc = doc.into_bytes();
        for e in &edits {
            apply(&mut doc, e);
        }
        check(&doc);
    }

    /// Clean objects (ASCII, no escapes, spaces the only whitespace: what
    /// the scanner walks on its structural index), of one block and of
    /// several, and clean edits of them, agree exactly.
    #[test]
    fn clean_objects_agree(
        doc in clean_object(),
        edits in prop::collection::vec((0usize..400, prop::sample::select(
            b" \"{}[],:0-.eE+tfnaulrs1x".to_vec()), 0u8..3), 0..3),
    ) {
        let mut doc = doc.into_bytes();
        for &(at, c, how) in &edits {
            let at = at % (doc.len() + 1);
            match how {
                0 if at < doc.len() => doc[at] = c,
                1 if at < doc.len() => {
                    doc.remove(at);
                }
                _ => doc.insert(at, c),
            }
        }
        check(&doc);
    }

    /// Arbitrary byte strings with JSON-ish structure agree too.
    #[test]
    fn random_bytes_agree(doc in prop::collection::vec(
        prop::sample::select(b"{}[]\":, a1-.eu\\\n".to_vec()), 0..24)
    ) {
        check(&doc);
    }
}

/// Nesting around serde_json's limit, for the looked-up value (raw: no
/// limit) and for every other value (at most 128 levels with the top).
#[test]
fn depth_limits_agree() {
    for depth in [1, 125, 126, 127, 128, 129, 200, 5000] {
        for open in ["[", r#"{"k":"#] {
            let close = if open == "[" { "]" } else { "}" };
            let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            for doc in [
                format!(r#"{{"type":{nested}}}"#),
                format!(r#"{{"b":{nested},"type":1}}"#),
                format!(r#"{{"type":1,"type":{nested}}}"#),
                format!(r#"{{"a":{nested},"a":{nested}}}"#),
                format!(r#"{{"type":{}}}"#, open.repeat(depth)),
            ] {
                check(doc.as_bytes());
            }
        }
    }
}

/// Hand-picked edge cases.
#[test]
fn edge_cases_agree() {
    let cases: &[&[u8]] = &[
        b"",
        b" ",
        b"{}",
        b" {} \n\t\r",
        b"{} x",
        b"{}}",
        b"{,}",
        b"{\"a\":1,}",
        b"{\"a\":[1,]}",
        b"{\"a\":[,1]}",
        b"{\"a\":{\"b\":1,}}",
        b"{\"a\" 1}",
        b"{\"a\":}",
        b"{\"a\":1 \"b\":2}",
        b"{\"type\":\"\\ud800\"}",
        b"{\"b\":\"\\ud800\"}",
        b"{\"b\":\"\\udc00\"}",
        b"{\"b\":\"\\ud800\\u0041\"}",
        b"{\"b\":\"\\ud800\\n\"}",
        b"{\"\\ud800\":1}",
        b"{\"type\":{\"\\ud800\":1}}",
        b"{\"b\":{\"\\ud800\":1}}",
        b"{\"type\":1e400,\"b\":2}",
        b"{\"b\":1e400}",
        b"{\"b\":-1e400}",
        b"{\"b\":1e-400}",
        b"{\"type\":\"\xff\"}",
        b"{\"b\":\"\xc3\xa9\"}",
        b"{\"b\":\"\xed\xa0\x80\"}",
        b"{\"b\":\"\x1f\"}",
        b"{\"b\":\"\x7f\"}",
        b"{\"b\":tru}",
        b"{\"b\":nulll}",
        b"{\"b\":01}",
        b"{\"b\":-}",
        b"{\"b\":1.}",
        b"{\"b\":1e}",
        b"{\"b\":1e+}",
        b"{\"b\":.5}",
        b"{\"b\":+1}",
        b"[{}]",
        b"\xef\xbb\xbf{}",
        b"{\"type\":\"x\"}\xff",
        b"{\"type\":\"\\u00\"}",
        b"{\"type\":\"\\u",
        b"{\"t\\u0079pe\":2,\"type\":3}",
    ];
    for doc in cases {
        check(doc);
    }
}

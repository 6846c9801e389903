//! Unit tests of `operators/json/scan.rs`.

use super::*;

#[test]
fn escaped_keys_compare_decoded() {
    assert!(unescaped_eq(br"t\u0079pe", b"type"));
    assert!(unescaped_eq(br"a\nb\/\\\u00e9", "a\nb/\\é".as_bytes()));
    assert!(unescaped_eq(br"\ud83d\ude00!", "😀!".as_bytes()));
    assert!(!unescaped_eq(br"t\u0079pe", b"typ"));
    assert!(!unescaped_eq(br"t\u0079p", b"type"));
}

/// The byte-by-byte definition of where a run ends.
fn slow_run(b: &[u8], i: usize, stops: Stops) -> usize {
    b[i..]
        .iter()
        .position(|&c| stops.stops(c))
        .map_or(b.len(), |p| i + p)
}

#[test]
fn word_at_a_time_runs_stop_at_every_stop_byte() {
    // Each byte value at each position of a word, after plain bytes and
    // before bytes that would also stop (so a borrow could mislead).
    for stops in [Stops::String, Stops::Key] {
        for c in 0..=255u8 {
            for k in 0..12 {
                let mut b = vec![b'a'; 12];
                b[k] = c;
                b[(k + 1)..].iter_mut().for_each(|x| *x = 0);
                assert_eq!(
                    plain_run(&b, 0, stops),
                    slow_run(&b, 0, stops),
                    "byte {c:#04x} at {k}"
                );
            }
        }
    }
}

proptest::proptest! {
    #[test]
    fn word_at_a_time_runs_match_the_definition(
        b in proptest::collection::vec(proptest::prop_oneof![
            proptest::prelude::any::<u8>(),
            proptest::sample::select(vec![b'"', b'\\', 0x1f, 0x20, 0x7f, 0x80, 0xff, b'a']),
        ], 0..40),
        start in 0usize..40,
    ) {
        let i = start.min(b.len());
        for stops in [Stops::String, Stops::Key] {
            proptest::prop_assert_eq!(plain_run(&b, i, stops), slow_run(&b, i, stops));
        }
    }
}

#[test]
fn stack_spills_past_128_levels() {
    let mut s = Stack::new();
    for i in 0..300 {
        s.push(i % 3 == 0);
    }
    for i in (0..300).rev() {
        assert_eq!(s.top(), Some(i % 3 == 0));
        s.pop();
    }
    assert_eq!(s.top(), None);
}

/// Trailing padding of every length, and one other byte at each place of
/// it: accepted exactly when the padding is all whitespace (the tail of a
/// payload is checked eight bytes at a time, the last eight overlapping).
#[test]
fn trailing_padding_is_checked_to_the_last_byte() {
    struct Count;
    impl Members<'_> for Count {
        fn key(&mut self, _: Key<'_>, _: usize) -> Mode {
            Mode::Skip
        }
        fn raw_value(&mut self, _: &str, _: usize) {}
        fn restart(&mut self) {}
    }
    for doc in [&b"{}"[..], br#"{"a":1}"#, br#"{"type":"metric","n":0}"#] {
        for pad in 0..40 {
            let mut b = doc.to_vec();
            b.resize(doc.len() + pad, b' ');
            assert!(scan_object(&b, &mut Count).is_ok(), "{pad} spaces");
            for at in doc.len()..b.len() {
                for c in [b'x', b'\n', b'}', 0] {
                    let mut bad = b.clone();
                    bad[at] = c;
                    let ok = scan_object(&bad, &mut Count).is_ok();
                    assert_eq!(ok, is_ws(c), "{:?}", String::from_utf8_lossy(&bad));
                }
            }
        }
    }
}

/// Each classifier this CPU can run (the one `classify` picks, SSE2 or
/// the byte loop of the baseline, and AVX2 where the CPU has it) against
/// the byte-by-byte definition: every byte value at every position of a
/// block, among bytes of other classes.
#[test]
fn block_masks_match_the_definition_at_every_position() {
    type Classify = fn(&[u8; 64]) -> index::Masks;
    let mut classifiers: Vec<(&str, Classify, Classify)> = vec![
        (
            "classify",
            index::classify::<true>,
            index::classify::<false>,
        ),
        (
            "baseline",
            index::classify_baseline::<true>,
            index::classify_baseline::<false>,
        ),
    ];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("pclmulqdq")
    {
        // SAFETY: this CPU has AVX2 and PCLMULQDQ, all `classify_avx2`
        // needs.
        classifiers.push((
            "avx2",
            |b| unsafe { index::classify_avx2::<true>(b) },
            |b| unsafe { index::classify_avx2::<false>(b) },
        ));
    }
    let mut block = [0u8; 64];
    for (k, b) in block.iter_mut().enumerate() {
        *b = [
            b'a', b' ', b'"', b'\\', 0x1f, 0x80, b'{', 0x7f, b':', b',', b']',
        ][k % 11];
    }
    for (name, ops, plain) in classifiers {
        for c in 0..=255u8 {
            for k in 0..64 {
                let mut b = block;
                b[k] = c;
                let want = index::classify_bytes::<true>(&b);
                assert_eq!(ops(&b), want, "{name}: {c:#04x} at {k}");
                let want = index::Masks {
                    colon: 0,
                    comma: 0,
                    bracket: 0,
                    strings: 0,
                    ..want
                };
                assert_eq!(plain(&b), want, "{name} without OPS: {c:#04x} at {k}");
                assert_eq!(index::classify_bytes::<false>(&b), want);
            }
        }
    }
}

/// The bracket class is `{` `}` `[` `]` and the four bytes that share
/// their pattern, none of which may stand outside a string.
#[test]
fn the_bracket_class_is_brackets_and_four_bytes_invalid_outside_strings() {
    let class: Vec<u8> = (0..=255u8).filter(|c| c | 0x26 == 0x7f).collect();
    assert_eq!(class, b"Y[]_y{}\x7f");
}

proptest::proptest! {
    /// The index of a payload of any length, from any block: bit `k` of a
    /// block's masks is byte `base + k`, and bytes past the end are spaces.
    #[test]
    fn payload_masks_match_the_definition(
        b in proptest::collection::vec(proptest::sample::select(
            vec![b'a', b' ', b'"', b'\\', b'\n', 0xc3, b'{', b':', b',', b']']), 1..300),
    ) {
        let mut base = 0;
        while base < b.len() {
            let mut block = [b' '; 64];
            let end = b.len().min(base + 64);
            block[..end - base].copy_from_slice(&b[base..end]);
            proptest::prop_assert_eq!(
                index::block_at::<true>(&b, base),
                index::classify_bytes::<true>(&block)
            );
            base += 64;
        }
    }
}

/// Everything a walk tells its `Members`, and how it ends.
#[derive(Debug, Default, PartialEq)]
struct Record {
    events: Vec<String>,
}

impl<'a> Members<'a> for Record {
    fn key(&mut self, key: Key<'_>, key_start: usize) -> Mode {
        self.events.push(format!(
            "key {:?} at {key_start}",
            String::from_utf8_lossy(key.raw)
        ));
        // Every mode, chosen by the key.
        match key.raw.len() % 3 {
            0 => Mode::Skip,
            1 => Mode::Raw,
            _ => Mode::Bytes,
        }
    }

    fn raw_value(&mut self, raw: &'a str, start: usize) {
        self.events.push(format!("raw {raw:?} at {start}"));
    }

    fn raw_bytes(&mut self, raw: &'a [u8], start: usize, plain: bool) {
        let raw = String::from_utf8_lossy(raw);
        self.events
            .push(format!("bytes {raw:?} at {start} plain {plain}"));
    }

    fn restart(&mut self) {
        self.events.clear();
    }
}

/// The fast walk and the byte-by-byte walk on one payload: where the fast
/// walk decides, it says what the other says (the same members, in the
/// same order, and the same count); on a payload clean to the end it
/// always decides.
fn walks_agree(b: &[u8]) -> Result<(), proptest::test_runner::TestCaseError> {
    let mut slow = Record::default();
    let want = object(b, &mut slow).ok();
    flat_agrees(b, want, &slow)?;
    let mut quick = Record::default();
    let Some(got) =
        index::Cursor::<false>::new(b).map(|mut ix| fast::object(b, &mut ix, &mut quick))
    else {
        return Ok(());
    };
    if b.len() <= 64 {
        // The one-block cursor decides the same.
        let mut one = Record::default();
        let mut ix = index::Cursor::<true>::new(b).expect("the same first block");
        proptest::prop_assert_eq!(fast::object(b, &mut ix, &mut one), got);
        proptest::prop_assert_eq!(&one, &quick);
    }
    let text = String::from_utf8_lossy(b);
    match got {
        Some(_) => {
            proptest::prop_assert_eq!(got, want, "{:?}", text);
            proptest::prop_assert_eq!(quick, slow, "{:?}", text);
        }
        None if !b.iter().any(|&c| index::is_unusual(c)) => {
            proptest::prop_assert_eq!(want, None, "{:?}", text)
        }
        None => {}
    }
    Ok(())
}

/// The flat walk on one payload, against the byte walk's count `want`
/// and members `slow`: where it decides, it says the same, and it tells
/// nothing where it does not. Returns whether it decided.
fn flat_decides(
    b: &[u8],
    want: Option<usize>,
    slow: &Record,
) -> Result<bool, proptest::test_runner::TestCaseError> {
    if b.is_empty() || b.len() > 64 {
        return Ok(false);
    }
    let masks = index::block_at::<true>(b, 0);
    if masks.unusual != 0 {
        return Ok(false);
    }
    let mut rec = Record::default();
    let got = flat::object(b, &masks, &mut rec);
    let text = String::from_utf8_lossy(b);
    match got {
        Some(_) => {
            proptest::prop_assert_eq!(got, want, "{:?}", text);
            proptest::prop_assert_eq!(&rec, slow, "{:?}", text);
        }
        None => proptest::prop_assert_eq!(rec, Record::default(), "{:?}", text),
    }
    // The direct lookup decides where the walk does, and finds what the
    // byte walk finds for every key of the payload and one it lacks.
    let keys = slow.events.iter().filter_map(|e| {
        let key = e.strip_prefix("key \"")?;
        Some(key[..key.find("\" at ")?].to_string())
    });
    for key in keys.chain(["nokey".to_string()]) {
        let found = flat::find(b, &masks, key.as_bytes());
        proptest::prop_assert_eq!(found.is_some(), got.is_some(), "{:?}", text);
        let Some((value, count)) = found else {
            continue;
        };
        let mut first = First {
            key: &key,
            value: None,
        };
        proptest::prop_assert_eq!(object(b, &mut first).ok(), Some(count), "{:?}", text);
        let value = value.map(|(start, end)| (start, &b[start..end]));
        proptest::prop_assert_eq!(value, first.value, "{:?} {}", text, key);
    }
    Ok(got.is_some())
}

/// The first value of a key, as the byte walk finds it.
struct First<'k, 'a> {
    key: &'k str,
    value: Option<(usize, &'a [u8])>,
}

impl<'a> Members<'a> for First<'_, 'a> {
    fn key(&mut self, key: Key<'_>, _: usize) -> Mode {
        if self.value.is_none() && key.is(self.key) {
            Mode::Bytes
        } else {
            Mode::Skip
        }
    }

    fn raw_value(&mut self, _: &'a str, _: usize) {}

    fn raw_bytes(&mut self, raw: &'a [u8], start: usize, _: bool) {
        self.value = Some((start, raw));
    }

    fn restart(&mut self) {
        self.value = None;
    }
}

fn flat_agrees(
    b: &[u8],
    want: Option<usize>,
    slow: &Record,
) -> Result<(), proptest::test_runner::TestCaseError> {
    flat_decides(b, want, slow).map(|_| ())
}

/// `scan_object` (fast walk, restart, byte walk) and the byte walk alone:
/// the same result, error and members.
fn scans_agree(b: &[u8]) -> Result<(), proptest::test_runner::TestCaseError> {
    let mut slow = Record::default();
    let want = object(b, &mut slow).map_err(|(code, at)| JsonError::new(b, code, at).to_string());
    let mut rec = Record::default();
    let got = scan_object(b, &mut rec).map_err(|e| e.to_string());
    let text = String::from_utf8_lossy(b);
    proptest::prop_assert_eq!(&got, &want, "{:?}", text);
    if got.is_ok() {
        proptest::prop_assert_eq!(rec, slow, "{:?}", text);
    }
    Ok(())
}

/// Clean JSON: compact or spaced, ASCII, no escapes, nested values.
fn clean_value() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        r"-?(0|[1-9][0-9]{0,5})(\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
        r#""[a-z0-9 :,{}\[\]]{0,12}""#,
        Just("true".to_string()),
        Just("false".to_string()),
        Just("null".to_string()),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-z]{0,3}", inner), 0..3).prop_map(|v| {
                let m: Vec<String> = v.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", m.join(","))
            }),
        ]
    })
}

fn clean_object() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let space = || prop_oneof![4 => Just(""), 1 => Just(" "), 1 => Just("   ")];
    let member = (
        space(),
        "[a-z]{0,7}",
        space(),
        space(),
        clean_value(),
        space(),
    )
        .prop_map(|(a, k, b, c, v, d)| format!("{a}\"{k}\"{b}:{c}{v}{d}"));
    (
        space(),
        prop::collection::vec(member, 0..12),
        space(),
        0usize..80,
    )
        .prop_map(|(a, members, b, pad)| {
            let mut s = format!("{a}{{{}{b}}}", members.join(","));
            s.push_str(&" ".repeat(pad));
            s.into_bytes()
        })
}

/// A clean flat object (values strings, numbers and literals), compact
/// or spaced, that fits one block.
fn flat_object() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let space = || prop_oneof![4 => Just(""), 1 => Just(" "), 1 => Just("  ")];
    let leaf = prop_oneof![
        r"-?(0|[1-9][0-9]{0,5})(\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
        r#""[a-zY_y0-9 :,{}\[\]]{0,8}""#,
        Just("true".to_string()),
        Just("false".to_string()),
        Just("null".to_string()),
    ];
    let member = (space(), "[a-z:,{]{0,5}", space(), space(), leaf, space())
        .prop_map(|(a, k, b, c, v, d)| format!("{a}\"{k}\"{b}:{c}{v}{d}"));
    (
        space(),
        prop::collection::vec(member, 0..5),
        space(),
        0usize..20,
    )
        .prop_map(|(a, members, b, pad)| {
            let mut s = format!("{a}{{{}{b}}}", members.join(","));
            s.push_str(&" ".repeat(pad));
            s.into_bytes()
        })
        .prop_filter("one block", |d| d.len() <= 64)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

    /// The flat walk decides every flat object of one block, as the byte
    /// walk does.
    #[test]
    fn the_flat_walk_decides_flat_objects(doc in flat_object()) {
        let mut slow = Record::default();
        let want = object(&doc, &mut slow).ok();
        proptest::prop_assert!(want.is_some(), "{:?}", String::from_utf8_lossy(&doc));
        proptest::prop_assert!(flat_decides(&doc, want, &slow)?);
        scans_agree(&doc)?;
    }

    /// Flat objects with a few bytes replaced, deleted or inserted: mostly
    /// invalid, which the flat walk must not accept.
    #[test]
    fn the_flat_walk_agrees_on_edited_flat_objects(
        doc in flat_object(),
        edits in proptest::collection::vec((
            0usize..64,
            proptest::sample::select(b" \"{}[],:0-.eE+tfnaulrsY_y\x7f1x".to_vec()),
            0u8..3,
        ), 1..4),
    ) {
        let doc = edited(doc, &edits);
        walks_agree(&doc)?;
        scans_agree(&doc)?;
    }

    #[test]
    fn the_fast_walk_agrees_on_clean_objects(doc in clean_object()) {
        walks_agree(&doc)?;
    }

    /// Clean bytes edited into clean objects: mostly invalid documents,
    /// which the fast walk must refuse, and some valid ones.
    #[test]
    fn the_fast_walk_agrees_on_edited_clean_objects(
        doc in clean_object(),
        edits in proptest::collection::vec((
            0usize..400,
            proptest::sample::select(b" \"{}[],:0-.eE+tfnaulrs1x".to_vec()),
            0u8..3,
        ), 1..4),
    ) {
        let doc = edited(doc, &edits);
        walks_agree(&doc)?;
        scans_agree(&doc)?;
    }

    /// Bytes the index does not take (whitespace other than the space,
    /// escapes, non-ASCII, controls) put into clean objects, anywhere:
    /// the fast walk stops at their block and the byte walk takes over.
    #[test]
    fn scans_agree_on_objects_with_unusual_bytes(
        doc in clean_object(),
        edits in proptest::collection::vec((
            0usize..400,
            proptest::sample::select(vec![b'\t', b'\n', b'\r', b'\\', 0xc3, 0xa9, 0x01, b'x', b'"']),
            // Replace or insert.
            proptest::sample::select(vec![0u8, 2]),
        ), 1..3),
    ) {
        let doc = edited(doc, &edits);
        scans_agree(&doc)?;
    }
}

/// `doc` with each `(at, byte, how)` applied in turn: `how` 0 replaces the
/// byte at `at`, 1 deletes it, 2 inserts `byte` there (`at` wraps).
fn edited(mut doc: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, c, how) in edits {
        let at = at % (doc.len() + 1);
        match how {
            0 if at < doc.len() => doc[at] = c,
            1 if at < doc.len() => {
                doc.remove(at);
            }
            _ => doc.insert(at, c),
        }
    }
    doc
}

#[test]
fn the_fast_walk_agrees_on_edge_cases() {
    for doc in [
        &b""[..],
        b" ",
        b"{",
        b"}",
        b"{}",
        b"  {  }  ",
        b"{} x",
        b"[]",
        br#"{"a"}"#,
        br#"{"a":}"#,
        br#"{"a":1,}"#,
        br#"{"a":1 "b":2}"#,
        br#"{"a":01}"#,
        br#"{"a":1.}"#,
        br#"{"a":-}"#,
        br#"{"a":tru}"#,
        br#"{"a":truex}"#,
        br#"{"a":nul"#,
        br#"{"a":"x"#,
        br#"{"a":"x"}"#,
        br#"{"a":[1,{"b":[]}],"c":{}}"#,
        br#"{"a":[1,]}"#,
        br#"{"a" : "b" , "c" : null }"#,
        br#"{1:2}"#,
        // Scalars where keys go: refused by the flat walk's check that
        // every key is a string (the others alone let them through).
        br#"{1}"#,
        br#"{"a":1,2}"#,
        br#"{"a":1,"b"}"#,
        br#"{"":""}"#,
        br#"{"a":"b","a":"c"}"#,
        br#"{"a":Y}"#,
        br#"{"Y_y{}[]:,":"Y_y{}[]:,"}"#,
        br#"{"a":"\u00e9"}"#,
        b"{\"a\":1}\n",
    ] {
        walks_agree(doc).unwrap();
        scans_agree(doc).unwrap();
    }
    // What follows the object in a block that is not clean: trailing
    // whitespace of other kinds is allowed, anything else is not.
    for pad in [60, 64, 100] {
        for tail in [&b"\t"[..], b"\n", b"x\t", b"\tx", b"\xc3\xa9"] {
            let mut doc = br#"{"a":1}"#.to_vec();
            doc.resize(doc.len() + pad, b' ');
            doc.extend_from_slice(tail);
            scans_agree(&doc).unwrap();
        }
    }
    // A nested value that ends in a block that is not clean, then more
    // members and the end there too.
    for pad in [40, 60, 70] {
        let doc = format!("{{\"a\":[{}\"\u{e9}\\n\"],\"b\":\"c\"}}", "1,".repeat(pad));
        scans_agree(doc.as_bytes()).unwrap();
    }
    // Values wanted as text after a skipped nested value that is not
    // UTF-8 in a block the walk never indexes: the payload is not UTF-8
    // throughout, and the values are checked one by one; the walk decides.
    let mut doc = br#"{"a":1,"sss":["#.to_vec();
    doc.extend_from_slice("1,".repeat(40).as_bytes());
    doc.extend_from_slice(b"\"\xff\"");
    doc.extend_from_slice(",1".repeat(40).as_bytes());
    doc.extend_from_slice(br#"],"d":2}"#);
    let mut quick = Record::default();
    let mut ix = index::Cursor::<false>::new(&doc).expect("a clean first block");
    assert_eq!(fast::object(&doc, &mut ix, &mut quick), Some(3));
    walks_agree(&doc).unwrap();
    scans_agree(&doc).unwrap();
    // Every token at every place of a block: one filler value of each
    // length moves the rest of the object by one byte at a time, so each
    // quote, colon, comma and value start falls on a block's last and
    // first byte somewhere.
    for fill in 0..140 {
        let doc = format!(
            r#"{{"f":"{}","key":"v","n":12,"t":true,"o":{{"a":[1]}},"e":""}}  "#,
            "x".repeat(fill)
        );
        walks_agree(doc.as_bytes()).unwrap();
        scans_agree(doc.as_bytes()).unwrap();
    }
    // A string across the boundary of two blocks, and values in the last,
    // overlapping block of a payload that is not a whole number of blocks.
    for len in 50..140 {
        let key = "k".repeat(len);
        for tail in ["", " ", "                                        "] {
            let doc = format!(r#"{{"{key}":"{key}","n":[true,false],"z":-1.5e3}}{tail}"#);
            walks_agree(doc.as_bytes()).unwrap();
            scans_agree(doc.as_bytes()).unwrap();
            let cut = &doc.as_bytes()[..doc.len() - tail.len() - 1];
            walks_agree(cut).unwrap();
            scans_agree(cut).unwrap();
        }
    }
}

/// `short_eq` is `==`: every length up to past the word compares, and a
/// difference at every position of it.
#[test]
fn short_eq_is_equality() {
    for n in 0..40usize {
        let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
        assert!(short_eq(&a, &a.clone()), "len {n}");
        assert!(
            !short_eq(&a, &a[..n.saturating_sub(1)]) || n == 0,
            "len {n}"
        );
        for at in 0..n {
            let mut b = a.clone();
            b[at] ^= 0x20;
            assert!(!short_eq(&a, &b), "len {n}, differs at {at}");
        }
    }
}

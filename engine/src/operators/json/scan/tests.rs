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

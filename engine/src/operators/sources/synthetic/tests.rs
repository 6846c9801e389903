//! Unit tests of `operators/sources.rs`.

use super::*;
use crate::operators::testing::Harness;

#[test]
fn templates() {
    let p = parse_template(r#"{"seq":{seq},"t":"{pick:a|b}"}"#).unwrap();
    assert_eq!(
        p,
        vec![
            Piece::Text(br#"{"seq":"#.to_vec()),
            Piece::Seq,
            Piece::Text(br#","t":""#.to_vec()),
            Piece::Pick(vec![b"a".to_vec(), b"b".to_vec()]),
            Piece::Text(br#""}"#.to_vec()),
        ]
    );
    assert!(parse_template("{pick:a|}").is_err());
    assert!(parse_template("{rand:0}").is_err());
    assert!(parse_template("{rand:x}").is_err());
    assert_eq!(
        parse_template("{rand:10}{choose:x|y}").unwrap(),
        vec![
            Piece::Rand(10),
            Piece::Choose(vec![b"x".to_vec(), b"y".to_vec()])
        ]
    );
}

/// The prepared frames write exactly what the general renderer writes,
/// across digit-count changes, picks, several sizes and overflow.
#[test]
fn frames_match_the_general_renderer() {
    let cases: &[(&str, Vec<usize>, usize)] = &[
        (r#"{"seq":{seq}}"#, vec![], 64),
        (r#"{"seq":{seq}}"#, vec![64], 64),
        (r#"{"seq":{seq}}"#, vec![100, 7, 130], 256),
        (
            r#"{"a":{seq},"t":"{pick:x|yy|zzz}","b":{seq}}"#,
            vec![40, 70],
            128,
        ),
        (
            r#"{"type":"{pick:metric|log|trace}","host":"web-1","seq":0}"#,
            vec![64],
            256,
        ),
        ("{seq}", vec![], 8),
        // Overflow: payloads outgrow the slot as the digits grow.
        (r#"{"seq":{seq},"pad":"xxxxxxxx"}"#, vec![], 28),
        ("{seq}", vec![200], 128),
        // Radices that are not coprime (2 picks, 2 sizes; 2 x 3 and 4).
        (r#"{"t":"{pick:a|b}","s":{seq}}"#, vec![40, 70], 128),
        (
            r#"{"t":"{pick:a|bb}","u":"{pick:x|y|z}"}"#,
            vec![30, 40, 50, 60],
            64,
        ),
    ];
    // Starting past 0, as a generator resumed from a checkpoint does (the
    // frame is then found by division once, then by counting).
    for ((template, sizes, slot), start) in cases.iter().flat_map(|c| [(c, 0), (c, 7), (c, 1001)]) {
        let count = 12_000;
        let run = |frames: bool| {
            let mut g = Generator::new(template, Some(count))
                .unwrap()
                .sizes(sizes.clone());
            g.n = start;
            if !frames {
                g.frames = None;
            } else {
                assert!(g.frames.is_some(), "{template} should use frames");
            }
            let mut h = Harness::new(*slot);
            g.init(&h.info()).unwrap();
            h.pull_all(&mut g, count as usize + 1, 0)
        };
        let (fast, fast_errors) = run(true);
        let (slow, slow_errors) = run(false);
        // In batches, as the runtime pulls (room 1, odd, the default 64).
        for room in [1, 7, 64] {
            let mut g = Generator::new(template, Some(count))
                .unwrap()
                .sizes(sizes.clone());
            g.n = start;
            let mut h = Harness::new(*slot);
            g.init(&h.info()).unwrap();
            let (batched, batched_errors) = h.pull_batches(&mut g, room, count as usize + 1);
            assert_eq!(
                batched_errors, fast_errors,
                "{template} from {start}, room {room}"
            );
            assert!(batched == fast, "{template} from {start}, room {room}");
        }
        assert_eq!(fast.len(), slow.len(), "{template} from {start}");
        assert_eq!(fast_errors, slow_errors, "{template} from {start}");
        for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
            assert_eq!(
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b),
                "{template} from {start}, element {i}"
            );
        }
    }
    // Placeholders that change per element another way use the general
    // renderer.
    for t in ["{ts}", "{rand:9}", "{choose:a|b}"] {
        assert!(Generator::new(t, None).unwrap().frames.is_none());
    }
}

/// A frame is found by counting from the last sequence number; a number
/// out of that order (a jump forward: sequence numbers never go back) is
/// found by division, and still gets the frame of its own choices and size.
#[test]
fn frames_follow_jumps_in_the_sequence() {
    let template = r#"{"a":{seq},"t":"{pick:x|yy|zzz}"}"#;
    let sizes = vec![40, 70];
    let mut fast = Generator::new(template, None).unwrap().sizes(sizes.clone());
    let mut slow = Generator::new(template, None).unwrap().sizes(sizes);
    slow.frames = None;
    let mut h = Harness::new(128);
    for seq in (0..20)
        .chain(1000..1013)
        .chain([1100, 1101, 1105, 2000, 2001, 2003])
    {
        fast.n = seq;
        slow.n = seq;
        let (a, b) = (h.pull(&mut fast), h.pull(&mut slow));
        assert_eq!(
            String::from_utf8_lossy(&a.1),
            String::from_utf8_lossy(&b.1),
            "element {seq}"
        );
    }
}

/// A frame's digits are advanced in place: carries across several digits,
/// and a large step rewrites them.
#[test]
fn decimal_digits_advance_in_place() {
    for (from, delta) in [
        (0u64, 1u64),
        (9, 0),
        (1999, 1),
        (1995, 7),
        (1090, 9),
        (4321, 5000),
        (99, 1),
    ] {
        let to = from + delta;
        let width = to.to_string().len();
        let mut digits = format!("{from:0width$}").into_bytes();
        add_decimal(&mut digits, delta, to);
        assert_eq!(
            String::from_utf8(digits).unwrap(),
            format!("{to:0width$}"),
            "{from} + {delta}"
        );
    }
}

#[test]
fn digits_are_written_right_aligned() {
    for n in [0u64, 5, 9, 10, 42, 99, 100, 12345, 999_999, u64::MAX] {
        let text = n.to_string();
        let mut out = vec![b'#'; text.len()];
        write_digits(&mut out, n);
        assert_eq!(String::from_utf8(out).unwrap(), text);
    }
}

#[test]
fn random_fields_are_seeded_and_sizes_cycle() {
    let run = |seed| {
        let mut g = Generator::new(r#"{"r":{rand:100},"c":"{choose:a|b}"}"#, Some(50))
            .unwrap()
            .seed(seed)
            .sizes(vec![40, 60]);
        let mut h = Harness::new(128);
        g.init(&h.info()).unwrap();
        h.pull_all(&mut g, 100, 0).0
    };
    let a = run(1);
    assert_eq!(a.len(), 50);
    assert_eq!(a, run(1));
    assert_ne!(a, run(2));
    for (i, p) in a.iter().enumerate() {
        assert_eq!(p.len(), [40, 60][i % 2]);
        let v: serde_json::Value = serde_json::from_slice(p).unwrap();
        assert!(v["r"].as_u64().unwrap() < 100);
        assert!(["a", "b"].contains(&v["c"].as_str().unwrap()));
    }
}

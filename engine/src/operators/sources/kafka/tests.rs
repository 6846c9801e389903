//! Unit tests of `operators/kafka/source.rs`.

use super::*;

#[test]
fn snapshot_round_trips_through_decode() {
    let mut k = KafkaIn::new(KafkaInParams {
        brokers: "127.0.0.1:1".into(),
        topics: vec!["t".into()],
        group_id: "g".into(),
        start: Start::Earliest,
        session_timeout_ms: 10_000,
        commit_interval_ms: 1_000,
        metadata: false,
        max_elements: None,
        librdkafka_options: IndexMap::new(),
    })
    .unwrap();
    k.positions.entry("t".into()).or_default().insert(3, 17);
    k.positions
        .entry("u\"x".into())
        .or_default()
        .insert(0, 1 << 40);
    let s = k.snapshot().unwrap();
    let mut d = decode(&s).unwrap();
    d.sort();
    assert_eq!(
        d,
        vec![(("t".into(), 3), 17), (("u\"x".into(), 0), 1 << 40)]
    );
    k.restore(&s).unwrap();
    assert_eq!(lock(&k.shared.book).restored.len(), 2);
    assert!(decode(&s[..s.len() - 1]).is_err());
    assert_eq!(decode(&[]).unwrap(), vec![]);
}

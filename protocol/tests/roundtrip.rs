//! Property tests: encode/decode round-trips, chunking independence, and arbitrary
//! input that must never panic.

use bytes::{Bytes, BytesMut};
use pbwire::banana::{self, exactly_equal, Decoder, Dialect, Element, Word};
use pbwire::jelly::{self, Value};
use pbwire::{notation, Integer, Limits};
use proptest::prelude::*;

fn integer() -> impl Strategy<Value = Integer> {
    prop_oneof![
        any::<i64>().prop_map(Integer::from),
        (any::<bool>(), proptest::collection::vec(0u8..128, 10..=64)).prop_map(|(neg, digits)| {
            let s: String = digits.iter().map(|d| char::from(b'0' + d % 10)).collect();
            let s = if neg {
                format!("-1{s}")
            } else {
                format!("1{s}")
            };
            s.parse().expect("decimal digits parse")
        }),
    ]
    .prop_filter("448 bits at most", |i| {
        banana::encode_to_vec(&Element::Int(i.clone())).is_ok()
    })
}

fn element() -> impl Strategy<Value = Element> {
    let leaf = prop_oneof![
        integer().prop_map(Element::Int),
        any::<u64>().prop_map(|b| Element::Float(f64::from_bits(b))),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Element::Bytes(Bytes::from(b))),
        (1u64..=31).prop_map(|i| Element::Vocab(Word::from_index(i).expect("1..=31"))),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        proptest::collection::vec(inner, 0..8).prop_map(Element::List)
    })
}

fn decode_all(
    bytes: &[u8],
    dialect: Dialect,
    chunks: &[usize],
) -> Result<Vec<Element>, banana::DecodeError> {
    let mut d = Decoder::new(Limits::default());
    d.set_dialect(dialect);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(e) = d.decode(&mut buf)? {
            out.push(e);
        }
    }
    d.finish(&buf)?;
    Ok(out)
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        integer().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("not NaN", |f| !f.is_nan())
            .prop_map(Value::Float),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(|b| Value::Bytes(Bytes::from(b))),
        ".{0,12}".prop_map(Value::text),
        (1i64..1000).prop_map(Value::Remote),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Tuple),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Set),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Dict),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn elements_round_trip_in_any_chunking(e in element(), chunks in proptest::collection::vec(1usize..50, 1..8)) {
        let bytes = banana::encode_to_vec(&e).expect("generated elements encode");
        let back = decode_all(&bytes, Dialect::Pb, &chunks).expect("own encoding decodes");
        prop_assert_eq!(back.len(), 1);
        prop_assert!(exactly_equal(&back[0], &e));
    }

    #[test]
    fn notation_round_trips(e in element()) {
        let text = notation::to_string(&e);
        let back = notation::parse(&text).expect("printed notation parses");
        prop_assert_eq!(back.len(), 1);
        prop_assert!(exactly_equal(&back[0], &e), "{}", text);
    }

    #[test]
    fn values_round_trip_in_both_dialects(v in value()) {
        for dialect in [Dialect::None, Dialect::Pb] {
            let e = jelly::encode(&v, dialect).expect("shallow values encode");
            let bytes = banana::encode_to_vec(&e).expect("values encode");
            let back = decode_all(&bytes, dialect, &[7]).expect("own encoding decodes");
            prop_assert_eq!(&jelly::decode(&back[0]).expect("own jelly decodes"), &v);
        }
    }

    /// Jelly and PB read an expression in place exactly as they read its tree: same
    /// values, same errors.
    #[test]
    fn in_place_and_tree_decoding_agree(
        e in prop_oneof![
            element(),
            value().prop_map(|v| jelly::encode(&v, Dialect::Pb).expect("shallow values encode")),
        ],
    ) {
        let word = |w: &[u8]| Element::Vocab(Word::lookup(w).expect("a vocabulary word"));
        let security = jelly::Security::default();
        for wrapped in [
            e.clone(),
            Element::List(vec![word(b"answer"), Element::int(1), e.clone()]),
            Element::List(vec![
                word(b"message"), Element::int(2), Element::Bytes("root".into()),
                Element::Bytes("m".into()), Element::int(1), e.clone(), e.clone(),
            ]),
        ] {
            let bytes = banana::encode_to_vec(&wrapped).expect("generated elements encode");
            let mut d = Decoder::new(Limits::default());
            d.set_dialect(Dialect::Pb);
            let mut buf = BytesMut::from(&bytes[..]);
            let tree = d.decode(&mut BytesMut::from(&bytes[..])).expect("decodes").expect("whole");
            let mut d2 = Decoder::new(Limits::default());
            d2.set_dialect(Dialect::Pb);
            let r = d2.decode_ref(&mut buf).expect("decodes").expect("whole");
            prop_assert!(exactly_equal(&r.to_element(), &tree));
            // Debug output: NaN floats compare unequal as values.
            prop_assert_eq!(
                format!("{:?}", jelly::decode_ref(r, &security)),
                format!("{:?}", jelly::decode(&tree))
            );
            prop_assert_eq!(
                format!("{:?}", pbwire::pb::decode_ref(r, &security)),
                format!("{:?}", pbwire::pb::decode(&tree, &security))
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_are_stable(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut d = Decoder::new(Limits::default());
        d.set_dialect(Dialect::Pb);
        let mut buf = BytesMut::from(&bytes[..]);
        let mut decoded = Vec::new();
        while let Ok(Some(e)) = d.decode(&mut buf) {
            decoded.push(e);
        }
        prop_assert!(d.consumed() <= bytes.len() as u64);
        for e in &decoded {
            let _ = jelly::decode(e);
            let _ = pbwire::pb::decode(e, &jelly::Security::default());
            let again = banana::encode_to_vec(e).expect("decoded elements re-encode");
            let back = decode_all(&again, Dialect::Pb, &[again.len().max(1)]).expect("re-encoding decodes");
            prop_assert!(exactly_equal(&back[0], e));
        }
    }

    /// Expressions fed whole, or a byte at a time (the decoder resuming at every
    /// byte), give the same elements, the same error at the same offset, and consume
    /// the same bytes, also at tight limits.
    #[test]
    fn whole_and_piecemeal_input_decode_alike(
        e in element(),
        tail in proptest::collection::vec(any::<u8>(), 0..100),
        max_depth in 1usize..6,
        max_string_len in 0usize..40,
        max_message_bytes in 1usize..200,
        max_message_elements in 1usize..30,
    ) {
        let limits = Limits { max_depth, max_string_len, max_list_len: 20, max_message_bytes, max_message_elements, ..Limits::default() };
        let mut bytes = banana::encode_to_vec(&e).expect("elements encode");
        bytes.extend_from_slice(&tail);
        let run = |piece: usize| {
            let mut d = Decoder::new(limits);
            d.set_dialect(Dialect::Pb);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let mut error = None;
            'feed: for chunk in bytes.chunks(piece) {
                buf.extend_from_slice(chunk);
                loop {
                    match d.decode(&mut buf) {
                        Ok(Some(e)) => out.push(e),
                        Ok(None) => break,
                        Err(e) => { error = Some(e); break 'feed; }
                    }
                }
            }
            (out, error, d.consumed())
        };
        let (whole, piecemeal) = (run(bytes.len().max(1)), run(1));
        prop_assert_eq!(whole.1, piecemeal.1);
        prop_assert_eq!(whole.2, piecemeal.2);
        prop_assert_eq!(whole.0.len(), piecemeal.0.len());
        for (a, b) in whole.0.iter().zip(&piecemeal.0) {
            prop_assert!(exactly_equal(a, b));
        }
    }
}

//! Arbitrary bytes, fed in two chunks, through the banana decoder in both dialects.
//! Invariants: no panic, never more consumed than given, and the same expressions
//! whatever the chunking.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pbwire::banana::{exactly_equal, Decoder, Dialect, Element};
use pbwire::Limits;

fn run(data: &[u8], split: usize, dialect: Dialect) -> (Vec<Element>, bool) {
    let mut d = Decoder::new(Limits { max_message_bytes: 1 << 16, ..Limits::default() });
    d.set_dialect(dialect);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut failed = false;
    for part in [&data[..split], &data[split..]] {
        buf.extend_from_slice(part);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(e)) => out.push(e),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
    }
    assert!(d.consumed() <= data.len() as u64);
    (out, failed || d.finish(&buf).is_err())
}

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| usize::from(b) % (data.len() + 1));
    for dialect in [Dialect::None, Dialect::Pb] {
        let (whole, whole_failed) = run(data, data.len(), dialect);
        let (parts, parts_failed) = run(data, split, dialect);
        assert_eq!(whole_failed, parts_failed);
        assert_eq!(whole.len(), parts.len());
        assert!(whole.iter().zip(&parts).all(|(a, b)| exactly_equal(a, b)));
    }
});

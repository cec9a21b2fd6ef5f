//! Banana-decoded trees through jelly. Invariants: no panic; whatever unjellies
//! re-jellies to an element that unjellies to the same value.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pbwire::banana::{Decoder, Dialect};
use pbwire::jelly;
use pbwire::Limits;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new(Limits { max_message_bytes: 1 << 16, ..Limits::default() });
    d.set_dialect(Dialect::Pb);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(e)) = d.decode(&mut buf) {
        if let Ok(v) = jelly::decode(&e) {
            let again = jelly::encode(&v, Dialect::Pb).expect("decoded values encode");
            let back = jelly::decode(&again).expect("re-encoded values decode");
            assert!(format!("{back:?}") == format!("{v:?}"));
        }
    }
});

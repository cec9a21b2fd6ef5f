//! Banana-decoded expressions through jelly, read in place and from trees.
//! Invariants: no panic; both readings agree; whatever unjellies re-jellies to an
//! element that unjellies to the same value.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pbwire::banana::{Decoder, Dialect};
use pbwire::jelly::{self, Security};
use pbwire::Limits;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new(Limits { max_message_bytes: 1 << 16, ..Limits::default() });
    d.set_dialect(Dialect::Pb);
    let mut buf = BytesMut::from(data);
    let security = Security::default();
    while let Ok(Some(r)) = d.decode_ref(&mut buf) {
        let e = r.to_element();
        let in_place = jelly::decode_ref(r, &security);
        let from_tree = jelly::decode(&e);
        assert!(format!("{in_place:?}") == format!("{from_tree:?}"));
        if let Ok(v) = from_tree {
            let again = jelly::encode(&v, Dialect::Pb).expect("decoded values encode");
            let back = jelly::decode(&again).expect("re-encoded values decode");
            assert!(format!("{back:?}") == format!("{v:?}"));
        }
    }
});

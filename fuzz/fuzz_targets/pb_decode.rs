//! Banana-decoded expressions as PB messages, read in place and from trees.
//! Invariants: no panic; both readings agree; a decoded message re-encodes to a tree
//! that decodes to the same message.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pbwire::banana::{Decoder, Dialect};
use pbwire::jelly::Security;
use pbwire::{pb, Limits};

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new(Limits { max_message_bytes: 1 << 16, ..Limits::default() });
    d.set_dialect(Dialect::Pb);
    let mut buf = BytesMut::from(data);
    let security = Security::default();
    while let Ok(Some(r)) = d.decode_ref(&mut buf) {
        let e = r.to_element();
        let in_place = pb::decode_ref(r, &security);
        let from_tree = pb::decode(&e, &security);
        assert!(format!("{in_place:?}") == format!("{from_tree:?}"));
        if let Ok(m) = from_tree {
            let again = pb::encode(&m, Dialect::Pb).expect("decoded messages encode");
            let back = pb::decode(&again, &security).expect("re-encoded messages decode");
            assert!(format!("{back:?}") == format!("{m:?}"));
        }
    }
});

//! Banana-decoded trees as PB messages. Invariants: no panic; a decoded message
//! re-encodes to a tree that decodes to the same message.
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
    while let Ok(Some(e)) = d.decode(&mut buf) {
        if let Ok(m) = pb::decode(&e, &security) {
            let again = pb::encode(&m, Dialect::Pb).expect("decoded messages encode");
            let back = pb::decode(&again, &security).expect("re-encoded messages decode");
            assert!(format!("{back:?}") == format!("{m:?}"));
        }
    }
});

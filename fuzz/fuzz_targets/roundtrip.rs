//! decode → encode → decode: the second decode equals the first, and for canonical
//! input (what Twisted writes) the bytes come back unchanged.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pbwire::banana::{self, exactly_equal, Decoder, Dialect};
use pbwire::Limits;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new(Limits { max_message_bytes: 1 << 16, ..Limits::default() });
    d.set_dialect(Dialect::Pb);
    let mut buf = BytesMut::from(data);
    let mut start = 0usize;
    while let Ok(Some(e)) = d.decode(&mut buf) {
        let end = d.consumed() as usize;
        assert!(start <= end && end <= data.len());
        let bytes = banana::encode_to_vec(&e).expect("decoded elements re-encode");
        let mut d2 = Decoder::new(Limits::default());
        d2.set_dialect(Dialect::Pb);
        let mut b2 = BytesMut::from(&bytes[..]);
        let back = d2.decode(&mut b2).expect("canonical bytes decode").expect("one element");
        assert!(exactly_equal(&back, &e));
        assert!(b2.is_empty());
        // Encoding is canonical: a second encode gives the same bytes.
        assert_eq!(banana::encode_to_vec(&back).expect("encodes"), bytes);
        start = end;
    }
});

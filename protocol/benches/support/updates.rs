//! The synthetic stream both the criterion benchmark and `wirebench` decode: the
//! worker side of a connection sending `update` calls that carry stdout, as
//! buildbot-worker 4.x does (one key per call, text, up to 64 KiB per chunk).

use bytes::{Bytes, BytesMut};
use pbwire::banana::{self, negotiation, Dialect};
use pbwire::jelly::Value;
use pbwire::pb::{self, Call, Message, ObjectId};

fn put(out: &mut BytesMut, m: &Message) {
    let e = pb::encode(m, Dialect::Pb).expect("messages encode");
    banana::encode(&e, out).expect("messages encode");
}

/// At least `total` bytes: the dialect choice, `version`, then updates of `chunk` bytes
/// of text each on command object 3.
pub fn updates(total: usize, chunk: usize) -> Vec<u8> {
    let line = "compiling module_0042.c ... ok, 17 warnings suppressed, elapsed 0.031s\n";
    let text: String = line.chars().cycle().take(chunk).collect();
    let mut out = BytesMut::new();
    banana::encode(&negotiation::choice(Dialect::Pb), &mut out).expect("choice encodes");
    put(&mut out, &Message::Version(pb::PROTOCOL_VERSION));
    let mut id = 1;
    while out.len() < total {
        let update = Value::List(vec![Value::List(vec![
            Value::Dict(vec![(Value::text("stdout"), Value::text(text.clone()))]),
            Value::int(0),
        ])]);
        let call = Call {
            request_id: id,
            object: ObjectId::Id(3),
            method: Bytes::from_static(b"update"),
            answer_required: true,
            args: vec![update],
            kwargs: vec![],
        };
        put(&mut out, &Message::Call(call));
        id += 1;
    }
    out.to_vec()
}

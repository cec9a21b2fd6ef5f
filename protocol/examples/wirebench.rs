//! Decode-throughput measurements for the side-by-side comparison with Twisted
//! (`bench/codec-vs-twisted.sh`), and a generator for the synthetic stream.
//!
//! ```text
//! wirebench generate FILE MEGABYTES CHUNK_KIB   # worker→master `update` calls carrying stdout
//! wirebench decode FILE LEVEL REPEAT            # LEVEL: banana | pb | memcpy
//! ```
//! `decode` reads the stream in 64 KiB pieces as a socket would, follows the dialect
//! negotiation, and prints one JSON line: bytes, seconds, MB/s, expressions.

use bytes::{Bytes, BytesMut};
use pbwire::banana::{self, negotiation, Decoder, Dialect, Element};
use pbwire::jelly::{Security, Value};
use pbwire::pb::{self, Call, Message, ObjectId};
use pbwire::Limits;
use std::time::Instant;

const READ: usize = 64 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("generate") if args.len() == 5 => {
            let mb: usize = args[3].parse().expect("MEGABYTES");
            let chunk: usize = args[4].parse::<usize>().expect("CHUNK_KIB") * 1024;
            std::fs::write(&args[2], generate(mb * 1_000_000, chunk)).expect("write");
        }
        Some("decode") if args.len() == 5 => {
            let data = std::fs::read(&args[2]).expect("read");
            let repeat: usize = args[4].parse().expect("REPEAT");
            decode(&data, &args[3], repeat);
        }
        _ => {
            eprintln!("usage: wirebench generate FILE MEGABYTES CHUNK_KIB | decode FILE banana|pb|memcpy REPEAT");
            std::process::exit(2);
        }
    }
}

/// The worker side of a connection: the dialect choice, `version`, then `update`
/// calls on command 3 each carrying one chunk of stdout, as buildbot-worker 4.x sends.
fn generate(total: usize, chunk: usize) -> Vec<u8> {
    let mut out = BytesMut::new();
    banana::encode(&negotiation::choice(Dialect::Pb), &mut out).expect("choice");
    banana::encode(
        &pb::encode(&Message::Version(6), Dialect::Pb).expect("version"),
        &mut out,
    )
    .expect("version");
    let line = b"compiling module_0042.c ... ok, 17 warnings suppressed, elapsed 0.031s\n";
    let text: Vec<u8> = line.iter().copied().cycle().take(chunk).collect();
    let text = String::from_utf8(text).expect("ASCII");
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
        banana::encode(
            &pb::encode(&Message::Call(call), Dialect::Pb).expect("update"),
            &mut out,
        )
        .expect("update");
        id += 1;
    }
    out.to_vec()
}

fn decode(data: &[u8], level: &str, repeat: usize) {
    let security = Security::default();
    let mut expressions = 0usize;
    let start = Instant::now();
    for _ in 0..repeat {
        if level == "memcpy" {
            // The floor: every byte copied once, in the same 64 KiB pieces, into a
            // reused buffer (as reading from a socket does).
            let mut sink = vec![0u8; READ];
            for piece in data.chunks(READ) {
                sink[..piece.len()].copy_from_slice(piece);
                std::hint::black_box(&mut sink);
            }
            continue;
        }
        let mut d = Decoder::new(Limits::default());
        let mut buf = BytesMut::with_capacity(READ * 2);
        let mut negotiating = true;
        for piece in data.chunks(READ) {
            buf.extend_from_slice(piece);
            while let Some(e) = d.decode(&mut buf).expect("valid stream") {
                expressions += 1;
                if negotiating {
                    negotiating = false;
                    d.set_dialect(match &e {
                        Element::List(_) => negotiation::choose(&e).expect("offer"),
                        _ => negotiation::accept(&e).expect("choice"),
                    });
                } else if level == "pb" {
                    std::hint::black_box(pb::decode(&e, &security).expect("valid message"));
                }
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let bytes = data.len() * repeat;
    println!(
        "{{\"impl\": \"pbwire\", \"level\": \"{level}\", \"bytes\": {bytes}, \"seconds\": {seconds:.6}, \"mb_per_s\": {:.2}, \"expressions\": {expressions}}}",
        bytes as f64 / seconds / 1e6
    );
}

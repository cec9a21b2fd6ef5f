//! Decode-throughput measurements for the side-by-side comparison with Twisted
//! (`bench/codec-vs-twisted.sh`), and a generator for the synthetic stream.
//!
//! ```text
//! wirebench generate FILE MEGABYTES CHUNK_KIB   # worker→master `update` calls carrying stdout
//! wirebench decode FILE LEVEL REPEAT            # LEVEL: banana | pb | tree | memcpy
//! ```
//! `decode` reads the stream in 64 KiB pieces as a socket would, follows the dialect
//! negotiation, and prints one JSON line: bytes, seconds, MB/s, expressions. Level
//! `banana` decodes each expression in place (`Decoder::decode_ref`), `pb` also reads
//! the PB message from it, and `tree` builds owned `Element` trees
//! (`Decoder::decode`).

use bytes::BytesMut;
use pbwire::banana::{negotiation, Decoder, Element};
use pbwire::jelly::Security;
use pbwire::pb;
use pbwire::Limits;
use std::time::Instant;

#[path = "../benches/support/updates.rs"]
mod updates;

const READ: usize = 64 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("generate") if args.len() == 5 => {
            let mb: usize = args[3].parse().expect("MEGABYTES");
            let chunk: usize = args[4].parse::<usize>().expect("CHUNK_KIB") * 1024;
            std::fs::write(&args[2], updates::updates(mb * 1_000_000, chunk)).expect("write");
        }
        Some("decode") if args.len() == 5 => {
            let data = std::fs::read(&args[2]).expect("read");
            let repeat: usize = args[4].parse().expect("REPEAT");
            decode(&data, &args[3], repeat);
        }
        _ => {
            eprintln!("usage: wirebench generate FILE MEGABYTES CHUNK_KIB | decode FILE banana|pb|tree|memcpy REPEAT");
            std::process::exit(2);
        }
    }
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
            if level == "tree" {
                while let Some(e) = d.decode(&mut buf).expect("valid stream") {
                    expressions += 1;
                    if negotiating {
                        negotiating = false;
                        d.set_dialect(match &e {
                            Element::List(_) => negotiation::choose(&e).expect("offer"),
                            _ => negotiation::accept(&e).expect("choice"),
                        });
                    }
                    std::hint::black_box(e);
                }
                continue;
            }
            // Expressions are read in place, as the broker reads them.
            while let Some(e) = d.decode_ref(&mut buf).expect("valid stream") {
                expressions += 1;
                if negotiating {
                    negotiating = false;
                    let e = e.to_element();
                    d.set_dialect(match &e {
                        Element::List(_) => negotiation::choose(&e).expect("offer"),
                        _ => negotiation::accept(&e).expect("choice"),
                    });
                } else if level == "pb" {
                    std::hint::black_box(pb::decode_ref(e, &security).expect("valid message"));
                } else {
                    std::hint::black_box(e);
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

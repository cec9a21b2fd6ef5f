//! Decode and encode throughput: the recorded buildbot sessions and a synthetic stream
//! of `update` calls carrying 64 KiB stdout chunks. `cargo bench -p pbwire`.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pbwire::banana::{self, negotiation, Decoder, Element};
use pbwire::jelly::Security;
use pbwire::pb;
use pbwire::Limits;
use std::path::Path;

#[path = "support/updates.rs"]
mod updates;

fn decode_all(data: &[u8], typed: bool) -> Vec<Element> {
    let mut d = Decoder::new(Limits::default());
    let mut buf = BytesMut::from(data);
    let mut out = Vec::new();
    let security = Security::default();
    while let Some(e) = d.decode(&mut buf).expect("valid stream") {
        if out.is_empty() {
            d.set_dialect(match &e {
                Element::List(_) => negotiation::choose(&e).expect("offer"),
                _ => negotiation::accept(&e).expect("choice"),
            });
        } else if typed {
            std::hint::black_box(pb::decode(&e, &security).expect("message"));
        }
        out.push(e);
    }
    out
}

fn inputs() -> Vec<(String, Vec<u8>)> {
    let mut out = vec![(
        "updates-8MB".to_owned(),
        updates::updates(8_000_000, 64 * 1024),
    )];
    // The recorded sessions live outside the crate: from the published package, where
    // they are absent, only the synthetic stream is measured.
    let sessions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/sessions");
    for entry in std::fs::read_dir(sessions).into_iter().flatten().flatten() {
        for direction in ["m2w", "w2m"] {
            if let Ok(data) = std::fs::read(entry.path().join(format!("{direction}.bin"))) {
                out.push((
                    format!("{}/{direction}", entry.file_name().to_string_lossy()),
                    data,
                ));
            }
        }
    }
    out.sort();
    out
}

fn bench(c: &mut Criterion) {
    for (name, data) in inputs() {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function("decode banana", |b| b.iter(|| decode_all(&data, false)));
        g.bench_function("decode pb", |b| b.iter(|| decode_all(&data, true)));
        let elements = decode_all(&data, false);
        g.bench_function("encode banana", |b| {
            b.iter(|| {
                let mut out = BytesMut::with_capacity(data.len());
                for e in &elements {
                    banana::encode(e, &mut out).expect("encode");
                }
                out
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

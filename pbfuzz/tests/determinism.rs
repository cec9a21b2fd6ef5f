//! One seed, the same cases and bytes: in a dry build of every case, and in two runs
//! against the same target.

mod support;

use pbfuzz::cases::{self, Ctx};
use pbfuzz::replay::Recording;
use pbfuzz::run::{self, Options};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn recordings() -> Vec<Arc<Recording>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/sessions");
    ["worker-4.3.0", "slave-0.8.14"]
        .iter()
        .map(|n| Arc::new(Recording::load(&dir.join(n)).unwrap_or_else(|e| panic!("{e}"))))
        .collect()
}

/// Every case's name and bytes for an example session.
fn dry(seed: u64) -> Vec<(String, Vec<u8>)> {
    let ctx = Ctx::example("echo");
    cases::all(seed, true, 50, &recordings(), 30)
        .iter()
        .map(|c| (c.name.clone(), c.build(&ctx).flat()))
        .collect()
}

#[test]
fn the_same_seed_builds_the_same_bytes() {
    let (a, b, c) = (dry(7), dry(7), dry(8));
    assert_eq!(a.len(), 88 + 50 + 60);
    assert_eq!(a, b);
    // The table is fixed; the random and replay cases follow the seed.
    assert_eq!(a[..88], c[..88]);
    let differ = a[88..]
        .iter()
        .zip(&c[88..])
        .filter(|(x, y)| x.1 != y.1)
        .count();
    assert!(differ > 90, "only {differ} of 110 seeded cases differ");
}

/// (case, bytes) of a run against the fake target.
async fn sent(seed: u64, addr: std::net::SocketAddr) -> Vec<(Value, Value)> {
    let mut opts = Options::new(support::profile(addr));
    opts.reply_timeout = Duration::from_secs(1);
    opts.minimize = false;
    let recs = recordings();
    let cases: Vec<_> = cases::all(seed, false, 12, &recs[..1], 8);
    let mut lines = Vec::new();
    run::run(&opts, &cases, &mut |l| lines.push(l)).await;
    lines
        .into_iter()
        .filter(|l| l["event"] == "case")
        .map(|l| (l["case"].clone(), l["bytes"].clone()))
        .collect()
}

#[tokio::test]
async fn the_same_seed_sends_the_same_bytes() {
    let addr = support::fake_target(b"").await;
    let (a, b) = (sent(3, addr).await, sent(3, addr).await);
    assert_eq!(a.len(), 20);
    assert!(a.iter().all(|(_, bytes)| bytes.is_array()), "{a:?}");
    assert_eq!(a, b);
}

//! The minimizer against a target that stalls on one byte pattern: whatever surrounds
//! the pattern, the minimized bytes are exactly the pattern, the shortest sequence
//! that stalls it.

mod support;

use pbfuzz::cases::Payload;
use pbfuzz::run::{execute, shrink, Options, Outcome};
use pbfuzz::wire::Rng;
use std::time::Duration;

const PATTERN: &[u8] = b"\x83\x81\x80\x82\x81";

#[tokio::test]
async fn a_stall_is_minimized_to_the_pattern_that_causes_it() {
    let addr = support::fake_target(PATTERN).await;
    let mut opts = Options::new(support::profile(addr));
    // The fake answers in microseconds; a second means it will not.
    opts.reply_timeout = Duration::from_secs(1);
    opts.minimize_tests = 2_000;
    opts.minimize_time = Duration::from_secs(600);

    // Filler of whole one-byte elements (int 0, neg 0, empty list and string): none is
    // a PB message, so without the pattern the target drops the connection at once,
    // and none leaves an element open that would swallow the probe.
    let mut rng = Rng::new(42);
    let filler = |rng: &mut Rng, n| {
        (0..n)
            .map(|_| 0x80 + rng.below(4) as u8)
            .collect::<Vec<u8>>()
    };
    let mut bytes = filler(&mut rng, 40);
    bytes.extend_from_slice(PATTERN);
    bytes.extend(filler(&mut rng, 40));
    let payload = Payload::once(bytes.clone());

    let first = execute(&opts, &|_| payload.clone()).await;
    assert_eq!(first.outcome, Outcome::Stalled, "{first:?}");
    let without = Payload::once(filler(&mut rng, 80));
    let other = execute(&opts, &|_| without.clone()).await;
    assert_eq!(other.outcome, Outcome::Dropped, "{other:?}");

    let m = shrink(&opts, Outcome::Stalled, payload).await;
    assert!(m.complete, "{m:?}");
    assert_eq!(m.payload.flat(), PATTERN, "{m:?}");
    // Shortest: any shorter subsequence of the input lacks a byte of the pattern, and
    // the minimizer tried removing each one.
    let again = execute(&opts, &|_| m.payload.clone()).await;
    assert_eq!(again.outcome, Outcome::Stalled);
}

//! Shrinks the bytes of a case while a test (the case's outcome against the target)
//! still holds: first the runs (drop a piece, halve a repeat count), then, once the
//! bytes are few enough to try one by one, delta debugging (drop chunks, halving
//! their size) and a last pass over single bytes. The result is 1-minimal: removing
//! any one byte loses the outcome.

use crate::cases::{Payload, Piece};
use std::collections::HashSet;
use std::future::Future;
use tokio::time::Instant;

/// Above this many bytes only the runs are shrunk: byte by byte would take too long.
pub const FLAT_LIMIT: usize = 64 * 1024;

/// When to stop trying.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub tests: usize,
    pub until: Instant,
}

/// What the minimizer found.
#[derive(Debug, Clone)]
pub struct Minimized {
    pub payload: Payload,
    /// Tests run (each a connection to the target).
    pub tests: usize,
    /// False when the budget ran out first: smaller may exist.
    pub complete: bool,
}

struct Search<F> {
    test: F,
    tests: usize,
    budget: Budget,
    seen: HashSet<Vec<Piece>>,
    out_of_budget: bool,
}

impl<F, Fut> Search<F>
where
    F: FnMut(Payload) -> Fut,
    Fut: Future<Output = bool>,
{
    /// Whether `candidate` still gives the outcome; false, untested, once the budget
    /// is spent or for a candidate tried before.
    async fn holds(&mut self, candidate: &Payload) -> bool {
        if self.tests >= self.budget.tests || Instant::now() >= self.budget.until {
            self.out_of_budget = true;
            return false;
        }
        if !self.seen.insert(candidate.pieces.clone()) {
            return false;
        }
        self.tests += 1;
        (self.test)(candidate.clone()).await
    }
}

/// Shrinks `payload` while `test` says the outcome holds. `test` is not run on
/// `payload` itself (it is the case that gave the outcome).
pub async fn minimize<F, Fut>(payload: Payload, budget: Budget, test: F) -> Minimized
where
    F: FnMut(Payload) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut s = Search {
        test,
        tests: 0,
        budget,
        seen: HashSet::new(),
        out_of_budget: false,
    };
    s.seen.insert(payload.pieces.clone());
    let mut best = payload;
    // Nothing at all: a target that gives the outcome anyway.
    let empty = with_pieces(&best, vec![]);
    if s.holds(&empty).await {
        return Minimized {
            payload: empty,
            tests: s.tests,
            complete: true,
        };
    }
    best = shrink_runs(&mut s, best).await;
    if best.len() <= FLAT_LIMIT {
        best = shrink_bytes(&mut s, best).await;
    }
    Minimized {
        payload: best,
        tests: s.tests,
        complete: !s.out_of_budget,
    }
}

fn with_pieces(p: &Payload, pieces: Vec<Piece>) -> Payload {
    Payload {
        pieces: pieces
            .into_iter()
            .filter(|p| p.repeat > 0 && !p.bytes.is_empty())
            .collect(),
        after: p.after,
        patience: p.patience,
    }
}

/// Drops whole pieces, then halves repeat counts.
async fn shrink_runs<F, Fut>(s: &mut Search<F>, mut best: Payload) -> Payload
where
    F: FnMut(Payload) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut i = best.pieces.len();
    while i > 0 && best.pieces.len() > 1 {
        i -= 1;
        let mut pieces = best.pieces.clone();
        pieces.remove(i);
        let cand = with_pieces(&best, pieces);
        if s.holds(&cand).await {
            best = cand;
        }
        i = i.min(best.pieces.len());
    }
    for i in 0..best.pieces.len() {
        while best.pieces[i].repeat > 1 {
            let mut pieces = best.pieces.clone();
            pieces[i].repeat /= 2;
            let cand = with_pieces(&best, pieces);
            if !s.holds(&cand).await {
                break;
            }
            best = cand;
        }
    }
    best
}

/// Delta debugging over the flat bytes, then single bytes until none can go.
async fn shrink_bytes<F, Fut>(s: &mut Search<F>, best: Payload) -> Payload
where
    F: FnMut(Payload) -> Fut,
    Fut: Future<Output = bool>,
{
    let original = best.flat();
    let mut data = original.clone();
    let as_payload = |d: &[u8]| {
        with_pieces(
            &best,
            vec![Piece {
                bytes: d.to_vec(),
                repeat: 1,
            }],
        )
    };
    let mut n = 2usize;
    while data.len() >= 2 && !s.out_of_budget {
        let chunk = data.len().div_ceil(n);
        let mut removed = false;
        let mut start = 0;
        while start < data.len() {
            let end = (start + chunk).min(data.len());
            let mut cand = data[..start].to_vec();
            cand.extend_from_slice(&data[end..]);
            if s.holds(&as_payload(&cand)).await {
                data = cand;
                removed = true;
                break;
            }
            start = end;
        }
        if removed {
            n = (n - 1).max(2);
        } else if n >= data.len() {
            break;
        } else {
            n = (n * 2).min(data.len());
        }
    }
    // Single bytes, until a whole pass removes nothing.
    let mut changed = true;
    while changed && !s.out_of_budget {
        changed = false;
        let mut i = data.len();
        while i > 0 {
            i -= 1;
            let mut cand = data.clone();
            cand.remove(i);
            if s.holds(&as_payload(&cand)).await {
                data = cand;
                changed = true;
            }
            i = i.min(data.len());
        }
    }
    if data == original {
        // Nothing went: keep the runs as they were, compact to print.
        return best;
    }
    as_payload(&data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn budget() -> Budget {
        Budget {
            tests: 100_000,
            until: Instant::now() + Duration::from_secs(600),
        }
    }

    #[tokio::test]
    async fn keeps_only_the_bytes_the_outcome_needs() {
        let mut data: Vec<u8> = (0u8..200).collect();
        data.splice(90..90, *b"\xaa\xbb\xcc");
        let m = minimize(Payload::once(data), budget(), |p| async move {
            p.flat().windows(3).any(|w| w == b"\xaa\xbb\xcc")
        })
        .await;
        assert_eq!(m.payload.flat(), b"\xaa\xbb\xcc");
        assert!(m.complete);
    }

    #[tokio::test]
    async fn halves_runs_and_drops_pieces() {
        let p = Payload {
            pieces: vec![
                Piece {
                    bytes: vec![1; 10_000],
                    repeat: 1,
                },
                Piece {
                    bytes: vec![2, 3],
                    repeat: 1 << 20,
                },
            ],
            after: crate::cases::After::Probe,
            patience: 1,
        };
        // Holds while at least 1000 of the second piece are sent.
        let m = minimize(p, budget(), |p| async move {
            p.pieces
                .iter()
                .any(|x| x.bytes == [2, 3] && x.repeat >= 1000)
        })
        .await;
        assert_eq!(m.payload.pieces.len(), 1);
        assert_eq!(m.payload.pieces[0].repeat, 1024);
        assert_eq!(m.payload.len(), 2048);
    }

    #[tokio::test]
    async fn stops_at_the_budget() {
        let data: Vec<u8> = (0u8..100).collect();
        let b = Budget {
            tests: 5,
            until: Instant::now() + Duration::from_secs(60),
        };
        let m = minimize(Payload::once(data), b, |_| async { true }).await;
        // The empty payload holds at once: the first test.
        assert_eq!((m.tests, m.payload.len()), (1, 0));
        let m = minimize(Payload::once((0u8..100).collect()), b, |p| async move {
            p.len() > 50
        })
        .await;
        assert!(!m.complete);
        assert_eq!(m.tests, 5);
    }
}

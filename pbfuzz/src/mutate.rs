//! Seeded byte edits of valid messages, shared by the random and the replay cases.

use crate::wire::{header, headers, Rng};

/// One edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Flip one bit.
    Flip,
    /// Insert one random byte.
    Insert,
    /// Delete one byte.
    Delete,
    /// Repeat a run of 1 to 8 bytes in place.
    Duplicate,
    /// Cut the bytes short.
    Truncate,
    /// Make one element header promise more than follows.
    Inflate,
    /// Replace the tail with the tail of another message.
    Splice,
}

/// Lengths an inflated header may take: boundaries of the common limits, and huge.
const INFLATED: &[u64] = &[
    64,
    65,
    1024,
    640 * 1024,
    640 * 1024 + 1,
    1 << 31,
    1 << 32,
    1 << 63,
];

/// Applies `op` to `v`; `donor` feeds [`Op::Splice`] (nothing happens without one).
pub fn apply(op: Op, v: &mut Vec<u8>, donor: &[u8], rng: &mut Rng) {
    let at = rng.below(v.len() + 1);
    match op {
        Op::Flip if at < v.len() => v[at] ^= 1 << rng.below(8),
        Op::Insert => v.insert(at, rng.next_u64() as u8),
        Op::Delete if at < v.len() => {
            v.remove(at);
        }
        Op::Truncate => v.truncate(at),
        Op::Inflate => {
            let hs = headers(v);
            if hs.is_empty() {
                return;
            }
            let h = hs[rng.below(hs.len())];
            let n = match rng.below(3) {
                0 => h.n.saturating_add(1),
                1 => h.n.saturating_mul(2).saturating_add(1),
                _ => INFLATED[rng.below(INFLATED.len())],
            };
            v.splice(h.start..=h.type_at, header(n, h.ty));
        }
        Op::Splice if !donor.is_empty() => {
            let from = rng.below(donor.len());
            v.truncate(at);
            v.extend_from_slice(&donor[from..]);
        }
        // A flip or delete past the end, a splice without a donor: duplicate instead.
        _ => {
            let end = (at + 1 + rng.below(8)).min(v.len());
            let dup = v[at.min(end)..end].to_vec();
            v.splice(at..at, dup);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::from_notation;

    #[test]
    fn inflate_grows_a_header_and_keeps_the_rest() {
        let v = from_notation("(message 1 b'abc')").unwrap_or_default();
        for seed in 0..50 {
            let mut w = v.clone();
            apply(Op::Inflate, &mut w, &[], &mut Rng::new(seed));
            let (a, b) = (headers(&v), headers(&w));
            assert!(
                a.iter().zip(&b).any(|(x, y)| y.n > x.n),
                "seed {seed}: {w:02x?}"
            );
        }
    }

    #[test]
    fn the_same_seed_makes_the_same_edits() {
        let v =
            from_notation("(message 1 b'root' b'x' 1 (tuple) (dictionary))").unwrap_or_default();
        let edit = |seed| {
            let mut w = v.clone();
            let mut rng = Rng::new(seed);
            for op in [Op::Flip, Op::Insert, Op::Splice, Op::Inflate, Op::Truncate] {
                apply(op, &mut w, b"donor", &mut rng);
            }
            w
        };
        assert_eq!(edit(9), edit(9));
        assert_ne!(edit(9), edit(10));
    }
}

//! Integers of any size that banana can carry (up to 448 bits).

use num_bigint::{BigInt, Sign};
use num_traits::{Signed, ToPrimitive, Zero};
use std::fmt;

/// An integer as banana carries it: small values stay machine words, larger ones (up
/// to the 448 bits a 64-byte prefix allows) are big integers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Integer {
    /// A value that fits an `i64`.
    Small(i64),
    /// A value that does not (constructors normalise fitting values to `Small`). Boxed:
    /// rare, and it keeps every integer (and every value holding one) two words.
    Big(Box<BigInt>),
}

impl Integer {
    /// Builds from a sign and base-128 little-endian digits, as a banana prefix holds them.
    pub(crate) fn from_base128(negative: bool, digits: &[u8]) -> Integer {
        if digits.len() <= 9 {
            // 9 × 7 = 63 bits: always fits an i64 of either sign.
            let mut v: i64 = 0;
            for &d in digits.iter().rev() {
                v = (v << 7) | i64::from(d);
            }
            return Integer::Small(if negative { -v } else { v });
        }
        let mut big = BigInt::zero();
        for &d in digits.iter().rev() {
            big = (big << 7u32) | BigInt::from(d);
        }
        if negative {
            big = -big;
        }
        Integer::from(big)
    }

    /// The value as an i64, if it fits.
    pub fn to_i64(&self) -> Option<i64> {
        match self {
            Integer::Small(v) => Some(*v),
            Integer::Big(b) => b.to_i64(),
        }
    }

    /// True for values below zero.
    pub fn is_negative(&self) -> bool {
        match self {
            Integer::Small(v) => *v < 0,
            Integer::Big(b) => b.is_negative(),
        }
    }

    /// The magnitude as base-128 little-endian digits; zero is one digit `0`, as
    /// Twisted writes it.
    pub(crate) fn magnitude_base128(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Integer::Small(v) => {
                let mut m = v.unsigned_abs();
                loop {
                    out.push((m & 0x7f) as u8);
                    m >>= 7;
                    if m == 0 {
                        break;
                    }
                }
            }
            Integer::Big(b) => {
                let (_, bytes) = b.to_bytes_le();
                let mut acc: u32 = 0;
                let mut bits = 0;
                for byte in bytes {
                    acc |= u32::from(byte) << bits;
                    bits += 8;
                    while bits >= 7 {
                        out.push((acc & 0x7f) as u8);
                        acc >>= 7;
                        bits -= 7;
                    }
                }
                if bits > 0 {
                    out.push((acc & 0x7f) as u8);
                }
                while out.len() > 1 && out.last() == Some(&0) {
                    out.pop();
                }
                if out.is_empty() {
                    out.push(0);
                }
            }
        }
        out
    }

    /// Whether Twisted's encoder sends this value as INT/NEG (true) or LONGINT/LONGNEG:
    /// the split is at 2³¹−1 above and −2³¹ below.
    pub(crate) fn fits_short(&self) -> bool {
        match self.to_i64() {
            Some(v) => (-(1i64 << 31)..=(1i64 << 31) - 1).contains(&v),
            None => false,
        }
    }
}

impl From<i64> for Integer {
    fn from(v: i64) -> Self {
        Integer::Small(v)
    }
}

impl From<BigInt> for Integer {
    fn from(b: BigInt) -> Self {
        match b.to_i64() {
            Some(v) => Integer::Small(v),
            None => Integer::Big(Box::new(b)),
        }
    }
}

impl std::str::FromStr for Integer {
    type Err = num_bigint::ParseBigIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<i64>() {
            Ok(v) => Ok(Integer::Small(v)),
            Err(_) => s.parse::<BigInt>().map(Integer::from),
        }
    }
}

impl fmt::Display for Integer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Integer::Small(v) => write!(f, "{v}"),
            Integer::Big(b) => write!(f, "{b}"),
        }
    }
}

/// Bits needed for the magnitude; used to refuse values banana cannot carry.
pub(crate) fn magnitude_bits(i: &Integer) -> u64 {
    match i {
        Integer::Small(v) => u64::from(64 - v.unsigned_abs().leading_zeros()),
        Integer::Big(b) => {
            if b.sign() == Sign::NoSign {
                0
            } else {
                b.bits()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base128_round_trips_small_and_big() {
        for s in [
            "0",
            "1",
            "127",
            "128",
            "-5",
            "2147483648",
            "123456789123456789",
        ] {
            let i: Integer = s.parse().unwrap();
            let digits = i.magnitude_base128();
            assert_eq!(Integer::from_base128(i.is_negative(), &digits), i, "{s}");
        }
        let big: Integer = "-726838724295606890549323807888004534353641360687318060281490199180639288113397923326191050713763565560762521606266177933534601628614655".parse().unwrap();
        let digits = big.magnitude_base128();
        assert_eq!(digits.len(), 64);
        assert_eq!(Integer::from_base128(true, &digits), big);
    }

    #[test]
    fn short_split_matches_twisted() {
        assert!(Integer::Small((1 << 31) - 1).fits_short());
        assert!(!Integer::Small(1 << 31).fits_short());
        assert!(Integer::Small(-(1 << 31)).fits_short());
        assert!(!Integer::Small(-(1 << 31) - 1).fits_short());
    }
}

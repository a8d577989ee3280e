//! Integers outside the `i64` range, as the external format carries them.

use std::cmp::Ordering;
use std::fmt;

/// An integer of any size: a sign and a little-endian magnitude.
///
/// This is the shape of `SMALL_BIG_EXT`/`LARGE_BIG_EXT`, so decoding and
/// encoding copy bytes and do no arithmetic. The magnitude never ends in a
/// zero byte and zero is never negative, so two equal values have equal
/// fields and the derived equality is numeric equality.
///
/// [`Term`](super::Term) holds a `BigInt` only for values outside the `i64`
/// range (`Term::from(big)` normalises).
///
/// ```
/// use beamish::dist::BigInt;
/// let b = BigInt::from(u128::MAX);
/// assert_eq!(b.magnitude(), &[0xFF; 16]);
/// assert_eq!(b.to_string(), u128::MAX.to_string());
/// assert_eq!(u128::try_from(&b), Ok(u128::MAX));
/// assert_eq!(BigInt::new(true, vec![0, 0]), BigInt::from(0i64));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BigInt {
    negative: bool,
    magnitude: Vec<u8>,
}

/// The value does not fit the integer type asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange;

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("integer out of range")
    }
}

impl std::error::Error for OutOfRange {}

impl BigInt {
    /// A value from its sign and little-endian magnitude (normalised: high
    /// zero bytes are dropped, and zero is not negative).
    pub fn new(negative: bool, mut magnitude: Vec<u8>) -> BigInt {
        let len = significant_len(&magnitude);
        magnitude.truncate(len);
        BigInt {
            negative: negative && len > 0,
            magnitude,
        }
    }

    /// Like [`BigInt::new`] from a borrowed magnitude.
    pub fn from_le_bytes(negative: bool, magnitude: &[u8]) -> BigInt {
        let len = significant_len(magnitude);
        BigInt {
            negative: negative && len > 0,
            magnitude: magnitude.get(..len).unwrap_or_default().to_vec(),
        }
    }

    /// True below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// True for zero.
    pub fn is_zero(&self) -> bool {
        self.magnitude.is_empty()
    }

    /// The absolute value, least significant byte first, with no trailing
    /// zero bytes.
    pub fn magnitude(&self) -> &[u8] {
        &self.magnitude
    }

    /// The value as an `i128`, if it fits.
    pub fn to_i128(&self) -> Option<i128> {
        let m = self.magnitude_u128()?;
        if self.negative {
            if m <= i128::MAX as u128 + 1 {
                Some((m as i128).wrapping_neg())
            } else {
                None
            }
        } else {
            i128::try_from(m).ok()
        }
    }

    /// The value as an `i64`, if it fits.
    pub fn to_i64(&self) -> Option<i64> {
        self.to_i128().and_then(|v| i64::try_from(v).ok())
    }

    /// The value as a `u128`, if it fits.
    pub fn to_u128(&self) -> Option<u128> {
        if self.negative {
            return None;
        }
        self.magnitude_u128()
    }

    fn magnitude_u128(&self) -> Option<u128> {
        if self.magnitude.len() > 16 {
            return None;
        }
        let mut le = [0u8; 16];
        le.get_mut(..self.magnitude.len())?
            .copy_from_slice(&self.magnitude);
        Some(u128::from_le_bytes(le))
    }

    fn from_u128(negative: bool, m: u128) -> BigInt {
        BigInt::from_le_bytes(negative, &m.to_le_bytes())
    }

    /// The integral value of a finite float whose magnitude is at least
    /// 2^53 (every such float is an integer), exactly.
    pub(crate) fn from_integral_f64(f: f64) -> BigInt {
        let bits = f.to_bits();
        let exp = ((bits >> 52) & 0x7FF) as i32 - 1075;
        let mant = (bits & ((1 << 52) - 1)) | (1 << 52);
        let negative = f < 0.0;
        if exp <= 0 {
            return BigInt::from_u128(negative, u128::from(mant >> (-exp).min(63)));
        }
        // mant << exp, byte by byte.
        let shift_bytes = (exp / 8) as usize;
        let shift_bits = (exp % 8) as u32;
        let wide = u128::from(mant) << shift_bits;
        let mut magnitude = vec![0u8; shift_bytes];
        magnitude.extend_from_slice(&wide.to_le_bytes());
        BigInt::new(negative, magnitude)
    }

    /// The value as a float (rounded; infinite beyond the float range).
    pub fn to_f64(&self) -> f64 {
        let mut v = 0.0f64;
        for &b in self.magnitude.iter().rev() {
            v = v * 256.0 + f64::from(b);
        }
        if self.negative { -v } else { v }
    }

    /// The decimal digits of the magnitude.
    fn magnitude_decimal(&self) -> String {
        // Little-endian base-2^32 limbs, divided by 10^9 until zero.
        let mut limbs: Vec<u32> = self
            .magnitude
            .chunks(4)
            .map(|c| {
                let mut w = [0u8; 4];
                for (d, s) in w.iter_mut().zip(c) {
                    *d = *s;
                }
                u32::from_le_bytes(w)
            })
            .collect();
        let mut groups: Vec<u32> = Vec::new();
        while limbs.iter().any(|&l| l != 0) {
            let mut rem: u64 = 0;
            for l in limbs.iter_mut().rev() {
                let cur = (rem << 32) | u64::from(*l);
                *l = (cur / 1_000_000_000) as u32;
                rem = cur % 1_000_000_000;
            }
            groups.push(rem as u32);
            while limbs.last() == Some(&0) {
                limbs.pop();
            }
        }
        let mut s = String::with_capacity(groups.len() * 9 + 1);
        match groups.split_last() {
            None => s.push('0'),
            Some((top, rest)) => {
                s.push_str(&top.to_string());
                for g in rest.iter().rev() {
                    s.push_str(&format!("{g:09}"));
                }
            }
        }
        s
    }
}

fn significant_len(magnitude: &[u8]) -> usize {
    magnitude.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

impl Ord for BigInt {
    fn cmp(&self, other: &BigInt) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (negative, _) => {
                let by_magnitude =
                    self.magnitude
                        .len()
                        .cmp(&other.magnitude.len())
                        .then_with(|| {
                            self.magnitude
                                .iter()
                                .rev()
                                .cmp(other.magnitude.iter().rev())
                        });
                if negative {
                    by_magnitude.reverse()
                } else {
                    by_magnitude
                }
            }
        }
    }
}

impl PartialOrd for BigInt {
    fn partial_cmp(&self, other: &BigInt) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl From<i64> for BigInt {
    fn from(v: i64) -> BigInt {
        BigInt::from(i128::from(v))
    }
}

impl From<u64> for BigInt {
    fn from(v: u64) -> BigInt {
        BigInt::from_u128(false, u128::from(v))
    }
}

impl From<i128> for BigInt {
    fn from(v: i128) -> BigInt {
        BigInt::from_u128(v < 0, v.unsigned_abs())
    }
}

impl From<u128> for BigInt {
    fn from(v: u128) -> BigInt {
        BigInt::from_u128(false, v)
    }
}

impl TryFrom<&BigInt> for i64 {
    type Error = OutOfRange;
    fn try_from(b: &BigInt) -> Result<i64, OutOfRange> {
        b.to_i64().ok_or(OutOfRange)
    }
}

impl TryFrom<&BigInt> for i128 {
    type Error = OutOfRange;
    fn try_from(b: &BigInt) -> Result<i128, OutOfRange> {
        b.to_i128().ok_or(OutOfRange)
    }
}

impl TryFrom<&BigInt> for u128 {
    type Error = OutOfRange;
    fn try_from(b: &BigInt) -> Result<u128, OutOfRange> {
        b.to_u128().ok_or(OutOfRange)
    }
}

impl fmt::Display for BigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str(&self.magnitude_decimal())
    }
}

impl fmt::Debug for BigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_at_the_edges() {
        for v in [
            0i128,
            1,
            -1,
            255,
            256,
            i64::MAX.into(),
            i64::MIN.into(),
            i128::MAX,
            i128::MIN,
        ] {
            let b = BigInt::from(v);
            assert_eq!(b.to_i128(), Some(v), "{v}");
            assert_eq!(b.to_string(), v.to_string());
        }
        assert_eq!(BigInt::from(u128::MAX).to_i128(), None);
        assert_eq!(BigInt::from(-1i64).to_u128(), None);
        assert_eq!(
            BigInt::from(i64::MIN).magnitude(),
            &[0, 0, 0, 0, 0, 0, 0, 0x80]
        );
        assert_eq!(BigInt::from(i64::MIN).to_i64(), Some(i64::MIN));
        assert_eq!(BigInt::from(i64::MAX as i128 + 1).to_i64(), None);
    }

    #[test]
    fn normalised_zero_and_trailing_bytes() {
        assert_eq!(BigInt::new(true, vec![]), BigInt::from(0u64));
        assert!(!BigInt::new(true, vec![0]).is_negative());
        assert_eq!(BigInt::new(false, vec![5, 0, 0]).magnitude(), &[5]);
    }

    #[test]
    fn order_is_numeric() {
        let mut v: Vec<BigInt> = [5i128, -5, 300, -300, 0, i128::MAX, i128::MIN]
            .into_iter()
            .map(BigInt::from)
            .collect();
        v.sort();
        let back: Vec<i128> = v.iter().map(|b| b.to_i128().unwrap()).collect();
        assert_eq!(back, [i128::MIN, -300, -5, 0, 5, 300, i128::MAX]);
    }

    #[test]
    fn decimal_of_huge_values() {
        // 2^200
        let mut m = vec![0u8; 25];
        m.push(1);
        assert_eq!(
            BigInt::new(false, m).to_string(),
            "1606938044258990275541962092341162602522202993782792835301376"
        );
    }

    #[test]
    fn integral_floats_convert_exactly() {
        assert_eq!(
            BigInt::from_integral_f64(2f64.powi(64)),
            BigInt::from(1u128 << 64)
        );
        assert_eq!(
            BigInt::from_integral_f64(-(2f64.powi(100))),
            BigInt::from(-(1i128 << 100))
        );
        assert_eq!(
            BigInt::from_integral_f64(9007199254740992.0),
            BigInt::from(1i64 << 53)
        );
    }
}

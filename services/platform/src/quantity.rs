//! Volumes, money, rates and instants as checked integers: litres, fen, basis points, ms.
//!
//! Every quantity that comes in is checked against a range here (a request's field, a stored
//! figure), so that the arithmetic of M&V and settlement cannot wrap: the ranges are wide enough
//! for any real water user and narrow enough that a volume times a price stays inside `i64`.
//! The operations themselves are checked too, so a number that got past a check is an
//! [`Overflow`] naming what overflowed, never a wrapped or saturated figure.

use crate::Error;

/// The largest volume a field may hold: 10¹⁵ L (a trillion m³; China uses about 6×10¹¹ m³ a
/// year). A volume at this bound times [`MAX_PRICE_FEN_PER_M3`] is 10¹⁷ fen, inside `i64`.
pub const MAX_LITRES: i64 = 1_000_000_000_000_000;
/// The largest amount of money a field may hold: 10¹⁴ fen (a trillion yuan).
pub const MAX_FEN: i64 = 100_000_000_000_000;
/// The highest water price: 100,000 fen (1,000 yuan) per m³.
pub const MAX_PRICE_FEN_PER_M3: i64 = 100_000;
/// 100% in basis points.
pub const FULL_BP: i64 = 10_000;
/// The longest contract term or sharing period: 50 years.
pub const MAX_MONTHS: i32 = 600;

/// An arithmetic result beyond what can be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} is beyond what can be stored")]
pub struct Overflow {
    /// What was being computed, as a field name (`savings_value_fen`).
    pub what: &'static str,
}

impl From<Overflow> for Error {
    fn from(o: Overflow) -> Self {
        Error::invalid(
            o.what,
            "the result is beyond what can be stored; check the figures",
        )
    }
}

/// A volume of water, litres (negative for a saving that went the wrong way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Litres(pub i64);

/// An amount of money, fen (分; 100 fen = 1 yuan).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fen(pub i64);

/// A rate in basis points (10,000 = 100%).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BasisPoints(pub i64);

/// An instant the platform records (a reading's time, a milestone's), milliseconds since
/// 1970-01-01 UTC, within 1970..2100: a time outside is a client's mistake, and small instants
/// keep day and interval arithmetic far from overflow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub i64);

impl Instant {
    /// 1970-01-01T00:00:00Z, in seconds.
    pub const MIN_SECONDS: i64 = 0;
    /// 2100-01-01T00:00:00Z, in seconds (excluded).
    pub const MAX_SECONDS: i64 = 4_102_444_800;

    /// The instant of a protobuf timestamp's `seconds` and `nanos`, checked.
    pub fn from_parts(seconds: i64, nanos: i32) -> Result<Instant, String> {
        if !(0..1_000_000_000).contains(&nanos) {
            return Err(format!("nanos {nanos} outside 0..999999999"));
        }
        if !(Self::MIN_SECONDS..Self::MAX_SECONDS).contains(&seconds) {
            return Err(format!(
                "seconds {seconds} outside 1970-01-01 to 2100-01-01 ({}..{})",
                Self::MIN_SECONDS,
                Self::MAX_SECONDS
            ));
        }
        // In range, so no overflow.
        Ok(Instant(seconds * 1000 + i64::from(nanos) / 1_000_000))
    }
}

/// a × b / d rounded to the nearest integer, halves away from zero; `None` when d is 0 or the
/// result does not fit an `i64`.
pub fn mul_div_round(a: i64, b: i64, d: i64) -> Option<i64> {
    if d == 0 {
        return None;
    }
    let n = i128::from(a) * i128::from(b);
    let d = i128::from(d);
    let q = (n.abs() * 2 + d.abs()) / (2 * d.abs());
    let q = if (n < 0) != (d < 0) { -q } else { q };
    i64::try_from(q).ok()
}

macro_rules! checked_ops {
    ($t:ident) => {
        impl $t {
            pub const ZERO: $t = $t(0);

            pub fn checked_add(self, other: $t, what: &'static str) -> Result<$t, Overflow> {
                self.0.checked_add(other.0).map($t).ok_or(Overflow { what })
            }

            pub fn checked_sub(self, other: $t, what: &'static str) -> Result<$t, Overflow> {
                self.0.checked_sub(other.0).map($t).ok_or(Overflow { what })
            }

            /// This × `part` / `whole`, rounded (pro-rating an annual figure by days, say).
            pub fn pro_rata(
                self,
                part: i64,
                whole: i64,
                what: &'static str,
            ) -> Result<$t, Overflow> {
                mul_div_round(self.0, part, whole)
                    .map($t)
                    .ok_or(Overflow { what })
            }

            /// The sum of `items`, checked.
            pub fn sum(
                items: impl IntoIterator<Item = $t>,
                what: &'static str,
            ) -> Result<$t, Overflow> {
                items
                    .into_iter()
                    .try_fold($t::ZERO, |acc, x| acc.checked_add(x, what))
            }
        }
    };
}

checked_ops!(Litres);
checked_ops!(Fen);

impl Litres {
    /// The value of this volume at `price_fen_per_m3`, rounded to the fen.
    pub fn value_at(self, price_fen_per_m3: i64, what: &'static str) -> Result<Fen, Overflow> {
        mul_div_round(self.0, price_fen_per_m3, 1000)
            .map(Fen)
            .ok_or(Overflow { what })
    }

    /// This volume as a share of `of`, in basis points (0 when `of` is not positive).
    pub fn share_of(self, of: Litres, what: &'static str) -> Result<BasisPoints, Overflow> {
        if of.0 <= 0 {
            return Ok(BasisPoints(0));
        }
        mul_div_round(self.0, FULL_BP, of.0)
            .map(BasisPoints)
            .ok_or(Overflow { what })
    }
}

impl Fen {
    /// `rate` of this amount, rounded to the fen.
    pub fn share(self, rate: BasisPoints, what: &'static str) -> Result<Fen, Overflow> {
        mul_div_round(self.0, rate.0, FULL_BP)
            .map(Fen)
            .ok_or(Overflow { what })
    }
}

/// Checks a request's field against `min..=max`, naming the field and the range.
pub fn in_range(field: &str, value: i64, min: i64, max: i64, unit: &str) -> Result<i64, Error> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(Error::invalid(
            field,
            format!("{value} is out of range: {min} to {max} {unit}"),
        ))
    }
}

/// A volume field: 0 to [`MAX_LITRES`].
pub fn litres(field: &str, value: i64) -> Result<Litres, Error> {
    in_range(field, value, 0, MAX_LITRES, "litres").map(Litres)
}

/// A volume field that may be negative (an adjustment): ±[`MAX_LITRES`].
pub fn signed_litres(field: &str, value: i64) -> Result<Litres, Error> {
    in_range(field, value, -MAX_LITRES, MAX_LITRES, "litres").map(Litres)
}

/// A money field: 0 to [`MAX_FEN`].
pub fn fen(field: &str, value: i64) -> Result<Fen, Error> {
    in_range(field, value, 0, MAX_FEN, "fen").map(Fen)
}

/// A water price field: 0 to [`MAX_PRICE_FEN_PER_M3`] fen per m³.
pub fn price(field: &str, value: i64) -> Result<i64, Error> {
    in_range(field, value, 0, MAX_PRICE_FEN_PER_M3, "fen per m³")
}

/// A rate field: 0 to 10,000 basis points (100%).
pub fn basis_points(field: &str, value: i64) -> Result<BasisPoints, Error> {
    in_range(field, value, 0, FULL_BP, "basis points (10000 = 100%)").map(BasisPoints)
}

/// A duration in months: 0 to [`MAX_MONTHS`].
pub fn months(field: &str, value: i32) -> Result<i32, Error> {
    in_range(field, i64::from(value), 0, i64::from(MAX_MONTHS), "months").map(|_| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_away_from_zero_and_overflow_is_none() {
        assert_eq!(mul_div_round(5, 1, 2), Some(3));
        assert_eq!(mul_div_round(-5, 1, 2), Some(-3));
        assert_eq!(mul_div_round(4, 1, 2), Some(2));
        assert_eq!(mul_div_round(i64::MAX, 2, 1), None);
        assert_eq!(mul_div_round(1, 1, 0), None);
    }

    #[test]
    fn sums_that_would_wrap_are_overflows() {
        // i64::MAX + i64::MIN + … once "summed to 4"; checked, it is an error at the first step.
        let items = [Litres(i64::MAX), Litres(1)];
        assert_eq!(
            Litres::sum(items, "non_routine_adjustment_litres"),
            Err(Overflow {
                what: "non_routine_adjustment_litres"
            })
        );
        assert_eq!(Litres::sum([Litres(2), Litres(-5)], "x"), Ok(Litres(-3)));
    }

    #[test]
    fn fields_are_checked_against_their_range() {
        assert!(litres("x", -1).is_err());
        assert!(litres("x", MAX_LITRES).is_ok());
        assert!(signed_litres("x", -MAX_LITRES).is_ok());
        assert!(signed_litres("x", i64::MIN).is_err());
        let err = fen("investment_fen", i64::MAX).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { ref field, ref reason } if field == "investment_fen" && reason.contains("out of range")),
            "{err:?}"
        );
        assert!(basis_points("x", 10_001).is_err());
        assert!(months("x", 601).is_err());
    }

    #[test]
    fn instants_are_1970_to_2100() {
        assert_eq!(Instant::from_parts(0, 0), Ok(Instant(0)));
        assert!(Instant::from_parts(-1, 0).is_err());
        assert!(Instant::from_parts(i64::MAX, 0).is_err());
        assert!(Instant::from_parts(0, -1).is_err());
        assert!(Instant::from_parts(Instant::MAX_SECONDS, 0).is_err());
        assert_eq!(Instant::from_parts(1, 999_999_999), Ok(Instant(1999)));
    }

    #[test]
    fn the_bounds_keep_value_times_price_inside_i64() {
        let v = Litres(MAX_LITRES)
            .value_at(MAX_PRICE_FEN_PER_M3, "v")
            .unwrap();
        assert_eq!(v, Fen(100_000_000_000_000_000));
        assert!(Fen(MAX_FEN).share(BasisPoints(FULL_BP), "s").is_ok());
    }
}

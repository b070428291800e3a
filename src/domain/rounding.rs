//! Rounding to the nearest whole number, halves away from zero: the bits `f64::round` gives,
//! without the call into the C library it compiles to.
//!
//! Why: on x86-64 without SSE4.1 (Rust's default target) `f64::round` is a call to libm's
//! `round`. The simulator rounds every reading of every sample, Bronze's dictionaries and the
//! alert engine round readings to tenths, and the call was 3 % of `simulate`'s time (perf, 1,000
//! patients × 7 days). Here it is a truncation, a subtraction and a comparison, inlined.

/// From 2^52 on every double is a whole number.
const WHOLE_FROM: f64 = 4_503_599_627_370_496.0;

/// `x.round()`, bit for bit (the infinities and -0.0 included; a NaN stays a NaN).
#[inline]
pub fn round(x: f64) -> f64 {
    if x.is_nan() || x.abs() >= WHOLE_FROM {
        // Whole already, infinite or NaN: `round` gives it back as it is.
        return x;
    }
    // Truncation toward zero; below 2^52 it is exact, and so is the remainder.
    let whole = x as i64 as f64;
    let rounded = if (x - whole).abs() >= 0.5 {
        whole + 1f64.copysign(x)
    } else {
        whole
    };
    // The sign of `x` even when the result is zero: -0.3 rounds to -0.0.
    rounded.copysign(x)
}

/// `x` rounded to one decimal, as a sensor reports it: `round(x * 10) / 10`.
#[inline]
pub fn round1(x: f64) -> f64 {
    round(x * 10.0) / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn same(x: f64) {
        if x.is_nan() {
            // Which NaN comes back is the library's business (glibc quiets a signalling one).
            assert!(round(x).is_nan(), "round({x:e})");
            return;
        }
        assert_eq!(round(x).to_bits(), x.round().to_bits(), "round({x:e})");
    }

    #[test]
    fn gives_the_bits_of_f64_round() {
        let half_below = 0.5f64.next_down();
        for x in [
            0.0,
            -0.0,
            0.3,
            -0.3,
            0.5,
            -0.5,
            half_below,
            -half_below,
            0.5f64.next_up(),
            1.5,
            2.5,
            -2.5,
            97.35,
            -36.85,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            WHOLE_FROM,
            WHOLE_FROM.next_down(),
            WHOLE_FROM - 0.5,
            -(WHOLE_FROM - 0.5),
            WHOLE_FROM.next_down() / 2.0,
            1e300,
            -1e300,
            f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            i64::MAX as f64,
        ] {
            same(x);
        }
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        for _ in 0..200_000 {
            // Every magnitude from 2^-20 to 2^60, both signs; and halves exactly.
            let x = rng.random_range(-1.0..1.0) * 2f64.powi(rng.random_range(-20..60));
            same(x);
            same((x * 2.0).trunc() / 2.0);
            same(f64::from_bits(rng.random::<u64>()));
        }
    }

    #[test]
    fn one_decimal() {
        assert_eq!(round1(36.849_999), 36.8);
        assert_eq!(round1(36.85), (36.85f64 * 10.0).round() / 10.0);
        assert_eq!(round1(-0.04).to_bits(), (-0.0f64).to_bits());
    }
}

//! A column of one-decimal readings (SpO₂ 97.3 %, 36.8 °C) as a Parquet dictionary, built by
//! arithmetic instead of hashing.
//!
//! Why: the Parquet writer gives a float column a dictionary only after estimating its
//! cardinality by hashing every row, and for Bronze's readings it then wrote them plain: eight
//! bytes a row that zstd must squeeze (a third of the bytes it compressed). A sensor reports
//! with one decimal, so a row group holds a few hundred distinct values: the tenths `k` of
//! `k / 10` index a table directly, and the keys take 9–10 bits a row.
//!
//! Exact or nothing: a value is accepted only if `k as f64 / 10.0` gives back its very bits
//! (so -0.0, NaN and 36.85 are not); otherwise the caller writes the column as before.

use polars::prelude::ArrayRef;
use polars_arrow::array::{DictionaryArray, PrimitiveArray};
use polars_arrow::bitmap::MutableBitmap;
use polars_arrow::datatypes::{ArrowDataType, IntegerType};

/// The widest range of tenths kept in a lookup table (100,000 tenths: ±5,000 units).
const MAX_SPAN: i64 = 100_000;

/// The tenths of `x`, if `x` is exactly a whole number of tenths (as `(y * 10).round() / 10`
/// makes it) and small enough to count.
fn tenths(x: f64) -> Option<i64> {
    let scaled = crate::domain::rounding::round(x * 10.0);
    if !scaled.is_finite() || scaled.abs() > 1e12 {
        return None;
    }
    let k = scaled as i64;
    ((k as f64 / 10.0).to_bits() == x.to_bits()).then_some(k)
}

/// `values` as a dictionary (keys `u32`, values `Float64` in ascending order), or `None` when a
/// value is not a whole number of tenths, the tenths span more than `MAX_SPAN`, or there is no
/// value at all.
pub fn one_decimal(values: &[Option<f64>]) -> Option<ArrayRef> {
    let mut ks: Vec<i64> = Vec::with_capacity(values.len());
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for v in values.iter().flatten() {
        let k = tenths(*v)?;
        lo = lo.min(k);
        hi = hi.max(k);
        ks.push(k);
    }
    if ks.is_empty() || hi - lo >= MAX_SPAN {
        return None;
    }
    // Which tenths occur, then each one's key: its rank among them (ascending values).
    let span = (hi - lo + 1) as usize;
    let mut key_of = vec![u32::MAX; span];
    for k in &ks {
        key_of[(k - lo) as usize] = 0;
    }
    let mut dictionary = Vec::new();
    for (offset, slot) in key_of.iter_mut().enumerate() {
        if *slot == 0 {
            *slot = dictionary.len() as u32;
            dictionary.push((lo + offset as i64) as f64 / 10.0);
        }
    }
    let has_nulls = ks.len() < values.len();
    let mut validity = has_nulls.then(|| MutableBitmap::with_capacity(values.len()));
    let mut next = ks.iter();
    let keys: Vec<u32> = values
        .iter()
        .map(|v| {
            if let Some(bits) = validity.as_mut() {
                bits.push(v.is_some());
            }
            match v {
                Some(_) => next.next().map_or(0, |k| key_of[(k - lo) as usize]),
                None => 0,
            }
        })
        .collect();
    let keys = PrimitiveArray::<u32>::new(
        ArrowDataType::UInt32,
        keys.into(),
        validity.map(|v| v.freeze()),
    );
    let values = PrimitiveArray::<f64>::from_vec(dictionary);
    let dtype =
        ArrowDataType::Dictionary(IntegerType::UInt32, Box::new(ArrowDataType::Float64), false);
    DictionaryArray::try_new(dtype, keys, Box::new(values))
        .ok()
        .map(|a| Box::new(a) as ArrayRef)
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars_arrow::array::Array;

    /// The dictionary array's keys and values.
    fn parts(array: &ArrayRef) -> (&DictionaryArray<u32>, &PrimitiveArray<f64>) {
        let dict = array
            .as_any()
            .downcast_ref::<DictionaryArray<u32>>()
            .expect("a dictionary");
        let values = dict
            .values()
            .as_any()
            .downcast_ref::<PrimitiveArray<f64>>()
            .expect("f64 values");
        (dict, values)
    }

    /// The value each row of a dictionary array stands for.
    fn rows(array: &ArrayRef) -> Vec<Option<f64>> {
        let (dict, values) = parts(array);
        (0..dict.len())
            .map(|i| {
                let keys = dict.keys();
                keys.is_valid(i)
                    .then(|| values.value(keys.value(i) as usize))
            })
            .collect()
    }

    #[test]
    fn keeps_every_row_and_every_null_bit_for_bit() {
        let input: Vec<Option<f64>> = (0..5_000)
            .map(|i| (i % 7 != 0).then(|| ((50.0 + (i % 503) as f64 * 0.1) * 10.0).round() / 10.0))
            .chain([Some(-12.3), Some(0.0), None, Some(100.0)])
            .collect();
        let array = one_decimal(&input).expect("all one-decimal");
        let back = rows(&array);
        assert_eq!(back.len(), input.len());
        for (a, b) in input.iter().zip(&back) {
            assert_eq!(a.map(f64::to_bits), b.map(f64::to_bits));
        }
        let (_, values) = parts(&array);
        assert!(
            values.values().windows(2).all(|w| w[0] < w[1]),
            "ascending, distinct"
        );
    }

    #[test]
    fn declines_what_it_cannot_give_back_exactly() {
        for odd in [36.85, f64::NAN, -0.0, f64::INFINITY, 1e15] {
            assert!(one_decimal(&[Some(36.8), Some(odd)]).is_none(), "{odd}");
        }
        assert!(
            one_decimal(&[Some(0.0), Some(20_000.0)]).is_none(),
            "too wide"
        );
        assert!(one_decimal(&[None, None]).is_none(), "no value");
        assert!(one_decimal(&[]).is_none());
    }
}

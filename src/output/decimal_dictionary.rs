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

/// Marks a null in `ReadingColumn::tenths` (a reading of that many tenths is kept as a float).
const NULL_TENTHS: i32 = i32::MIN;

/// A column of readings filled row by row, kept as tenths while every value is a whole number
/// of them, and as the values themselves from the first that is not.
///
/// Why: Bronze's buffers used to hold readings as `Option<f64>`, 16 bytes a row, copied from
/// the core that built a slice into the row group, then read again here to find the tenths.
/// Kept as tenths (4 bytes) when pushed, the copies move a quarter of the bytes and the
/// dictionary is built from the tenths directly.
#[derive(Debug, Clone, Default)]
pub struct ReadingColumn {
    /// One per row while `exact` is `None`; `NULL_TENTHS` for a null.
    tenths: Vec<i32>,
    /// Every row's value, once a value was not a whole number of tenths.
    exact: Option<Vec<Option<f64>>>,
}

impl ReadingColumn {
    pub fn len(&self) -> usize {
        self.exact.as_ref().map_or(self.tenths.len(), Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room for `rows` more rows without reallocating.
    pub fn reserve(&mut self, rows: usize) {
        match &mut self.exact {
            None => self.tenths.reserve(rows),
            Some(values) => values.reserve(rows),
        }
    }

    pub fn push(&mut self, value: Option<f64>) {
        if let Some(values) = &mut self.exact {
            values.push(value);
            return;
        }
        let small = |x: f64| {
            tenths(x)
                .and_then(|k| i32::try_from(k).ok())
                .filter(|k| *k != NULL_TENTHS)
        };
        match value.map(small) {
            None => self.tenths.push(NULL_TENTHS),
            Some(Some(k)) => self.tenths.push(k),
            Some(None) => {
                let mut values = self.values();
                values.push(value);
                self.exact = Some(values);
            }
        }
    }

    /// Appends rows `rows` of `other`, as if their values were pushed one by one.
    pub fn extend_from(&mut self, other: &ReadingColumn, rows: std::ops::Range<usize>) {
        match (&mut self.exact, &other.exact) {
            (None, None) => self.tenths.extend_from_slice(&other.tenths[rows]),
            (Some(mine), None) => mine.extend(other.tenths[rows].iter().map(|k| value_of(*k))),
            (Some(mine), Some(theirs)) => mine.extend_from_slice(&theirs[rows]),
            (None, Some(theirs)) => {
                let mut values = self.values();
                values.extend_from_slice(&theirs[rows]);
                self.exact = Some(values);
            }
        }
    }

    /// Every row's value, from the tenths (called while `exact` is still `None`).
    fn values(&self) -> Vec<Option<f64>> {
        self.tenths.iter().map(|k| value_of(*k)).collect()
    }

    /// The column as an Arrow array: a dictionary of its tenths (`one_decimal`) when it can
    /// be one, else plain `Float64`.
    pub fn into_array(self) -> ArrayRef {
        let values = match self.exact {
            Some(values) => values,
            None => match dictionary_of_tenths(&self.tenths) {
                Some(array) => return array,
                None => self.tenths.iter().map(|k| value_of(*k)).collect(),
            },
        };
        Box::new(PrimitiveArray::<f64>::from(values))
    }
}

/// The value of `k` tenths (`NULL_TENTHS`: none), bit for bit the value they were taken from.
fn value_of(k: i32) -> Option<f64> {
    (k != NULL_TENTHS).then(|| k as f64 / 10.0)
}

/// `values` as a dictionary (keys `u32`, values `Float64` in ascending order), or `None` when a
/// value is not a whole number of tenths, the tenths span more than `MAX_SPAN`, or there is no
/// value at all.
pub fn one_decimal(values: &[Option<f64>]) -> Option<ArrayRef> {
    let mut column = ReadingColumn::default();
    column.reserve(values.len());
    for v in values {
        column.push(*v);
        if column.exact.is_some() {
            // Not a dictionary: the caller writes the values as they are.
            return None;
        }
    }
    dictionary_of_tenths(&column.tenths)
}

/// Rows of tenths (`NULL_TENTHS` for a null) as `one_decimal`'s dictionary.
fn dictionary_of_tenths(rows: &[i32]) -> Option<ArrayRef> {
    let (mut lo, mut hi, mut nulls) = (i64::MAX, i64::MIN, 0usize);
    for &k in rows {
        if k == NULL_TENTHS {
            nulls += 1;
        } else {
            lo = lo.min(i64::from(k));
            hi = hi.max(i64::from(k));
        }
    }
    if nulls == rows.len() || hi - lo >= MAX_SPAN {
        return None;
    }
    // Which tenths occur, then each one's key: its rank among them (ascending values).
    let span = (hi - lo + 1) as usize;
    let mut key_of = vec![u32::MAX; span];
    for &k in rows {
        if k != NULL_TENTHS {
            key_of[(i64::from(k) - lo) as usize] = 0;
        }
    }
    let mut dictionary = Vec::new();
    for (offset, slot) in key_of.iter_mut().enumerate() {
        if *slot == 0 {
            *slot = dictionary.len() as u32;
            dictionary.push((lo + offset as i64) as f64 / 10.0);
        }
    }
    let keys: Vec<u32> = rows
        .iter()
        .map(|&k| match k {
            NULL_TENTHS => 0,
            k => key_of[(i64::from(k) - lo) as usize],
        })
        .collect();
    let validity = (nulls > 0).then(|| {
        rows.iter()
            .map(|&k| k != NULL_TENTHS)
            .collect::<MutableBitmap>()
            .freeze()
    });
    let keys = PrimitiveArray::<u32>::new(ArrowDataType::UInt32, keys.into(), validity);
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

    /// Every value a `ReadingColumn` array holds, whatever its encoding.
    fn values_of(array: &ArrayRef) -> Vec<Option<u64>> {
        match array.dtype() {
            ArrowDataType::Dictionary(..) => rows(array)
                .into_iter()
                .map(|v| v.map(f64::to_bits))
                .collect(),
            _ => array
                .as_any()
                .downcast_ref::<PrimitiveArray<f64>>()
                .expect("f64 values")
                .iter()
                .map(|v| v.map(|x| x.to_bits()))
                .collect(),
        }
    }

    /// Pieces filled apart and joined (tenths only, floats only, one then the other) give back
    /// every pushed value bit for bit, as a dictionary exactly when `one_decimal` makes one.
    #[test]
    fn reading_columns_give_back_what_was_pushed() {
        let tenths = |i: usize| (i % 5 != 2).then(|| (300 + (i * 7) % 90) as f64 / 10.0);
        let odd = |i: usize| (i % 3 != 1).then_some(36.85 + i as f64);
        type Rows = Box<dyn Fn(usize) -> Option<f64>>;
        let cases: [(&str, Rows); 5] = [
            ("tenths", Box::new(tenths)),
            ("floats", Box::new(odd)),
            (
                "floats after tenths",
                Box::new(move |i| if i < 150 { tenths(i) } else { odd(i) }),
            ),
            (
                "tenths after floats",
                Box::new(move |i| if i < 40 { odd(i) } else { tenths(i) }),
            ),
            ("nulls", Box::new(|_| None)),
        ];
        for (name, value) in &cases {
            let input: Vec<Option<f64>> = (0..300).map(value).collect();
            for cut in [0usize, 1, 150, 299, 300] {
                let (mut first, mut second) = (ReadingColumn::default(), ReadingColumn::default());
                for (i, v) in input.iter().enumerate() {
                    if i < cut {
                        first.push(*v)
                    } else {
                        second.push(*v)
                    }
                }
                let mut joined = ReadingColumn::default();
                joined.extend_from(&first, 0..cut);
                joined.extend_from(&second, 0..(300 - cut) / 2);
                joined.extend_from(&second, (300 - cut) / 2..300 - cut);
                assert_eq!(joined.len(), 300, "{name}, cut at {cut}");
                let array = joined.into_array();
                let expected: Vec<Option<u64>> =
                    input.iter().map(|v| v.map(f64::to_bits)).collect();
                assert_eq!(values_of(&array), expected, "{name}, cut at {cut}");
                assert_eq!(
                    matches!(array.dtype(), ArrowDataType::Dictionary(..)),
                    one_decimal(&input).is_some(),
                    "{name}, cut at {cut}"
                );
            }
        }
        // Tenths too far apart for a lookup table: plain floats, the same values.
        let mut wide = ReadingColumn::default();
        for v in [Some(0.0), None, Some(20_000.0)] {
            wide.push(v);
        }
        let array = wide.into_array();
        assert!(!matches!(array.dtype(), ArrowDataType::Dictionary(..)));
        assert_eq!(
            values_of(&array),
            vec![Some(0f64.to_bits()), None, Some(20_000f64.to_bits())]
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

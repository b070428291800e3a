//! A string column built as a dictionary of its distinct values and one key per row, for a
//! Parquet writer to store dictionary-encoded without looking at the strings again.
//!
//! Why: the Parquet writer dictionary-encodes a string column by hashing every row's text twice
//! (a cardinality estimate, then the dictionary itself), after the caller has formatted every
//! row's text (36 bytes per UUID). A Bronze row group repeats a few thousand patient and device
//! ids, one run id and a handful of quality flags over 131,072 rows: keyed by the value itself
//! (16-byte UUIDs, a fast hash), only the distinct values are ever turned into text.
//!
//! The result is what the writer would have built: keys in the order values first appear, so
//! the pages are the same bytes; and a column whose values are mostly distinct comes out plain,
//! as the writer decides it (more than 128 rows, more than 3 in 4 distinct).

use crate::id_hash::FastMap;
use polars::prelude::{ArrayRef, PolarsResult};
use polars_arrow::array::{DictionaryArray, PrimitiveArray, Utf8ViewArray};
use polars_arrow::bitmap::MutableBitmap;
use polars_arrow::datatypes::{ArrowDataType, IntegerType};
use std::hash::Hash;

/// Up to this many distinct values, a row's value is looked up by comparing it with each.
const SMALL_DICTIONARY: usize = 8;

pub struct DictionaryColumn<V> {
    keys: Vec<u32>,
    /// Present from the first null on (a column without nulls needs none).
    validity: Option<MutableBitmap>,
    index: FastMap<V, u32>,
    values: Vec<V>,
}

impl<V> Default for DictionaryColumn<V> {
    fn default() -> Self {
        DictionaryColumn {
            keys: Vec::new(),
            validity: None,
            index: FastMap::default(),
            values: Vec::new(),
        }
    }
}

/// A dictionary's value: equality, with a shortcut where a row usually repeats the previous
/// row's very object (a run's source, a device's firmware, a quality flag's static code): the
/// same pointer is the same text, without comparing bytes (`memcmp` calls from this comparison
/// were 3 % of `simulate`'s time).
pub trait DictionaryValue: Hash + Eq + Clone {
    fn same(&self, other: &Self) -> bool {
        self == other
    }
}

impl DictionaryValue for &str {
    fn same(&self, other: &Self) -> bool {
        std::ptr::eq(*self, *other) || same_text(self, other)
    }
}

impl DictionaryValue for std::sync::Arc<str> {
    fn same(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(self, other) || same_text(self, other)
    }
}

/// Texts up to this long are compared byte by byte in a loop.
const SHORT_TEXT: usize = 16;

/// Whether two texts are equal, short ones compared inline. Equal texts held by different
/// objects are common (each simulated patient's device holds its own firmware version, and
/// consecutive rows come from different patients): for a few bytes, the call into the C
/// library's `memcmp` cost more than the comparison (2 % of `simulate`). One shared object
/// per version instead made both cores bump the same reference count on every sample.
fn same_text(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() > SHORT_TEXT {
        return a == b;
    }
    a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

impl DictionaryValue for String {}
impl DictionaryValue for uuid::Uuid {}
impl DictionaryValue for i16 {}

impl<V: DictionaryValue> DictionaryColumn<V> {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Room for `rows` more rows' keys without reallocating.
    pub fn reserve(&mut self, rows: usize) {
        self.keys.reserve(rows);
    }

    pub fn push(&mut self, value: &V) {
        // The previous row's value first: run ids and sources repeat row after row.
        let repeated = self
            .keys
            .last()
            .copied()
            .filter(|k| self.values.get(*k as usize).is_some_and(|v| v.same(value)));
        let key = match repeated {
            Some(key) => key,
            None => self.key_of(value),
        };
        self.push_key(key);
    }

    /// The key of `value`, given it the next one if it is new.
    fn key_of(&mut self, value: &V) -> u32 {
        let known = if self.values.len() <= SMALL_DICTIONARY {
            // A few distinct values (quality flags, firmware versions): comparing them costs
            // less than hashing the row's value.
            self.values
                .iter()
                .position(|v| v.same(value))
                .map(|k| k as u32)
        } else {
            self.index.get(value).copied()
        };
        known.unwrap_or_else(|| {
            let key = self.values.len() as u32;
            self.index.insert(value.clone(), key);
            self.values.push(value.clone());
            key
        })
    }

    fn push_key(&mut self, key: u32) {
        self.keys.push(key);
        if let Some(validity) = &mut self.validity {
            validity.push(true);
        }
    }

    /// Appends rows `rows` of `other`, exactly as pushing their values one by one would: the
    /// same keys in the same order. Each of `other`'s distinct values is looked up once.
    pub fn extend_from(&mut self, other: &DictionaryColumn<V>, rows: std::ops::Range<usize>) {
        const UNSEEN: u32 = u32::MAX;
        let mut ours = vec![UNSEEN; other.values.len()];
        for row in rows {
            if other.validity.as_ref().is_some_and(|v| !v.get(row)) {
                self.push_null();
                continue;
            }
            let theirs = other.keys[row] as usize;
            let key = match ours[theirs] {
                UNSEEN => {
                    let key = self.key_of(&other.values[theirs]);
                    ours[theirs] = key;
                    key
                }
                key => key,
            };
            self.push_key(key);
        }
    }

    pub fn push_null(&mut self) {
        let rows = self.keys.len();
        self.validity
            .get_or_insert_with(|| {
                let mut v = MutableBitmap::with_capacity(rows + 1);
                v.extend_constant(rows, true);
                v
            })
            .push(false);
        self.keys.push(0);
    }

    pub fn push_option(&mut self, value: Option<&V>) {
        match value {
            Some(v) => self.push(v),
            None => self.push_null(),
        }
    }

    /// The column as an Arrow array of strings, each distinct value written once by `text`:
    /// dictionary-encoded, or plain when most values are distinct.
    pub fn finish(self, text: impl Fn(&V, &mut String)) -> PolarsResult<ArrayRef> {
        let mut buffer = String::new();
        let mut texts: Vec<String> = Vec::with_capacity(self.values.len());
        for v in &self.values {
            buffer.clear();
            text(v, &mut buffer);
            texts.push(buffer.clone());
        }
        let validity = self.validity.map(|v| v.freeze());
        let rows = self.keys.len();
        if rows > 128 && texts.len() * 4 > rows * 3 {
            let plain: Utf8ViewArray = match &validity {
                None => Utf8ViewArray::from_slice_values(
                    self.keys
                        .iter()
                        .map(|k| texts[*k as usize].as_str())
                        .collect::<Vec<_>>(),
                ),
                Some(valid) => Utf8ViewArray::from_slice(
                    self.keys
                        .iter()
                        .zip(valid.iter())
                        .map(|(k, ok)| ok.then(|| texts[*k as usize].as_str()))
                        .collect::<Vec<_>>(),
                ),
            };
            return Ok(Box::new(plain));
        }
        let values = Utf8ViewArray::from_slice_values(&texts);
        let keys = PrimitiveArray::<u32>::new(ArrowDataType::UInt32, self.keys.into(), validity);
        let dtype = ArrowDataType::Dictionary(
            IntegerType::UInt32,
            Box::new(ArrowDataType::Utf8View),
            false,
        );
        Ok(Box::new(DictionaryArray::<u32>::try_new(
            dtype,
            keys,
            Box::new(values),
        )?))
    }
}

/// A string column of a frame, dictionary-encoded by value (its rows are hashed once, and
/// not at all where a row repeats the one before).
pub fn from_strings(ca: &polars::prelude::StringChunked) -> PolarsResult<ArrayRef> {
    let mut column = DictionaryColumn::<&str>::default();
    for v in ca.iter() {
        column.push_option(v.as_ref());
    }
    column.finish(|s, out| out.push_str(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::parquet_groups::ParallelGroupWriter;
    use polars::prelude::*;

    fn file_of_frame(df: &DataFrame) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = ParallelGroupWriter::lake(&mut out, df.schema()).expect("writer");
        w.write(df).expect("write");
        w.finish().expect("finish");
        out
    }

    /// A repeated column with nulls, a constant one and a mostly distinct one: written from
    /// dictionaries, the file is the one the writer makes from the strings themselves.
    #[test]
    fn dictionaries_write_the_bytes_the_writer_makes_from_strings() {
        for rows in [1_000usize, 100, 0] {
            let kind = |i: usize| (i % 7 != 3).then(|| format!("kind-{}", (i * 31) % 5));
            let distinct = |i: usize| format!("id-{:05}", i * 7);
            let df = DataFrame::new_infer_height(vec![
                Column::new("kind".into(), (0..rows).map(kind).collect::<Vec<_>>()),
                Column::new("run".into(), vec!["run-1"; rows]),
                Column::new("id".into(), (0..rows).map(distinct).collect::<Vec<_>>()),
                Column::new("n".into(), (0..rows as i64).collect::<Vec<_>>()),
            ])
            .expect("frame");

            let (mut kinds, mut runs, mut ids) = (
                DictionaryColumn::<String>::default(),
                DictionaryColumn::<&str>::default(),
                DictionaryColumn::<String>::default(),
            );
            for i in 0..rows {
                kinds.push_option(kind(i).as_ref());
                runs.push(&"run-1");
                ids.push(&distinct(i));
            }
            let text = |s: &String, out: &mut String| out.push_str(s);
            let arrays = vec![
                kinds.finish(text).expect("kinds"),
                runs.finish(|s, out| out.push_str(s)).expect("runs"),
                ids.finish(text).expect("ids"),
                df.column("n")
                    .expect("n")
                    .as_materialized_series()
                    .to_arrow(0, CompatLevel::newest()),
            ];
            assert_eq!(
                matches!(arrays[2].dtype(), ArrowDataType::Dictionary(..)),
                rows <= 128,
                "{rows} rows: a mostly distinct column is a dictionary only in small groups"
            );
            let mut ours = Vec::new();
            let mut w = ParallelGroupWriter::lake(&mut ours, df.schema()).expect("writer");
            w.write_arrays(&arrays).expect("write");
            w.finish().expect("finish");
            assert!(ours == file_of_frame(&df), "{rows} rows: the files differ");
        }
    }

    /// Pieces built apart and appended in order (split anywhere) give the column built row by
    /// row: the same keys, values and nulls.
    #[test]
    fn appended_pieces_equal_the_column_pushed_row_by_row() {
        let value = |i: usize| (i % 11 != 4).then(|| format!("v{}", (i * 7919) % 23));
        let rows = 400;
        let mut whole = DictionaryColumn::<String>::default();
        for i in 0..rows {
            whole.push_option(value(i).as_ref());
        }
        for cut in [0usize, 1, 57, 200, 399, 400] {
            let mut pieces = [
                DictionaryColumn::<String>::default(),
                DictionaryColumn::default(),
            ];
            for i in 0..rows {
                pieces[usize::from(i >= cut)].push_option(value(i).as_ref());
            }
            let mut joined = DictionaryColumn::<String>::default();
            joined.extend_from(&pieces[0], 0..cut);
            // The second piece in two ranges, as a row-group boundary would split it.
            let second = rows - cut;
            joined.extend_from(&pieces[1], 0..second / 3);
            joined.extend_from(&pieces[1], second / 3..second);
            assert_eq!(joined.keys, whole.keys, "cut at {cut}");
            assert_eq!(joined.values, whole.values, "cut at {cut}");
            let bits = |c: &DictionaryColumn<String>| {
                (0..c.len())
                    .map(|i| c.validity.as_ref().is_none_or(|v| v.get(i)))
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&joined), bits(&whole), "cut at {cut}");
        }
    }

    #[test]
    fn texts_are_the_same_when_their_bytes_are() {
        let long = "x".repeat(SHORT_TEXT + 5);
        for (a, b) in [
            ("2.1.3", "2.1.3"),
            ("2.1.3", "2.1.4"),
            ("2.1.3", "2.1.30"),
            ("", ""),
            ("", "a"),
            (long.as_str(), long.as_str()),
            (long.as_str(), &long[1..]),
        ] {
            let (shared_a, shared_b) = (std::sync::Arc::<str>::from(a), std::sync::Arc::from(b));
            assert_eq!(shared_a.same(&shared_b), a == b, "{a:?} {b:?}");
            assert_eq!(a.same(&b), a == b, "{a:?} {b:?}");
        }
    }

    #[test]
    fn arrays_that_do_not_match_the_schema_are_refused() {
        let df = DataFrame::new_infer_height(vec![Column::new("n".into(), vec![1i64, 2])])
            .expect("frame");
        let mut out = Vec::new();
        let mut w = ParallelGroupWriter::lake(&mut out, df.schema()).expect("writer");
        let mut strings = DictionaryColumn::<&str>::default();
        strings.push(&"a");
        strings.push(&"b");
        let err = w
            .write_arrays(&[strings.finish(|s, o| o.push_str(s)).expect("array")])
            .expect_err("a string array for an integer column");
        assert!(err.to_string().contains("column n"), "{err}");
    }
}

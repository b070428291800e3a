//! Reordering a day's numeric columns by scattering each row to its place, rather than
//! gathering each place's row.
//!
//! Bronze lies in arrival order, where the patients of a cohort take turns row after row;
//! Silver lies in patient order. Gathering Silver's rows from Bronze reads one value per cache
//! line, a cohort's width apart: a miss per value, ten million of them per column. Scattering
//! reads Bronze in order and writes each value at the end of its patient's run: a few thousand
//! runs whose ends stay in cache, so nearly every write hits. Values are copied bit for bit.
//!
//! Only the fixed-width columns (integers, floats, timestamps) are scattered. String columns
//! are Arrow views into shared buffers; building them from scattered views needs either an
//! `unsafe` constructor or a pass validating every string, so they are gathered as before.

use polars::prelude::*;
use polars_arrow::array::PrimitiveArray;
use polars_arrow::bitmap::{Bitmap, MutableBitmap};
use polars_arrow::types::NativeType;

/// Where each source row goes, for a reordering that keeps some rows: `order[j]` is the
/// source row of row `j`.
pub struct Destinations {
    of_row: Vec<u32>,
    len: usize,
}

/// Marks a source row that the reordering drops.
const DROPPED: u32 = u32::MAX;

impl Destinations {
    /// The destinations of the rows of a `source_rows`-row frame, `order` giving each new
    /// row's source row (each source row at most once). `None` when a row number does not fit.
    pub fn new(order: &[IdxSize], source_rows: usize) -> Option<Self> {
        if order.len() >= DROPPED as usize {
            return None;
        }
        let mut of_row = vec![DROPPED; source_rows];
        for (j, &row) in order.iter().enumerate() {
            *of_row.get_mut(row as usize)? = j as u32;
        }
        Some(Destinations {
            of_row,
            len: order.len(),
        })
    }

    /// `column` reordered, or `None` when its type is not fixed-width (the caller gathers it).
    /// The column may be in several chunks (one per Bronze row group): they are read in turn,
    /// so the day's columns need not be joined into one chunk first (a copy of each).
    pub fn scatter(&self, column: &Column) -> PolarsResult<Option<Column>> {
        let series = column.as_materialized_series();
        let physical = series.to_physical_repr();
        polars_ensure!(
            physical.len() == self.of_row.len(),
            ShapeMismatch: "column {} has {} rows, the reordering expects {}",
            column.name(), physical.len(), self.of_row.len()
        );
        let chunks = physical.chunks();
        let scattered: ArrayRef = match physical.dtype() {
            DataType::Int64 => Box::new(self.primitive::<i64>(chunks)?),
            DataType::Float64 => Box::new(self.primitive::<f64>(chunks)?),
            DataType::Int32 => Box::new(self.primitive::<i32>(chunks)?),
            DataType::Int16 => Box::new(self.primitive::<i16>(chunks)?),
            _ => return Ok(None),
        };
        let out = Series::from_arrow(column.name().clone(), scattered)?;
        // Timestamps and dates: the same values under their logical type again.
        let out = if out.dtype() == series.dtype() {
            out
        } else {
            out.cast(series.dtype())?
        };
        Ok(Some(out.into()))
    }

    fn primitive<T: NativeType>(&self, chunks: &[ArrayRef]) -> PolarsResult<PrimitiveArray<T>> {
        let mut values = vec![T::default(); self.len];
        let mut validity: Option<MutableBitmap> = None;
        let mut dtype = None;
        let mut start = 0;
        for chunk in chunks {
            let Some(array) = chunk.as_any().downcast_ref::<PrimitiveArray<T>>() else {
                polars_bail!(ComputeError: "a chunk of type {:?} among {:?} chunks", chunk.dtype(), dtype);
            };
            let of_row = &self.of_row[start..start + array.len()];
            for (&to, &value) in of_row.iter().zip(array.values().iter()) {
                if to != DROPPED {
                    values[to as usize] = value;
                }
            }
            // Only rows that are null need marking: the bitmap starts all valid.
            if let Some(nulls) = array.validity().filter(|v| v.unset_bits() > 0) {
                let out = validity.get_or_insert_with(|| {
                    let mut all = MutableBitmap::with_capacity(self.len);
                    all.extend_constant(self.len, true);
                    all
                });
                for (&to, valid) in of_row.iter().zip(nulls.iter()) {
                    if to != DROPPED && !valid {
                        out.set(to as usize, false);
                    }
                }
            }
            dtype.get_or_insert_with(|| array.dtype().clone());
            start += array.len();
        }
        let dtype = dtype.unwrap_or_else(|| T::PRIMITIVE.into());
        Ok(PrimitiveArray::new(
            dtype,
            values.into(),
            validity.map(Bitmap::from),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scatter(order: &[IdxSize], column: Column) -> Column {
        let destinations = Destinations::new(order, column.len()).expect("row numbers fit");
        destinations
            .scatter(&column)
            .expect("scatter")
            .expect("a fixed-width column")
    }

    #[test]
    fn scattering_equals_gathering_for_every_fixed_width_type() {
        let order: Vec<IdxSize> = vec![4, 0, 3, 5];
        let idx = IdxCa::from_vec("".into(), order.clone());
        let columns: Vec<Column> = vec![
            Column::new(
                "i64".into(),
                [Some(1i64), None, Some(3), Some(4), None, Some(6)],
            ),
            Column::new("f64".into(), [0.5f64, -0.0, f64::NAN, 1e300, 7.25, -3.0]),
            Column::new(
                "i16".into(),
                [Some(1i16), Some(2), None, Some(4), Some(5), None],
            ),
            Column::new("i32".into(), [9i32, 8, 7, 6, 5, 4]),
            Int64Chunked::new(
                "at".into(),
                [Some(1_000i64), None, Some(3), Some(4), Some(5), None],
            )
            .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
            .into_series()
            .into(),
        ];
        for column in columns {
            let scattered = scatter(&order, column.clone());
            let gathered = column.take(&idx).expect("take");
            assert_eq!(scattered.dtype(), gathered.dtype(), "{}", column.name());
            assert_eq!(scattered.name(), gathered.name());
            // Bit for bit: NaN and -0.0 included.
            let bits = |c: &Column| -> Vec<Option<String>> {
                let s = c.as_materialized_series().to_physical_repr().into_owned();
                (0..s.len())
                    .map(|i| {
                        let v = s.get(i).expect("in range");
                        (!v.is_null()).then(|| format!("{v:?}"))
                    })
                    .collect()
            };
            assert_eq!(bits(&scattered), bits(&gathered), "{}", column.name());
            let null_count = scattered.null_count();
            assert_eq!(null_count, gathered.null_count(), "{}", column.name());
        }
    }

    /// A column in several chunks (Bronze as read: one per row group) scatters as one would.
    #[test]
    fn a_column_in_chunks_scatters_like_one_in_one_chunk() {
        let order: Vec<IdxSize> = vec![5, 0, 3, 1, 4];
        let mut chunked = Series::new("v".into(), [Some(1.5f64), None]);
        chunked
            .append(&Series::new("v".into(), [Some(3.0f64), Some(4.0)]))
            .expect("append");
        chunked
            .append(&Series::new("v".into(), [None, Some(6.0f64)]))
            .expect("append");
        assert_eq!(chunked.n_chunks(), 3);
        let idx = IdxCa::from_vec("".into(), order.clone());
        let gathered = chunked.rechunk().take(&idx).expect("take");
        let scattered = scatter(&order, chunked.into());
        let scattered = scattered.as_materialized_series();
        assert_eq!(scattered.n_chunks(), 1);
        assert!(
            scattered.equals_missing(&gathered),
            "{scattered:?} vs {gathered:?}"
        );
        assert_eq!(scattered.null_count(), 2);
    }

    #[test]
    fn strings_are_left_to_the_caller_and_bad_orders_refused() {
        let names = Column::new("s".into(), ["a", "b"]);
        let d = Destinations::new(&[1, 0], 2).expect("fits");
        assert!(d.scatter(&names).expect("no error").is_none());
        assert!(Destinations::new(&[2], 2).is_none(), "row 2 of 2");
        let short = Column::new("short".into(), [1i64]);
        assert!(d.scatter(&short).is_err(), "a column of another length");
    }
}

//! Parquet row groups encoded and compressed on every core.
//!
//! Polars' `BatchedWriter::write_batch` encodes the columns of a row group in parallel but
//! compresses their pages lazily, one after the other, while it writes them under its lock: on
//! a day of Silver, zstd then runs on one core while the other waits. Here each column is
//! encoded *and* compressed as one task, and the finished pages are appended in column order,
//! so the file is the one `write_batch` would write, byte for byte, only sooner.

use super::uuid_column;
use polars::io::parquet::write::{get_encodings, BatchedWriter};
use polars::prelude::*;
use polars_parquet::parquet::schema::types::PrimitiveLogicalType;
use polars_parquet::write::{
    array_to_columns, compress, to_parquet_type, CompressedPage, CompressionOptions, Encoding,
    FileWriter, ParquetType, SchemaDescriptor, Version, WriteOptions, ZstdLevel,
};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Rows per row group: Polars' default, for every lake table.
pub const ROW_GROUP_ROWS: usize = 512 * 512;

/// The zstd level of lake tables.
///
/// Level 1, not the library's default 3: a day of Silver (10 million rows) encodes in
/// noticeably less time for files a few per cent larger, and every table here is written
/// once and read by a handful of later runs.
fn lake_zstd() -> Option<ZstdLevel> {
    ZstdLevel::try_new(1).ok()
}

/// A Parquet file written a row group at a time, each group's columns on their own core.
pub struct ParallelGroupWriter<W: Write> {
    inner: BatchedWriter<W>,
    /// Column names, in schema order (what `plain` refers to).
    names: Vec<PlSmallStr>,
    fields: Vec<ParquetType>,
    /// The Arrow type of each column (what `write_arrays` checks its arrays against).
    arrow_types: Vec<ArrowDataType>,
    encodings: Vec<Vec<Encoding>>,
    /// Per column: the statistics and compression of its pages.
    options: Vec<WriteOptions>,
    /// Per column: stored as a UUID (`lake_with_uuids`).
    uuid: Vec<bool>,
}

impl<W: Write> ParallelGroupWriter<W> {
    /// A lake table (zstd level 1, min/max/null-count statistics) of `schema`.
    pub fn lake(sink: W, schema: &Schema) -> PolarsResult<Self> {
        Self::lake_with_uuids(sink, schema, &[])
    }

    /// A lake table of `schema` whose columns `uuids` (text in `schema`) are stored as
    /// Parquet's UUID logical type, 16 bytes a row, uncompressed (random bytes do not
    /// compress): `write_arrays` takes them as `output::uuid_column` arrays.
    ///
    /// The writer is the one `ParquetWriter::batched` builds, byte for byte, except for those
    /// columns' types (`writes_the_file_polars_batched_writer_writes`).
    pub fn lake_with_uuids(sink: W, schema: &Schema, uuids: &[&str]) -> PolarsResult<Self> {
        let statistics = StatisticsOptions::default();
        let options = WriteOptions {
            statistics,
            version: Version::V1,
            compression: CompressionOptions::Zstd(lake_zstd()),
            data_page_size: None,
        };
        let mut arrow_schema = schema.to_arrow(CompatLevel::newest());
        for name in uuids {
            match arrow_schema.get_mut(name) {
                Some(field) => field.dtype = uuid_column::uuid_arrow_type(),
                None => polars_bail!(ColumnNotFound: "no column {name} to store as UUID"),
            }
        }
        let fields = arrow_schema
            .iter_values()
            .map(|field| {
                let mut parquet = to_parquet_type(field)?;
                if let ParquetType::PrimitiveType(primitive) = &mut parquet {
                    if uuids.contains(&field.name.as_str()) {
                        primitive.logical_type = Some(PrimitiveLogicalType::Uuid);
                    }
                }
                Ok(parquet)
            })
            .collect::<PolarsResult<Vec<ParquetType>>>()?;
        let descriptor = SchemaDescriptor::new(PlSmallStr::from_static("root"), fields.clone());
        let arrow_types = arrow_schema
            .iter_values()
            .map(|f| f.dtype().clone())
            .collect();
        let encodings = get_encodings(&arrow_schema);
        let names: Vec<PlSmallStr> = schema.iter_names().cloned().collect();
        let file = FileWriter::new_with_parquet_schema(sink, arrow_schema, descriptor, options);
        let inner = BatchedWriter::new(Mutex::new(file), encodings.clone(), options, false, None);
        let column_options = names
            .iter()
            .map(|name| WriteOptions {
                compression: if uuids.contains(&name.as_str()) {
                    CompressionOptions::Uncompressed
                } else {
                    options.compression
                },
                ..options
            })
            .collect();
        let uuid = names.iter().map(|n| uuids.contains(&n.as_str())).collect();
        Ok(ParallelGroupWriter {
            uuid,
            inner,
            names,
            fields,
            arrow_types,
            options: column_options,
            encodings: encodings.iter().cloned().collect(),
        })
    }

    /// Writes the columns `names` (whose values are all or nearly all distinct, such as message
    /// ids) plain: by default the writer first estimates each string column's cardinality,
    /// hashing every value, only to find a dictionary not worth it.
    pub fn plain(self, names: &[&str]) -> Self {
        self.encoded(names, Encoding::Plain)
    }

    /// Writes the (flat) columns `names` with `encoding`: for example `DeltaBinaryPacked` for
    /// timestamps and counters, whose small steps pack into a few bits a row, where the
    /// default would first hash every value to estimate a cardinality that is nearly the row count.
    pub fn encoded(mut self, names: &[&str], encoding: Encoding) -> Self {
        for (column, encodings) in self.names.iter().zip(self.encodings.iter_mut()) {
            if names.contains(&column.as_str()) {
                *encodings = vec![encoding];
            }
        }
        self
    }

    /// Writes no min/max statistics for the columns `names` (null counts stay): random ids,
    /// whose minimum and maximum prune nothing and cost a string comparison per row.
    pub fn without_min_max(mut self, names: &[&str]) -> Self {
        for (column, options) in self.names.iter().zip(self.options.iter_mut()) {
            if names.contains(&column.as_str()) {
                options.statistics.min_value = false;
                options.statistics.max_value = false;
            }
        }
        self
    }

    /// Appends `df` in row groups of `ROW_GROUP_ROWS` (the last one shorter).
    pub fn write(&mut self, df: &DataFrame) -> PolarsResult<()> {
        for offset in (0..df.height()).step_by(ROW_GROUP_ROWS) {
            let mut group = df.slice(offset as i64, ROW_GROUP_ROWS);
            if group.should_rechunk() || group.first_col_n_chunks() > 1 {
                group.rechunk_mut_par();
            }
            self.write_group(&group)?;
        }
        Ok(())
    }

    /// One row group from a frame of single-chunk columns (a UUID column as Polars reads one
    /// back: 16-byte `Binary` values).
    fn write_group(&mut self, group: &DataFrame) -> PolarsResult<()> {
        for batch in group.iter_chunks(CompatLevel::newest(), false) {
            let arrays = batch
                .columns()
                .iter()
                .zip(&self.uuid)
                .map(|(array, uuid)| match uuid {
                    true => uuid_column::uuid_array_from_binary(array),
                    false => Ok(array.clone()),
                })
                .collect::<PolarsResult<Vec<ArrayRef>>>()?;
            let columns = encode_columns(&arrays, &self.fields, &self.encodings, &self.options)?;
            let leaves: Vec<Vec<CompressedPage>> = columns.into_iter().flatten().collect();
            self.inner.write_row_group(batch.len() as u64, &leaves)?;
        }
        Ok(())
    }

    /// Appends one row group from Arrow arrays, one per column in schema order, of the types
    /// the schema gives (`DataFrame::iter_chunks`' types) — except that a string column may
    /// come as a dictionary of its strings (`output::dictionary_column`), which is stored
    /// dictionary-encoded as it is, without hashing its rows again.
    pub fn write_arrays(&mut self, columns: &[ArrayRef]) -> PolarsResult<()> {
        let rows = columns.first().map_or(0, |c| c.len());
        if columns.len() != self.arrow_types.len() {
            polars_bail!(ShapeMismatch: "{} arrays for {} columns", columns.len(), self.arrow_types.len());
        }
        for ((array, expected), name) in columns.iter().zip(&self.arrow_types).zip(&self.names) {
            let fits = match array.dtype() {
                ArrowDataType::Dictionary(_, values, _) => **values == *expected,
                other => other == expected,
            };
            if !fits || array.len() != rows {
                polars_bail!(SchemaMismatch: "column {name}: {} rows of {:?}, expected {rows} of {expected:?}", array.len(), array.dtype());
            }
        }
        if rows == 0 {
            // As `write` with an empty frame: no row group.
            return Ok(());
        }
        let encoded = encode_columns(columns, &self.fields, &self.encodings, &self.options)?;
        let leaves: Vec<Vec<CompressedPage>> = encoded.into_iter().flatten().collect();
        self.inner.write_row_group(rows as u64, &leaves)
    }

    /// Writes the footer.
    pub fn finish(self) -> PolarsResult<u64> {
        self.inner.finish()
    }
}

/// Every column's pages, the columns shared out among one thread per core.
///
/// Threads of its own, not rayon's pool: the writer is called from threads that a pool worker
/// may be waiting for (`simulate --threads 1` encodes Bronze beside its only worker), and a
/// task queued behind that worker would never run.
fn encode_columns(
    columns: &[ArrayRef],
    fields: &[ParquetType],
    encodings: &[Vec<Encoding>],
    options: &[WriteOptions],
) -> PolarsResult<Vec<Vec<Vec<CompressedPage>>>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, columns.len().max(1));
    let next = AtomicUsize::new(0);
    let done: Vec<Mutex<Option<EncodedColumn>>> =
        columns.iter().map(|_| Mutex::new(None)).collect();
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let (Some(array), Some(field), Some(encoding), Some(options)) = (
            columns.get(i),
            fields.get(i),
            encodings.get(i),
            options.get(i),
        ) else {
            break;
        };
        let pages = encode_column(array, field, encoding, *options);
        *done[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(pages);
    };
    std::thread::scope(|scope| {
        for _ in 1..workers {
            scope.spawn(work);
        }
        work();
    });
    done.into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .unwrap_or_else(|| {
                    Err(PolarsError::ComputeError(
                        "a column was not encoded (schema and frame differ)".into(),
                    ))
                })
        })
        .collect()
}

type EncodedColumn = PolarsResult<Vec<Vec<CompressedPage>>>;

/// One column's pages, encoded and compressed (a nested column has one page list per leaf).
fn encode_column(
    array: &ArrayRef,
    field: &ParquetType,
    encoding: &[Encoding],
    options: WriteOptions,
) -> PolarsResult<Vec<Vec<CompressedPage>>> {
    array_to_columns(array, field.clone(), options, encoding)?
        .into_iter()
        .map(|pages| {
            pages
                .map(|page| Ok(compress(page?, Vec::new(), options.compression)?))
                .collect::<PolarsResult<Vec<CompressedPage>>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::io::parquet::write::ParquetWriter;
    use uuid::Uuid;

    /// Strings (some repeated, some null), integers, floats and a list column over three row
    /// groups, the last one short.
    fn sample() -> DataFrame {
        let n = 2 * ROW_GROUP_ROWS + 1_234;
        let ids: Vec<String> = (0..n).map(|i| format!("id-{:08x}", i * 7919)).collect();
        let kinds: Vec<Option<&str>> = (0..n)
            .map(|i| [Some("normal"), Some("alert"), None][i % 3])
            .collect();
        let values: Vec<Option<f64>> = (0..n)
            .map(|i| (i % 11 != 0).then_some(i as f64 / 3.0))
            .collect();
        let small: Vec<i16> = (0..n).map(|i| (i % 300) as i16).collect();
        let mut lists = ListStringChunkedBuilder::new("actions".into(), n, n * 2);
        for i in 0..n {
            lists.append_values_iter(["call", "check"].into_iter().take(i % 3));
        }
        DataFrame::new_infer_height(vec![
            Column::new("id".into(), ids),
            Column::new("kind".into(), kinds),
            Column::new("value".into(), values),
            Column::new("small".into(), small),
            lists.finish().into_series().into(),
        ])
        .expect("frame")
    }

    #[test]
    fn writes_the_file_polars_batched_writer_writes() {
        let df = sample();
        let mut ours = Vec::new();
        let mut writer = ParallelGroupWriter::lake(&mut ours, df.schema()).expect("writer");
        writer.write(&df).expect("write");
        writer.finish().expect("finish");

        let mut theirs = Vec::new();
        let mut reference = ParquetWriter::new(&mut theirs)
            .with_compression(ParquetCompression::Zstd(ZstdLevel::try_new(1).ok()))
            .with_statistics(StatisticsOptions::default())
            .batched(df.schema())
            .expect("writer");
        for offset in (0..df.height()).step_by(ROW_GROUP_ROWS) {
            reference
                .write_batch(&df.slice(offset as i64, ROW_GROUP_ROWS))
                .expect("write");
        }
        reference.finish().expect("finish");
        assert!(ours.len() > 1_000);
        assert!(
            ours == theirs,
            "the files differ ({} vs {} bytes)",
            ours.len(),
            theirs.len()
        );

        // The unique column would be written plain anyway (in groups of more than 128 rows;
        // Polars tries a dictionary on smaller ones): saying so changes no byte.
        let mut plain = Vec::new();
        let mut writer = ParallelGroupWriter::lake(&mut plain, df.schema())
            .expect("writer")
            .plain(&["id"]);
        writer.write(&df).expect("write");
        writer.finish().expect("finish");
        assert!(plain == ours, "declaring `id` plain changed the file");

        let back = ParquetReader::new(std::io::Cursor::new(ours))
            .finish()
            .expect("read back");
        assert!(back.equals_missing(&df));
    }

    #[test]
    fn uuid_columns_are_sixteen_bytes_with_the_uuid_logical_type() {
        let ids: Vec<Uuid> = (0..1_000u128)
            .map(|i| Uuid::from_u128(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)))
            .collect();
        let schema = Schema::from_iter([
            Field::new("id".into(), DataType::String),
            Field::new("n".into(), DataType::Int64),
        ]);
        let n: ArrayRef = Box::new(polars_arrow::array::PrimitiveArray::<i64>::from_vec(
            (0..1_000).collect(),
        ));
        let mut bytes = Vec::new();
        let mut writer = ParallelGroupWriter::lake_with_uuids(&mut bytes, &schema, &["id"])
            .expect("writer")
            .plain(&["id"]);
        writer
            .write_arrays(&[uuid_column::uuid_array(ids.iter().copied()), n])
            .expect("write");
        writer.finish().expect("finish");

        let metadata = polars_parquet::read::read_metadata(&mut std::io::Cursor::new(&bytes))
            .expect("metadata");
        let column = &metadata.schema().columns()[0];
        let primitive = &column.descriptor.primitive_type;
        assert_eq!(
            primitive.physical_type,
            polars_parquet::parquet::schema::types::PhysicalType::FixedLenByteArray(16)
        );
        assert_eq!(primitive.logical_type, Some(PrimitiveLogicalType::Uuid));

        let back = ParquetReader::new(std::io::Cursor::new(bytes))
            .finish()
            .expect("read back");
        let read = back.column("id").expect("id").binary().expect("bytes");
        let read: Vec<Uuid> = read
            .iter()
            .map(|b| uuid_column::uuid_from_bytes(b.expect("no null")).expect("16 bytes"))
            .collect();
        assert_eq!(read, ids);
        assert_eq!(
            back.column("n").expect("n").i64().expect("i64").get(999),
            Some(999)
        );
    }

    #[test]
    fn a_uuid_column_must_exist() {
        let schema = Schema::from_iter([Field::new("id".into(), DataType::String)]);
        let err = ParallelGroupWriter::lake_with_uuids(Vec::new(), &schema, &["message_id"])
            .err()
            .expect("an unknown column is an error");
        assert!(err.to_string().contains("message_id"), "{err}");
    }
}

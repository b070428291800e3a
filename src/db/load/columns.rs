//! Reading Parquet columns into COPY fields, typed by the staging column they feed.

use super::LoadError;
use crate::db::copy::Field;
use polars::prelude::{DataFrame, DataType, ParquetReader, SerReader, TimeUnit};
use std::path::Path;

/// What a staging column holds; decides how a Parquet column is read and encoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Uuid,
    Text,
    F64,
    I16,
    Bool,
    Date,
    TimestampMs,
    I32,
    TextList,
}

/// One staging column: the database column it feeds, the Parquet column it comes from.
pub struct Col {
    pub target: &'static str,
    pub source: &'static str,
    pub kind: Kind,
    /// A missing optional column loads as NULLs (Bronze written by older tools, for instance).
    pub required: bool,
}

pub(crate) const fn col(target: &'static str, source: &'static str, kind: Kind) -> Col {
    Col {
        target,
        source,
        kind,
        required: true,
    }
}

pub(crate) const fn optional(target: &'static str, kind: Kind) -> Col {
    Col {
        target,
        source: target,
        kind,
        required: false,
    }
}

use Kind::*;

pub(crate) fn read_parquet(path: &Path) -> Result<DataFrame, LoadError> {
    let err = |reason: String| LoadError::Parquet {
        file: path.display().to_string(),
        reason,
    };
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    ParquetReader::new(f)
        .finish()
        .map_err(|e| err(e.to_string()))
}

/// Reads the columns of `spec` from a data frame, in order, as COPY fields.
pub fn fields<'a>(
    df: &'a DataFrame,
    file: &str,
    spec: &[Col],
) -> Result<Vec<Field<'a>>, LoadError> {
    spec.iter().map(|c| field(df, file, c)).collect()
}

fn field<'a>(df: &'a DataFrame, file: &str, c: &Col) -> Result<Field<'a>, LoadError> {
    let n = df.height();
    let Ok(column) = df.column(c.source) else {
        if c.required {
            return Err(LoadError::MissingColumn {
                file: file.into(),
                column: c.source.into(),
            });
        }
        return Ok(match c.kind {
            Uuid => Field::Uuid(vec![None; n]),
            Text => Field::Text(vec![None; n]),
            F64 => Field::F64(vec![None; n]),
            I16 => Field::I16(vec![None; n]),
            Bool => Field::Bool(vec![None; n]),
            Date => Field::Date(vec![None; n]),
            TimestampMs => Field::TimestampMs(vec![None; n]),
            I32 => Field::I32(vec![None; n]),
            TextList => Field::TextList(vec![None; n]),
        });
    };
    let series = column.as_materialized_series();
    let wrong = |expected: &'static str| LoadError::WrongType {
        file: file.into(),
        column: c.source.into(),
        found: series.dtype().to_string(),
        expected,
    };
    let cast = |to: &DataType, expected: &'static str| {
        if series.dtype().is_primitive_numeric() || series.dtype() == to {
            series.cast(to).map_err(|_| wrong(expected))
        } else {
            Err(wrong(expected))
        }
    };
    Ok(match c.kind {
        // As 16 bytes (Parquet's UUID type, what kidjamo writes) or as text.
        Uuid if series.dtype() == &DataType::Binary => {
            let ca = series.binary().map_err(|_| wrong("a UUID"))?;
            let mut out = Vec::with_capacity(n);
            for (row, v) in ca.iter().enumerate() {
                out.push(match v {
                    None => None,
                    Some(bytes) => {
                        Some(<[u8; 16]>::try_from(bytes).map_err(|_| LoadError::BadUuid {
                            file: file.into(),
                            row,
                            column: c.source.into(),
                            value: format!("{} bytes, not 16", bytes.len()),
                        })?)
                    }
                });
            }
            Field::Uuid(out)
        }
        Uuid => {
            let ca = series
                .str()
                .map_err(|_| wrong("a UUID (text or 16 bytes)"))?;
            let mut out = Vec::with_capacity(n);
            for (row, v) in ca.iter().enumerate() {
                out.push(match v {
                    None => None,
                    Some(s) => Some(
                        uuid::Uuid::try_parse(s)
                            .map_err(|_| LoadError::BadUuid {
                                file: file.into(),
                                row,
                                column: c.source.into(),
                                value: s.chars().take(60).collect(),
                            })?
                            .into_bytes(),
                    ),
                });
            }
            Field::Uuid(out)
        }
        Text => Field::Text(
            series
                .str()
                .map_err(|_| wrong("a string"))?
                .iter()
                .collect(),
        ),
        F64 => {
            let s = cast(&DataType::Float64, "a number")?;
            Field::F64(s.f64().map_err(|_| wrong("a number"))?.iter().collect())
        }
        I16 => {
            let s = cast(&DataType::Int16, "an integer")?;
            Field::I16(s.i16().map_err(|_| wrong("an integer"))?.iter().collect())
        }
        I32 => {
            let s = cast(&DataType::Int32, "an integer")?;
            Field::I32(s.i32().map_err(|_| wrong("an integer"))?.iter().collect())
        }
        TextList => {
            let lists = series.list().map_err(|_| wrong("a list of strings"))?;
            let mut out = Vec::with_capacity(n);
            for item in lists.series_iter() {
                out.push(match item {
                    None => None,
                    Some(inner) => Some(
                        inner
                            .str()
                            .map_err(|_| wrong("a list of strings"))?
                            .iter()
                            .map(|v| v.unwrap_or_default().to_string())
                            .collect(),
                    ),
                });
            }
            Field::TextList(out)
        }
        Bool => Field::Bool(
            series
                .bool()
                .map_err(|_| wrong("a boolean"))?
                .iter()
                .collect(),
        ),
        Date => {
            if series.dtype() != &DataType::Date {
                return Err(wrong("a date"));
            }
            let s = series.cast(&DataType::Int32).map_err(|_| wrong("a date"))?;
            Field::Date(s.i32().map_err(|_| wrong("a date"))?.iter().collect())
        }
        TimestampMs => {
            let per_ms = match series.dtype() {
                DataType::Datetime(TimeUnit::Milliseconds, _) => (1, 1),
                DataType::Datetime(TimeUnit::Microseconds, _) => (1, 1000),
                DataType::Datetime(TimeUnit::Nanoseconds, _) => (1, 1_000_000),
                _ => return Err(wrong("a timestamp")),
            };
            let s = series
                .cast(&DataType::Int64)
                .map_err(|_| wrong("a timestamp"))?;
            let ca = s.i64().map_err(|_| wrong("a timestamp"))?;
            Field::TimestampMs(
                ca.iter()
                    .map(|v| v.map(|x| x * per_ms.0 / per_ms.1))
                    .collect(),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_uuid_names_file_row_and_column() {
        let df = DataFrame::new(
            1,
            vec![polars::prelude::Column::new(
                "patient_id".into(),
                ["not-a-uuid"],
            )],
        )
        .expect("frame");
        let err = field(&df, "x.parquet", &col("patient_id", "patient_id", Uuid))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("x.parquet: row 0: patient_id \"not-a-uuid\" is not a UUID")
        );
    }

    #[test]
    fn ids_read_as_sixteen_bytes_or_named_when_not() {
        let id = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        let bytes: Vec<&[u8]> = vec![id.as_bytes(), &[1, 2, 3]];
        let df = DataFrame::new(
            2,
            vec![polars::prelude::Column::new("message_id".into(), bytes)],
        )
        .expect("frame");
        let err = field(&df, "x.parquet", &col("message_id", "message_id", Uuid))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("x.parquet: row 1: message_id \"3 bytes, not 16\" is not a UUID")
        );
        match field(
            &df.slice(0, 1),
            "x.parquet",
            &col("message_id", "message_id", Uuid),
        ) {
            Ok(Field::Uuid(ids)) => assert_eq!(ids, vec![Some(*id.as_bytes())]),
            _ => panic!("16 bytes are an id"),
        }
    }
}

//! Ids as Parquet's UUID logical type: 16 bytes a row (`FIXED_LEN_BYTE_ARRAY(16)`), not the
//! 36 characters of their text.
//!
//! Why: a message id is unique and random, so its text neither dictionary-encodes nor
//! compresses much (zstd squeezed 36 hex characters to about 18 bytes, and that was a tenth of
//! `simulate`'s time); formatting it cost as much again, and `etl daily` parsed it back, row by
//! row. As 16 bytes it is written as it is held, read without parsing, and other tools see a
//! UUID: DuckDB reads the column as `UUID`, pyarrow as `fixed_size_binary[16]`, Polars as
//! `Binary`.

use polars::prelude::{polars_bail, ArrayRef, PolarsResult};
use polars_arrow::array::{Array, BinaryViewArray, FixedSizeBinaryArray};
use polars_arrow::bitmap::Bitmap;
use polars_arrow::datatypes::ArrowDataType;
use uuid::Uuid;

/// Bytes of one id.
pub const UUID_BYTES: usize = 16;

/// The Arrow type of a UUID column in a file.
pub fn uuid_arrow_type() -> ArrowDataType {
    ArrowDataType::FixedSizeBinary(UUID_BYTES)
}

/// `ids` as a column of 16-byte values (big-endian, as `Uuid::as_bytes` and RFC 9562 order
/// them), without nulls.
pub fn uuid_array(ids: impl ExactSizeIterator<Item = Uuid>) -> ArrayRef {
    let mut bytes = Vec::with_capacity(ids.len() * UUID_BYTES);
    for id in ids {
        bytes.extend_from_slice(id.as_bytes());
    }
    Box::new(FixedSizeBinaryArray::new(
        uuid_arrow_type(),
        bytes.into(),
        None,
    ))
}

/// `ids` as a column of 16-byte values, `None` as null.
pub fn optional_uuid_array(ids: &[Option<Uuid>]) -> ArrayRef {
    let mut bytes = Vec::with_capacity(ids.len() * UUID_BYTES);
    for id in ids {
        bytes.extend_from_slice(id.unwrap_or_default().as_bytes());
    }
    let validity = ids
        .iter()
        .any(Option::is_none)
        .then(|| Bitmap::from_iter(ids.iter().map(Option::is_some)));
    Box::new(FixedSizeBinaryArray::new(
        uuid_arrow_type(),
        bytes.into(),
        validity,
    ))
}

/// The measurement tables' id columns stored as UUIDs (Bronze, Silver); a file rewritten from
/// a frame that holds them as bytes (`erase patient`, `restore patient`) keeps their type.
pub const UUID_COLUMNS: &[&str] = &["message_id"];

/// An array of 16-byte values read back as `Binary` (Polars' view of a UUID column) as a
/// UUID column again; an error when a value is not 16 bytes.
pub fn uuid_array_from_binary(array: &ArrayRef) -> PolarsResult<ArrayRef> {
    let Some(binary) = array.as_any().downcast_ref::<BinaryViewArray>() else {
        polars_bail!(SchemaMismatch: "a UUID column must be 16-byte values, found {:?}", array.dtype());
    };
    let mut bytes = Vec::with_capacity(binary.len() * UUID_BYTES);
    for (i, value) in binary.values_iter().enumerate() {
        if binary.is_null(i) {
            bytes.extend_from_slice(&[0; UUID_BYTES]);
        } else if value.len() == UUID_BYTES {
            bytes.extend_from_slice(value);
        } else {
            polars_bail!(ComputeError: "a UUID must be 16 bytes, found {}", value.len());
        }
    }
    Ok(Box::new(FixedSizeBinaryArray::new(
        uuid_arrow_type(),
        bytes.into(),
        binary.validity().cloned(),
    )))
}

/// The id in `bytes`, if they are exactly 16.
pub fn uuid_from_bytes(bytes: &[u8]) -> Option<Uuid> {
    <[u8; UUID_BYTES]>::try_from(bytes)
        .ok()
        .map(Uuid::from_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_their_sixteen_bytes_in_order_and_nulls_are_nulls() {
        let a = Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff);
        let b = Uuid::from_u128(7);
        let array = uuid_array([a, b].into_iter());
        let fixed = array
            .as_any()
            .downcast_ref::<FixedSizeBinaryArray>()
            .expect("fixed-size binary");
        assert_eq!(fixed.len(), 2);
        assert_eq!(fixed.value(0), a.as_bytes());
        assert_eq!(uuid_from_bytes(fixed.value(1)), Some(b));
        assert_eq!(fixed.null_count(), 0);

        let optional = optional_uuid_array(&[Some(a), None, Some(b)]);
        let fixed = optional
            .as_any()
            .downcast_ref::<FixedSizeBinaryArray>()
            .expect("fixed-size binary");
        assert_eq!(fixed.len(), 3);
        assert_eq!(fixed.null_count(), 1);
        assert!(fixed.is_null(1));
        assert_eq!(uuid_from_bytes(fixed.value(2)), Some(b));
    }

    #[test]
    fn ids_read_back_as_bytes_become_a_uuid_column_again() {
        let a = Uuid::from_u128(42);
        let values: Vec<Option<&[u8]>> = vec![Some(a.as_bytes()), None];
        let binary: ArrayRef = Box::new(BinaryViewArray::from_slice(values));
        let back = uuid_array_from_binary(&binary).expect("16-byte values");
        let fixed = back
            .as_any()
            .downcast_ref::<FixedSizeBinaryArray>()
            .expect("fixed-size binary");
        assert_eq!(fixed.value(0), a.as_bytes());
        assert!(fixed.is_null(1));

        let short: ArrayRef = Box::new(BinaryViewArray::from_slice_values([&b"abc"[..]]));
        let err = uuid_array_from_binary(&short).expect_err("3 bytes are no id");
        assert!(err.to_string().contains("16 bytes"), "{err}");
    }

    #[test]
    fn only_sixteen_bytes_make_an_id() {
        assert_eq!(uuid_from_bytes(&[0u8; 15]), None);
        assert_eq!(uuid_from_bytes(&[0u8; 17]), None);
        assert_eq!(
            uuid_from_bytes(&[1u8; 16]),
            Some(Uuid::from_bytes([1u8; 16]))
        );
    }
}

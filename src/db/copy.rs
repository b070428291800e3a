//! PostgreSQL binary COPY, encoded by hand from column vectors: one buffer per batch instead of a
//! `ToSql` trait object per value, which is what lets `db load` keep up with the server.
//! Format: <https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4>.

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC).
pub const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// One column of a batch, already in the type its staging column has.
pub enum Field<'a> {
    Uuid(Vec<Option<[u8; 16]>>),
    Text(Vec<Option<&'a str>>),
    F64(Vec<Option<f64>>),
    I16(Vec<Option<i16>>),
    Bool(Vec<Option<bool>>),
    /// Days since 1970-01-01.
    Date(Vec<Option<i32>>),
    /// Milliseconds since the Unix epoch, UTC.
    TimestampMs(Vec<Option<i64>>),
    I32(Vec<Option<i32>>),
    /// A one-dimensional `text[]`.
    TextList(Vec<Option<Vec<String>>>),
}

impl Field<'_> {
    pub fn len(&self) -> usize {
        match self {
            Field::Uuid(v) => v.len(),
            Field::Text(v) => v.len(),
            Field::F64(v) => v.len(),
            Field::I16(v) => v.len(),
            Field::Bool(v) => v.len(),
            Field::Date(v) => v.len(),
            Field::TimestampMs(v) => v.len(),
            Field::I32(v) => v.len(),
            Field::TextList(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The PostgreSQL type of the staging column this field is copied into.
    pub fn pg_type(&self) -> &'static str {
        match self {
            Field::Uuid(_) => "uuid",
            Field::Text(_) => "text",
            Field::F64(_) => "double precision",
            Field::I16(_) => "smallint",
            Field::Bool(_) => "boolean",
            Field::Date(_) => "date",
            Field::TimestampMs(_) => "timestamptz",
            Field::I32(_) => "integer",
            Field::TextList(_) => "text[]",
        }
    }

    fn encode(&self, row: usize, out: &mut Vec<u8>) {
        fn put(out: &mut Vec<u8>, bytes: &[u8]) {
            out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        const NULL: [u8; 4] = (-1i32).to_be_bytes();
        match self {
            Field::Uuid(v) => match v[row] {
                Some(b) => put(out, &b),
                None => out.extend_from_slice(&NULL),
            },
            Field::Text(v) => match v[row] {
                Some(s) => put(out, s.as_bytes()),
                None => out.extend_from_slice(&NULL),
            },
            Field::F64(v) => match v[row] {
                Some(x) => put(out, &x.to_be_bytes()),
                None => out.extend_from_slice(&NULL),
            },
            Field::I16(v) => match v[row] {
                Some(x) => put(out, &x.to_be_bytes()),
                None => out.extend_from_slice(&NULL),
            },
            Field::Bool(v) => match v[row] {
                Some(x) => put(out, &[u8::from(x)]),
                None => out.extend_from_slice(&NULL),
            },
            Field::Date(v) => match v[row] {
                Some(d) => put(out, &(d - PG_EPOCH_DAYS).to_be_bytes()),
                None => out.extend_from_slice(&NULL),
            },
            Field::TimestampMs(v) => match v[row] {
                Some(ms) => put(out, &(ms * 1000 - PG_EPOCH_US).to_be_bytes()),
                None => out.extend_from_slice(&NULL),
            },
            Field::I32(v) => match v[row] {
                Some(x) => put(out, &x.to_be_bytes()),
                None => out.extend_from_slice(&NULL),
            },
            Field::TextList(v) => match &v[row] {
                Some(items) => put(out, &text_array(items)),
                None => out.extend_from_slice(&NULL),
            },
        }
    }
}

/// OID of `text`, the element type of the arrays we send.
const TEXT_OID: i32 = 25;

/// PostgreSQL's binary array: dimensions, null flag, element type, then each element.
fn text_array(items: &[String]) -> Vec<u8> {
    let mut a = Vec::new();
    let dims: i32 = if items.is_empty() { 0 } else { 1 };
    a.extend_from_slice(&dims.to_be_bytes());
    a.extend_from_slice(&0i32.to_be_bytes());
    a.extend_from_slice(&TEXT_OID.to_be_bytes());
    if dims == 1 {
        a.extend_from_slice(&(items.len() as i32).to_be_bytes());
        a.extend_from_slice(&1i32.to_be_bytes());
    }
    for item in items {
        a.extend_from_slice(&(item.len() as i32).to_be_bytes());
        a.extend_from_slice(item.as_bytes());
    }
    a
}

/// What every binary COPY stream starts with.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// The signature, the flags field and the header extension's length: a header without
/// extension, as this module writes it.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Signature, flags and extension length: the part of a header that is always there.
pub const HEADER_LEN: usize = 19;
pub const TRAILER: &[u8] = &(-1i16).to_be_bytes();

/// Encodes the given rows of `fields` (all the same length) into `out`, without header or
/// trailer.
pub fn encode_rows(fields: &[Field<'_>], rows: impl Iterator<Item = usize>, out: &mut Vec<u8>) {
    let count = (fields.len() as i16).to_be_bytes();
    for row in rows {
        out.extend_from_slice(&count);
        for f in fields {
            f.encode(row, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_encoded_as_postgres_expects() {
        let fields = [
            Field::I16(vec![Some(7), None]),
            Field::TimestampMs(vec![Some(946_684_800_001), None]),
            Field::Date(vec![Some(10_958), None]),
            Field::Text(vec![Some("ok"), None]),
        ];
        let mut out = Vec::new();
        encode_rows(&fields, 0..2, &mut out);
        let mut expected = Vec::new();
        expected.extend_from_slice(&4i16.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 2, 0, 7]);
        expected.extend_from_slice(&[0, 0, 0, 8]);
        expected.extend_from_slice(&1000i64.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 1]);
        expected.extend_from_slice(&[0, 0, 0, 2, b'o', b'k']);
        expected.extend_from_slice(&4i16.to_be_bytes());
        for _ in 0..4 {
            expected.extend_from_slice(&(-1i32).to_be_bytes());
        }
        assert_eq!(out, expected);
        assert_eq!(HEADER.len(), 19);
    }
}

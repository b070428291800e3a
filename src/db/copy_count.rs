//! Counting the tuples of a PostgreSQL binary COPY stream as it passes through a writer, so that
//! a backup learns each member's row count from the one COPY it runs instead of a second scan
//! (`SELECT count(*)`). Only the framing is read, chunk by chunk, whatever the chunks' sizes.

use std::io::Write;

use super::copy::{HEADER_LEN, SIGNATURE};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Header,
    /// Bytes of the header extension still to skip.
    Extension(usize),
    FieldCount,
    FieldLength,
    /// Bytes of a field's value still to skip.
    FieldData(usize),
    /// The trailer was read: nothing may follow.
    End,
}

/// Forwards every byte to `inner` and counts the tuples they frame.
pub struct TupleCounter<W> {
    inner: W,
    expect: Expect,
    /// The bytes of a fixed-size item (header, count, length) split across two writes.
    partial: Vec<u8>,
    fields_left: u16,
    tuples: u64,
}

impl<W: Write> TupleCounter<W> {
    pub fn new(inner: W) -> Self {
        TupleCounter {
            inner,
            expect: Expect::Header,
            partial: Vec::with_capacity(HEADER_LEN),
            fields_left: 0,
            tuples: 0,
        }
    }

    /// The tuples counted; an error when the stream did not end with its trailer.
    pub fn finish(self) -> Result<(u64, W), String> {
        if self.expect != Expect::End {
            return Err("binary COPY data ended without its trailer".into());
        }
        Ok((self.tuples, self.inner))
    }

    /// Takes `n` bytes for a fixed-size item from `data[*at..]`, gathering across calls;
    /// None until all `n` are there.
    fn take(&mut self, data: &[u8], at: &mut usize, n: usize) -> Option<Vec<u8>> {
        let want = n - self.partial.len();
        let got = want.min(data.len() - *at);
        self.partial.extend_from_slice(&data[*at..*at + got]);
        *at += got;
        (self.partial.len() == n).then(|| std::mem::take(&mut self.partial))
    }

    fn next_field_or_tuple(&mut self) {
        self.expect = if self.fields_left == 0 {
            Expect::FieldCount
        } else {
            Expect::FieldLength
        };
    }

    fn scan(&mut self, data: &[u8]) -> Result<(), String> {
        let mut at = 0;
        while at < data.len() {
            match self.expect {
                Expect::Header => {
                    let Some(h) = self.take(data, &mut at, HEADER_LEN) else {
                        break;
                    };
                    if &h[..SIGNATURE.len()] != SIGNATURE {
                        return Err("not a binary COPY stream".into());
                    }
                    let extension = i32::from_be_bytes([h[15], h[16], h[17], h[18]]);
                    let extension = usize::try_from(extension)
                        .map_err(|_| "bad binary COPY header extension".to_string())?;
                    self.expect = Expect::Extension(extension);
                }
                Expect::Extension(left) => {
                    let skip = left.min(data.len() - at);
                    at += skip;
                    self.expect = if skip < left {
                        Expect::Extension(left - skip)
                    } else {
                        Expect::FieldCount
                    };
                }
                Expect::FieldData(left) => {
                    let skip = left.min(data.len() - at);
                    at += skip;
                    if skip < left {
                        self.expect = Expect::FieldData(left - skip);
                    } else {
                        self.next_field_or_tuple();
                    }
                }
                Expect::FieldCount => {
                    let Some(b) = self.take(data, &mut at, 2) else {
                        break;
                    };
                    let fields = i16::from_be_bytes([b[0], b[1]]);
                    if fields == -1 {
                        self.expect = Expect::End;
                        continue;
                    }
                    self.fields_left = u16::try_from(fields)
                        .map_err(|_| format!("bad field count {fields} in binary COPY data"))?;
                    self.tuples += 1;
                    self.next_field_or_tuple();
                }
                Expect::FieldLength => {
                    let Some(b) = self.take(data, &mut at, 4) else {
                        break;
                    };
                    let len = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    self.fields_left -= 1;
                    match len {
                        // NULL, or an empty value
                        -1 | 0 => self.next_field_or_tuple(),
                        n if n > 0 => self.expect = Expect::FieldData(n as usize),
                        _ => return Err(format!("bad field length {len} in binary COPY data")),
                    }
                }
                Expect::End => return Err("binary COPY data goes on after its trailer".into()),
            }
        }
        Ok(())
    }
}

impl<W: Write> Write for TupleCounter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.scan(&buf[..n])
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(tuples: &[&[Option<&[u8]>]]) -> Vec<u8> {
        let mut s = SIGNATURE.to_vec();
        s.extend_from_slice(&0i32.to_be_bytes());
        s.extend_from_slice(&3i32.to_be_bytes());
        s.extend_from_slice(b"ext");
        for t in tuples {
            s.extend_from_slice(&(t.len() as i16).to_be_bytes());
            for f in *t {
                match f {
                    Some(v) => {
                        s.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        s.extend_from_slice(v);
                    }
                    None => s.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
        }
        s.extend_from_slice(&(-1i16).to_be_bytes());
        s
    }

    fn count_in_chunks(data: &[u8], chunk: usize) -> Result<(u64, Vec<u8>), String> {
        let mut c = TupleCounter::new(Vec::new());
        for piece in data.chunks(chunk) {
            c.write_all(piece).map_err(|e| e.to_string())?;
        }
        c.finish()
    }

    #[test]
    fn counts_tuples_whatever_the_chunks_and_passes_every_byte_on() {
        let data = stream(&[
            &[Some(b"abc"), None, Some(b"")],
            &[],
            &[Some(&[0xff; 300]), Some(b"\x00\x01")],
        ]);
        for chunk in [1, 2, 3, 5, 7, 64, data.len()] {
            let (n, copied) = count_in_chunks(&data, chunk).expect("count");
            assert_eq!(n, 3, "chunks of {chunk}");
            assert_eq!(copied, data);
        }
        assert_eq!(count_in_chunks(&stream(&[]), 4).expect("empty").0, 0);
    }

    #[test]
    fn truncated_foreign_or_overlong_data_is_an_error_not_a_panic() {
        let data = stream(&[&[Some(b"abc")]]);
        assert!(
            count_in_chunks(&data[..data.len() - 1], 3).is_err(),
            "no trailer"
        );
        assert!(count_in_chunks(&data[..12], 3).is_err(), "header only");
        assert!(count_in_chunks(b"not a copy stream at all", 5).is_err());
        let mut longer = data.clone();
        longer.push(0);
        assert!(
            count_in_chunks(&longer, 3).is_err(),
            "bytes after the trailer"
        );
        let mut bad_length = stream(&[&[Some(b"abc")]]);
        let at = HEADER_LEN + 3 + 2;
        bad_length[at..at + 4].copy_from_slice(&(-7i32).to_be_bytes());
        assert!(count_in_chunks(&bad_length, 3).is_err(), "negative length");
    }
}

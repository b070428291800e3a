//! A request body cut into records, without reparsing them: one JSON object, a JSON array of
//! objects, or NDJSON. Each record keeps its exact bytes, so what reaches Kafka is what the
//! device sent (the same bytes `replay` would send for the same line).

/// Why a body could not be cut into records (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

/// How the records are framed, from the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `application/json`: one object or an array of objects.
    Json,
    /// `application/x-ndjson` (or `application/jsonl`): one record per line.
    Ndjson,
}

impl Framing {
    /// `None` for a content type kidjamo does not take (HTTP 415).
    pub fn from_content_type(content_type: Option<&str>) -> Option<Framing> {
        let media = content_type
            .unwrap_or("application/json")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json" | "" => Some(Framing::Json),
            "application/x-ndjson" | "application/jsonl" | "application/ndjson" => {
                Some(Framing::Ndjson)
            }
            _ => None,
        }
    }
}

/// The records of a body, each as its exact bytes. NDJSON lines are records even when they
/// are not JSON (validation then rejects them with a reason); a JSON body must be well formed
/// as a whole.
pub fn split_records(body: &[u8], framing: Framing) -> Result<Vec<&[u8]>, BodyError> {
    match framing {
        Framing::Ndjson => Ok(body
            .split(|b| *b == b'\n')
            .map(trim)
            .filter(|line| !line.is_empty())
            .collect()),
        Framing::Json => {
            let body = trim(body);
            match body.first() {
                None => Err(BodyError("the body is empty".into())),
                Some(b'[') => split_array(body),
                Some(b'{') => {
                    let end = value_end(body, 0)?;
                    if end != body.len() {
                        return Err(BodyError(format!(
                            "unexpected bytes after the JSON object at byte {end}"
                        )));
                    }
                    Ok(vec![body])
                }
                Some(_) => Err(BodyError(
                    "the body is neither a JSON object nor a JSON array".into(),
                )),
            }
        }
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The elements of a JSON array, each as its bytes.
fn split_array(body: &[u8]) -> Result<Vec<&[u8]>, BodyError> {
    let mut records = Vec::new();
    let mut i = skip_ws(body, 1);
    if body.get(i) == Some(&b']') {
        return finish_array(body, i + 1, records);
    }
    loop {
        let start = i;
        let end = value_end(body, start)?;
        records.push(&body[start..end]);
        i = skip_ws(body, end);
        match body.get(i) {
            Some(b',') => i = skip_ws(body, i + 1),
            Some(b']') => return finish_array(body, i + 1, records),
            Some(_) => {
                return Err(BodyError(format!(
                    "expected ',' or ']' after array element {} at byte {i}",
                    records.len() - 1
                )))
            }
            None => return Err(BodyError("the JSON array is not closed".into())),
        }
    }
}

fn finish_array<'a>(
    body: &'a [u8],
    end: usize,
    records: Vec<&'a [u8]>,
) -> Result<Vec<&'a [u8]>, BodyError> {
    if skip_ws(body, end) != body.len() {
        return Err(BodyError(format!(
            "unexpected bytes after the JSON array at byte {end}"
        )));
    }
    Ok(records)
}

/// Where the JSON value starting at `start` ends. Strings and nesting are followed exactly;
/// scalars run to the next delimiter (their content is validated later, record by record).
fn value_end(bytes: &[u8], start: usize) -> Result<usize, BodyError> {
    let unclosed = || BodyError(format!("the JSON value at byte {start} is not closed"));
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(unclosed()),
                        Some(b'\\') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth == 0 {
                    // The end of a scalar element, or a bracket where a value should be.
                    if i == start {
                        return Err(BodyError(format!("a value is missing at byte {i}")));
                    }
                    return Ok(i);
                }
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            b',' | b' ' | b'\t' | b'\r' | b'\n' if depth == 0 => {
                if i == start {
                    return Err(BodyError(format!("a value is missing at byte {i}")));
                }
                return Ok(i);
            }
            _ => {}
        }
        i += 1;
    }
    if depth == 0 && i > start {
        Ok(i)
    } else {
        Err(unclosed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(records: Vec<&[u8]>) -> Vec<String> {
        records
            .into_iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }

    #[test]
    fn bodies_split_into_exact_record_bytes() {
        let one = br#"  {"a":"x}]\"y","b":[1,{"c":2}]}  "#;
        assert_eq!(
            strs(split_records(one, Framing::Json).expect("object")),
            vec![r#"{"a":"x}]\"y","b":[1,{"c":2}]}"#]
        );
        let array = b"[ {\"a\":1} ,{\"b\":\"]\"}, 7 ,\"s\"]";
        assert_eq!(
            strs(split_records(array, Framing::Json).expect("array")),
            vec!["{\"a\":1}", "{\"b\":\"]\"}", "7", "\"s\""]
        );
        assert!(split_records(b"[]", Framing::Json)
            .expect("empty array")
            .is_empty());
        let nd = b"{\"a\":1}\r\n\n  not json \n{\"b\":2}";
        assert_eq!(
            strs(split_records(nd, Framing::Ndjson).expect("ndjson")),
            vec!["{\"a\":1}", "not json", "{\"b\":2}"]
        );
    }

    #[test]
    fn broken_json_bodies_say_where() {
        for (body, expected) in [
            (&b""[..], "the body is empty"),
            (b"{\"a\":1", "not closed"),
            (
                b"[{\"a\":1} {\"b\":2}]",
                "expected ',' or ']' after array element 0",
            ),
            (b"[{\"a\":1},]", "a value is missing"),
            (b"[{\"a\":1}", "not closed"),
            (b"{\"a\":1} x", "unexpected bytes after the JSON object"),
            (b"hello", "neither a JSON object nor a JSON array"),
            (b"[\"abc", "not closed"),
        ] {
            let e = split_records(body, Framing::Json).expect_err("broken");
            assert!(e.0.contains(expected), "{:?}: {}", body, e.0);
        }
    }

    #[test]
    fn content_types_choose_the_framing() {
        assert_eq!(Framing::from_content_type(None), Some(Framing::Json));
        assert_eq!(
            Framing::from_content_type(Some("application/json; charset=utf-8")),
            Some(Framing::Json)
        );
        assert_eq!(
            Framing::from_content_type(Some("Application/X-NDJSON")),
            Some(Framing::Ndjson)
        );
        assert_eq!(Framing::from_content_type(Some("text/plain")), None);
    }
}

//! The request formats hotserve accepts, parsed without any IO: `/predict`, `/predict/batch`
//! and MLflow's scoring protocol for `/invocations` (`dataframe_split`, `dataframe_records`,
//! `instances`, `inputs` with optional `params`, and `text/csv`). Every failure is a message
//! for a 400 response; nothing here can panic on hostile input.

use serde_json::{Map, Value};

/// How the body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentType {
    Json,
    Csv,
}

/// Why a body was rejected, and a message for the client. `http/error.rs` turns the
/// [`Problem`] into a status and an MLflow error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadRequest {
    pub problem: Problem,
    pub message: String,
}

/// The two ways a body can be wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// It does not parse (not JSON, not CSV, not the expected shape).
    Malformed,
    /// It parses, but a value does not fit (a type, a count, a column).
    Invalid,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Problem::Malformed => "malformed",
            Problem::Invalid => "invalid",
        })
    }
}

impl BadRequest {
    pub fn malformed(message: impl Into<String>) -> BadRequest {
        BadRequest {
            problem: Problem::Malformed,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> BadRequest {
        BadRequest {
            problem: Problem::Invalid,
            message: message.into(),
        }
    }
}

fn malformed(message: impl Into<String>) -> BadRequest {
    BadRequest::malformed(message)
}

fn invalid(message: impl Into<String>) -> BadRequest {
    BadRequest::invalid(message)
}

/// A parsed `/invocations` request.
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    pub data: Data,
    /// `params`, passed through (hotserve's models take none; they are accepted and ignored).
    pub params: Option<Value>,
}

/// The payload of an `/invocations` request.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// A data frame: named columns and rows (`dataframe_split`, `dataframe_records`, CSV).
    Frame {
        columns: Vec<String>,
        rows: Vec<Vec<Value>>,
    },
    /// `instances` or `inputs`: a list, or a mapping of input name to values.
    Tensor(Value),
}

/// Parses a `/predict` body: `{"text": "..."}`.
pub fn parse_predict(body: &[u8]) -> Result<String, BadRequest> {
    let value = parse_json(body)?;
    let Value::Object(mut object) = value else {
        return Err(malformed("expected a JSON object like {\"text\": \"...\"}"));
    };
    match object.remove("text") {
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(invalid(format!(
            "'text' must be a string, not {}",
            kind(&other)
        ))),
        None => Err(invalid("missing field 'text'; send {\"text\": \"...\"}")),
    }
}

/// Parses a `/predict/batch` body: `{"texts": ["...", ...]}`.
pub fn parse_batch(body: &[u8]) -> Result<Vec<String>, BadRequest> {
    let value = parse_json(body)?;
    let Value::Object(mut object) = value else {
        return Err(malformed(
            "expected a JSON object like {\"texts\": [\"...\"]}",
        ));
    };
    match object.remove("texts") {
        Some(Value::Array(items)) => strings("texts", items),
        Some(other) => Err(invalid(format!(
            "'texts' must be a list of strings, not {}",
            kind(&other)
        ))),
        None => Err(invalid(
            "missing field 'texts'; send {\"texts\": [\"...\", \"...\"]}",
        )),
    }
}

/// Parses an `/invocations` body.
pub fn parse_invocation(body: &[u8], content_type: ContentType) -> Result<Invocation, BadRequest> {
    match content_type {
        ContentType::Csv => Ok(Invocation {
            data: parse_csv(body)?,
            params: None,
        }),
        ContentType::Json => {
            let Value::Object(mut object) = parse_json(body)? else {
                return Err(malformed(
                    "expected a JSON object with one of dataframe_split, dataframe_records, instances or inputs",
                ));
            };
            let params = object.remove("params");
            let keys = [
                "dataframe_split",
                "dataframe_records",
                "instances",
                "inputs",
            ];
            let present: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|k| object.contains_key(*k))
                .collect();
            if present.len() != 1 || object.len() != 1 {
                let unknown: Vec<&String> = object
                    .keys()
                    .filter(|k| !keys.contains(&k.as_str()))
                    .collect();
                return Err(malformed(if !unknown.is_empty() {
                    format!(
                        "unknown field(s) {unknown:?}; the body must have exactly one of dataframe_split, dataframe_records, instances or inputs (and optionally params)"
                    )
                } else {
                    format!(
                        "the body must have exactly one of dataframe_split, dataframe_records, instances or inputs, found {}",
                        if present.is_empty() { "none".to_string() } else { present.join(", ") }
                    )
                }));
            }
            let key = present[0];
            let value = object.remove(key).unwrap_or(Value::Null);
            let data = match key {
                "dataframe_split" => dataframe_split(value)?,
                "dataframe_records" => dataframe_records(value)?,
                _ => Data::Tensor(value),
            };
            Ok(Invocation { data, params })
        }
    }
}

impl Invocation {
    /// The texts of a text-model request: a `text` column (or the only column) of a data
    /// frame, a list of strings, `{"text": [...]}`, or a list of `{"text": ...}` records.
    pub fn texts(&self) -> Result<Vec<String>, BadRequest> {
        match &self.data {
            Data::Frame { columns, rows } => {
                let index = match columns.iter().position(|c| c == "text") {
                    Some(i) => i,
                    None if columns.len() == 1 => 0,
                    None => {
                        return Err(invalid(format!(
                            "this model takes a 'text' column; the request has columns {columns:?}"
                        )))
                    }
                };
                rows.iter()
                    .enumerate()
                    .map(|(row, values)| match values.get(index) {
                        Some(Value::String(text)) => Ok(text.clone()),
                        Some(other) => Err(invalid(format!(
                            "row {row}, column '{}': expected a string, not {}",
                            columns[index],
                            kind(other)
                        ))),
                        None => Err(invalid(format!("row {row} has no value for column '{}'", columns[index]))),
                    })
                    .collect()
            }
            Data::Tensor(Value::Array(items)) => {
                if items.iter().all(|i| i.is_object()) {
                    items
                        .iter()
                        .enumerate()
                        .map(|(row, item)| match item.get("text") {
                            Some(Value::String(text)) => Ok(text.clone()),
                            _ => Err(invalid(format!("instance {row} has no string field 'text'"))),
                        })
                        .collect()
                } else {
                    strings("inputs", items.clone())
                }
            }
            Data::Tensor(Value::Object(object)) => match object.get("text") {
                Some(Value::Array(items)) => strings("text", items.clone()),
                Some(Value::String(text)) => Ok(vec![text.clone()]),
                _ => Err(invalid(format!(
                    "this model takes text: send a list of strings or {{\"text\": [...]}}; got fields {:?}",
                    object.keys().collect::<Vec<_>>()
                ))),
            },
            Data::Tensor(Value::String(text)) => Ok(vec![text.clone()]),
            Data::Tensor(other) => Err(invalid(format!(
                "this model takes text: send a list of strings, not {}",
                kind(other)
            ))),
        }
    }
}

fn parse_json(body: &[u8]) -> Result<Value, BadRequest> {
    let text = std::str::from_utf8(body)
        .map_err(|err| malformed(format!("the body is not valid UTF-8: {err}")))?;
    if text.trim().is_empty() {
        return Err(malformed("the body is empty; send a JSON object"));
    }
    serde_json::from_str(text)
        .map_err(|err| malformed(format!("the body is not valid JSON: {err}")))
}

fn strings(field: &str, items: Vec<Value>) -> Result<Vec<String>, BadRequest> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(text) => Ok(text),
            other => Err(invalid(format!(
                "{field}[{i}] must be a string, not {}",
                kind(&other)
            ))),
        })
        .collect()
}

fn dataframe_split(value: Value) -> Result<Data, BadRequest> {
    let Value::Object(mut object) = value else {
        return Err(invalid(
            "dataframe_split must be an object with 'columns' and 'data'",
        ));
    };
    let data = match object.remove("data") {
        Some(Value::Array(rows)) => rows,
        Some(other) => {
            return Err(invalid(format!(
                "dataframe_split.data must be a list of rows, not {}",
                kind(&other)
            )))
        }
        None => return Err(invalid("dataframe_split has no 'data'")),
    };
    let columns = match object.remove("columns") {
        Some(Value::Array(columns)) => strings("dataframe_split.columns", columns)?,
        Some(other) => {
            return Err(invalid(format!(
                "dataframe_split.columns must be a list of names, not {}",
                kind(&other)
            )))
        }
        // Without names, pandas numbers the columns 0, 1, ... (as many as the first row has).
        None => {
            let width = match data.first() {
                Some(Value::Array(first)) => first.len(),
                _ => 1,
            };
            (0..width).map(|i| i.to_string()).collect()
        }
    };
    let rows = data
        .into_iter()
        .enumerate()
        .map(|(i, row)| match row {
            Value::Array(values) if values.len() == columns.len() => Ok(values),
            Value::Array(values) => Err(invalid(format!(
                "dataframe_split.data[{i}] has {} values for {} columns",
                values.len(),
                columns.len()
            ))),
            // A single-column frame may list bare values.
            scalar if columns.len() == 1 && !scalar.is_object() => Ok(vec![scalar]),
            other => Err(invalid(format!(
                "dataframe_split.data[{i}] must be a list, not {}",
                kind(&other)
            ))),
        })
        .collect::<Result<_, _>>()?;
    Ok(Data::Frame { columns, rows })
}

fn dataframe_records(value: Value) -> Result<Data, BadRequest> {
    let Value::Array(records) = value else {
        return Err(invalid("dataframe_records must be a list of objects"));
    };
    let mut columns: Vec<String> = Vec::new();
    let mut objects: Vec<Map<String, Value>> = Vec::with_capacity(records.len());
    for (i, record) in records.into_iter().enumerate() {
        let Value::Object(object) = record else {
            return Err(invalid(format!(
                "dataframe_records[{i}] must be an object, not {}",
                kind(&record)
            )));
        };
        for key in object.keys() {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
        objects.push(object);
    }
    let rows = objects
        .into_iter()
        .map(|mut object| {
            columns
                .iter()
                .map(|c| object.remove(c).unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    Ok(Data::Frame { columns, rows })
}

/// CSV with a header row, read by the `csv` crate: RFC 4180 quoting (quoted fields may hold
/// commas, doubled quotes and newlines), a UTF-8 BOM skipped, blank lines skipped, and a line
/// holding `""` a row with an empty text. As in pandas, which MLflow's own server reads CSV
/// with, a quote that does not open a field is an ordinary character: ` "a"` (a space before
/// the quote) is the text ` "a"`. The crate has no strict mode (BurntSushi/rust-csv#77) and
/// would take an unclosed quote as a field running to the end of the body, so one check is
/// ours: a record with an unpaired quote is refused.
fn parse_csv(body: &[u8]) -> Result<Data, BadRequest> {
    std::str::from_utf8(body)
        .map_err(|err| malformed(format!("the CSV body is not valid UTF-8: {err}")))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut records: Vec<Vec<String>> = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut record_start = 0;
    while reader
        .read_record(&mut record)
        .map_err(|err| malformed(format!("CSV: {err}")))?
    {
        let record_end = reader.position().byte() as usize;
        let quotes = body[record_start..record_end]
            .iter()
            .filter(|&&byte| byte == b'"')
            .count();
        if quotes % 2 == 1 {
            let line = record.position().map_or(0, |p| p.line());
            return Err(malformed(format!(
                "CSV line {line}: an unpaired quote; either a quoted field is not closed or there is a quote inside an unquoted field (quote that field and double its quotes: \"say \"\"hi\"\"\")"
            )));
        }
        record_start = record_end;
        records.push(record.iter().map(str::to_string).collect());
    }
    let mut records = records.into_iter();
    let columns = records
        .next()
        .ok_or_else(|| malformed("CSV: the body has no header row"))?;
    let rows = records
        .enumerate()
        .map(|(i, r)| {
            if r.len() == columns.len() {
                Ok(r.into_iter().map(Value::String).collect())
            } else {
                Err(invalid(format!(
                    "CSV row {} has {} fields for {} columns",
                    i + 1,
                    r.len(),
                    columns.len()
                )))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Data::Frame { columns, rows })
}

/// A short name of a JSON value's type for error messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(body: &str, content_type: ContentType) -> Result<Vec<String>, String> {
        parse_invocation(body.as_bytes(), content_type)
            .and_then(|inv| inv.texts())
            .map_err(|e| format!("{}: {}", e.problem, e.message))
    }

    fn check(body: &str, expected: Result<&[&str], &str>) {
        check_as(body, ContentType::Json, expected)
    }

    fn check_as(body: &str, content_type: ContentType, expected: Result<&[&str], &str>) {
        let got = texts(body, content_type);
        match expected {
            Ok(want) => assert_eq!(
                got,
                Ok(want.iter().map(|s| s.to_string()).collect()),
                "{body}"
            ),
            Err(fragment) => {
                let err = got.expect_err(body);
                assert!(
                    err.contains(fragment),
                    "{body}: {err:?} should contain {fragment:?}"
                );
            }
        }
    }

    #[test]
    fn invocation_formats() {
        check(
            r#"{"dataframe_split": {"columns": ["text"], "data": [["a"], ["b"]]}}"#,
            Ok(&["a", "b"]),
        );
        check(
            r#"{"dataframe_split": {"columns": ["id", "text"], "data": [[1, "a"]]}}"#,
            Ok(&["a"]),
        );
        check(
            r#"{"dataframe_split": {"columns": ["review"], "data": [["a"]]}}"#,
            Ok(&["a"]),
        );
        check(
            r#"{"dataframe_split": {"columns": ["text"], "data": ["a", "b"]}}"#,
            Ok(&["a", "b"]),
        );
        check(
            r#"{"dataframe_split": {"index": [0], "columns": ["text"], "data": [["a"]]}}"#,
            Ok(&["a"]),
        );
        check(
            r#"{"dataframe_split": {"data": [["a"], ["b"]]}}"#,
            Ok(&["a", "b"]),
        );
        check(r#"{"dataframe_split": {"data": ["a"]}}"#, Ok(&["a"]));
        check(
            r#"{"dataframe_records": [{"text": "a"}, {"text": "b"}]}"#,
            Ok(&["a", "b"]),
        );
        check(r#"{"instances": ["a", "b"]}"#, Ok(&["a", "b"]));
        check(r#"{"instances": [{"text": "a"}]}"#, Ok(&["a"]));
        check(r#"{"inputs": ["a"], "params": {"top_k": 1}}"#, Ok(&["a"]));
        check(r#"{"inputs": {"text": ["a", "b"]}}"#, Ok(&["a", "b"]));
        check(r#"{"inputs": "a"}"#, Ok(&["a"]));
        check(r#"{"inputs": []}"#, Ok(&[]));
    }

    #[test]
    fn invocation_errors() {
        check("", Err("malformed: the body is empty"));
        check("{", Err("malformed: the body is not valid JSON"));
        check("[1]", Err("malformed: expected a JSON object"));
        check("{}", Err("malformed: the body must have exactly one of"));
        check(
            r#"{"inputs": [], "instances": []}"#,
            Err("found instances, inputs"),
        );
        check(r#"{"input": []}"#, Err("unknown field(s) [\"input\"]"));
        check(
            r#"{"dataframe_split": []}"#,
            Err("invalid: dataframe_split must be an object"),
        );
        check(
            r#"{"dataframe_split": {"columns": ["text"]}}"#,
            Err("has no 'data'"),
        );
        check(
            r#"{"dataframe_split": {"columns": ["a", "b"], "data": [["x"]]}}"#,
            Err("has 1 values for 2 columns"),
        );
        check(
            r#"{"dataframe_split": {"columns": ["a", "b"], "data": [["x", "y"]]}}"#,
            Err("takes a 'text' column"),
        );
        check(
            r#"{"dataframe_split": {"columns": ["text"], "data": [[1]]}}"#,
            Err("expected a string, not a number"),
        );
        check(
            r#"{"dataframe_records": [1]}"#,
            Err("dataframe_records[0] must be an object"),
        );
        check(
            r#"{"dataframe_records": {"text": "a"}}"#,
            Err("must be a list of objects"),
        );
        check(
            r#"{"instances": ["a", 2]}"#,
            Err("inputs[1] must be a string, not a number"),
        );
        check(
            r#"{"instances": [{"txt": "a"}]}"#,
            Err("instance 0 has no string field 'text'"),
        );
        check(r#"{"inputs": 5}"#, Err("not a number"));
        check(r#"{"inputs": {"x": [1]}}"#, Err("got fields [\"x\"]"));
    }

    fn check_csv(body: &str, expected: Result<&[&str], &str>) {
        check_as(body, ContentType::Csv, expected)
    }

    #[test]
    #[rustfmt::skip]
    fn csv() {
        check_csv("text\nhello\nworld\n", Ok(&["hello", "world"]));
        check_csv("id,text\r\n1,\"a, b\"\r\n2,\"say \"\"hi\"\"\"\r\n", Ok(&["a, b", "say \"hi\""]));
        check_csv("text\n\"multi\nline\"", Ok(&["multi\nline"]));
        check_csv("text\na\n\nb\n", Ok(&["a", "b"]));
        // A UTF-8 BOM is not part of the first column's name.
        check_csv("\u{feff}text,id\nhello,1\n", Ok(&["hello"]));
        check_csv("\u{feff}", Err("no header row"));
        // A quoted empty field is a row, not a blank line.
        check_csv("\"text\"\n\"a\"\n\"\"\n\"b\"\n", Ok(&["a", "", "b"]));
        check_csv("text\n\"\"\n", Ok(&[""]));
        // A space before a quote makes the quotes ordinary characters, as in pandas.
        check_csv("text\n \"a\"\n", Ok(&[" \"a\""]));
        check_csv("id,text\n1, \"a, b\"\n", Err("CSV row 1 has 3 fields for 2 columns"));
        check_csv("", Err("no header row"));
        check_csv("\n\n", Err("no header row"));
        check_csv("text\n\"open", Err("malformed: CSV line 2: an unpaired quote; either a quoted field is not closed"));
        check_csv("text\na\n\"open\nb\n", Err("CSV line 3: an unpaired quote"));
        check_csv("a,b\n1\n", Err("invalid: CSV row 1 has 1 fields for 2 columns"));
        check_csv("text\nab\"c\n", Err("a quote inside an unquoted field"));
        check_csv("text\n\"a\"b\"c\n", Err("a quote inside an unquoted field"));
    }

    #[test]
    fn csv_bytes() {
        let err = parse_invocation(b"text\n\xff\n", ContentType::Csv).unwrap_err();
        assert_eq!(err.problem, Problem::Malformed);
        assert!(
            err.message.starts_with("the CSV body is not valid UTF-8"),
            "{err:?}"
        );
    }

    #[test]
    fn predict_bodies() {
        assert_eq!(parse_predict(br#"{"text": "hi"}"#), Ok("hi".to_string()));
        let cases: [(&[u8], &str); 6] = [
            (b"{\"text\": 1}", "'text' must be a string, not a number"),
            (b"{}", "missing field 'text'"),
            (b"\"hi\"", "expected a JSON object"),
            (b"{\"text\": \"\xff\"}", "not valid UTF-8"),
            (b"{\"text\": nul}", "not valid JSON"),
            (b"   ", "the body is empty"),
        ];
        for (body, fragment) in cases {
            let err = parse_predict(body).unwrap_err();
            assert!(
                err.message.contains(fragment),
                "{err:?} should contain {fragment:?}"
            );
        }
    }

    #[test]
    fn batch_bodies() {
        assert_eq!(
            parse_batch(br#"{"texts": ["a", "b"]}"#),
            Ok(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            parse_batch(br#"{"texts": "a"}"#).unwrap_err().problem,
            Problem::Invalid
        );
        assert_eq!(
            parse_batch(br#"{"texts": [null]}"#).unwrap_err().message,
            "texts[0] must be a string, not null"
        );
        assert_eq!(
            parse_batch(br#"{"text": ["a"]}"#).unwrap_err().problem,
            Problem::Invalid
        );
    }
}

//! Request-body decoding: serde errors become the documented parameter error codes, and
//! numbers are accepted as JSON numbers or numeric strings (Tencent's own examples send
//! `"PendingWindowInDays": "7"`).

use crate::error::{Error, Result};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let parsed = serde_json::from_slice(body).map_err(classify)?;
    refuse_nul(body)?;
    Ok(parsed)
}

/// Fields whose text may hold NUL: it is sealed before it is stored, never kept as text.
const NUL_ALLOWED: &[&str] = &["SecretString"];

/// A NUL character (`\u0000`) in a text parameter is refused with InvalidParameterValue.
/// Names, descriptions, aliases and tags are stored as text, and PostgreSQL's text cannot
/// hold NUL: without this, the same request succeeded on SQLite and failed with an internal
/// error on PostgreSQL. Binary data travels as base64 in this API, so no parameter needs NUL
/// (a secret with NUL in it goes as SecretBinary, or as SecretString, which is sealed).
/// The common case (no `\u0000` in the body) costs one scan of the body.
fn refuse_nul(body: &[u8]) -> Result<()> {
    if memchr::memmem::find(body, b"\\u0000").is_none() {
        return Ok(());
    }
    // Rare: find the field, exactly (`\\u0000` is a backslash and "u0000", not NUL).
    let value: serde_json::Value = serde_json::from_slice(body).map_err(classify)?;
    match nul_path(&value, "") {
        Some(path) => Err(Error::InvalidValue(format!(
            "{path} contains a NUL character (\\u0000), which no text parameter may hold"
        ))),
        None => Ok(()),
    }
}

/// The path of the first string (or object key) holding NUL, outside `NUL_ALLOWED` fields.
fn nul_path(v: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0').then(|| path.to_string()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item, &format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(k, item)| {
            let here = match path {
                "" => k.clone(),
                _ => format!("{path}.{k}"),
            };
            if k.contains('\0') {
                return Some(here);
            }
            match NUL_ALLOWED.contains(&k.as_str()) {
                true => None,
                false => nul_path(item, &here),
            }
        }),
        _ => None,
    }
}

fn classify(e: serde_json::Error) -> Error {
    let msg = e.to_string();
    if e.is_syntax() || e.is_eof() {
        Error::InvalidParameter(format!("the request body is not valid JSON: {msg}"))
    } else if msg.starts_with("missing field") {
        Error::MissingParameter(msg)
    } else if msg.starts_with("unknown field") {
        Error::UnknownParameter(msg)
    } else {
        Error::InvalidParameter(msg)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrString {
    Num(serde_json::Number),
    Str(String),
}

/// Optional unsigned integer given as a JSON number or a decimal string.
pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    use serde::de::Error as _;
    let v: Option<NumOrString> = Option::deserialize(d)?;
    match v {
        None => Ok(None),
        Some(NumOrString::Num(n)) => n.as_u64().map(Some).ok_or_else(|| {
            D::Error::custom(format!(
                "invalid type: expected an unsigned integer, got {n}"
            ))
        }),
        Some(NumOrString::Str(s)) => s.trim().parse::<u64>().map(Some).map_err(|_| {
            D::Error::custom(format!(
                "invalid type: expected an unsigned integer, got \"{s}\""
            ))
        }),
    }
}

/// Decodes standard base64 (padding optional), mapping failure to `err`.
pub fn base64_decode(s: &str, err: impl FnOnce(String) -> Error) -> Result<Vec<u8>> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(s.trim())
        .map_err(|e| err(format!("not valid base64: {e}")))
}

pub fn base64_encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Checks `Offset`/`Limit` paging: Limit defaults to 10 and may not exceed 200.
pub fn page(offset: Option<u64>, limit: Option<u64>) -> Result<(u64, u64)> {
    let limit = limit.unwrap_or(10);
    if limit > 200 {
        return Err(Error::InvalidValue("Limit must be at most 200".into()));
    }
    Ok((offset.unwrap_or(0), if limit == 0 { 10 } else { limit }))
}

/// Required string fields: absent or empty both count as missing.
pub fn required<'a>(name: &str, v: &'a str) -> Result<&'a str> {
    if v.is_empty() {
        return Err(Error::MissingParameter(format!("{name} must not be empty")));
    }
    Ok(v)
}

/// `OrderType`: 0 (default) newest first, 1 oldest first.
pub fn newest_first(order_type: Option<u64>) -> Result<bool> {
    match order_type.unwrap_or(0) {
        0 => Ok(true),
        1 => Ok(false),
        o => Err(Error::InvalidValue(format!(
            "OrderType must be 0 or 1, not {o}"
        ))),
    }
}

/// `Role`: 0 (default) resources users created, 1 resources the service created.
pub fn user_created(role: Option<u64>) -> Result<bool> {
    match role.unwrap_or(0) {
        0 => Ok(true),
        1 => Ok(false),
        r => Err(Error::InvalidValue(format!("Role must be 0 or 1, not {r}"))),
    }
}

/// One `TagFilters` entry as the API spells it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct TagFilterParam {
    tag_key: String,
    #[serde(default)]
    tag_value: Option<Vec<String>>,
}

pub fn tag_filters(params: Option<Vec<TagFilterParam>>) -> Vec<crate::store::TagFilter> {
    params
        .unwrap_or_default()
        .into_iter()
        .map(|t| crate::store::TagFilter {
            key: t.tag_key,
            values: t.tag_value.unwrap_or_default(),
        })
        .collect()
}

/// The fields of a typed response. Fields carrying plaintext or key material are
/// `Zeroizing` in the struct (wiped when it drops); their serialized copies are wiped by
/// `envelope::success`.
pub fn typed<T: serde::Serialize>(v: T) -> crate::error::Result<super::Fields> {
    match serde_json::to_value(v) {
        Ok(v) => out(v),
        Err(e) => Err(crate::error::Error::Internal(e.to_string())),
    }
}

/// The fields of a response built as a JSON object.
pub fn out(v: serde_json::Value) -> crate::error::Result<super::Fields> {
    match v {
        serde_json::Value::Object(m) => Ok(m),
        _ => Err(crate::error::Error::Internal(
            "response is not an object".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields, rename_all = "PascalCase")]
    struct R {
        #[allow(dead_code)]
        key_id: String,
        #[serde(default, deserialize_with = "opt_u64")]
        number_of_bytes: Option<u64>,
    }

    #[test]
    fn codes_for_bad_bodies() {
        assert!(matches!(parse::<R>(b"{"), Err(Error::InvalidParameter(_))));
        assert!(matches!(parse::<R>(b"[]"), Err(Error::InvalidParameter(_))));
        assert!(matches!(parse::<R>(b"{}"), Err(Error::MissingParameter(_))));
        assert!(matches!(
            parse::<R>(b"{\"KeyId\":1}"),
            Err(Error::InvalidParameter(_))
        ));
        assert!(matches!(
            parse::<R>(b"{\"KeyId\":\"a\",\"Bogus\":1}"),
            Err(Error::UnknownParameter(_))
        ));
        assert!(matches!(
            parse::<R>(b"{\"KeyId\":\"a\",\"NumberOfBytes\":-1}"),
            Err(Error::InvalidParameter(_))
        ));
    }

    #[test]
    fn numbers_as_strings() {
        let r: R = parse(b"{\"KeyId\":\"a\",\"NumberOfBytes\":\"16\"}").unwrap();
        assert_eq!(r.number_of_bytes, Some(16));
        let r: R = parse(b"{\"KeyId\":\"a\",\"NumberOfBytes\":16}").unwrap();
        assert_eq!(r.number_of_bytes, Some(16));
    }

    #[test]
    fn nul_in_a_text_parameter_is_refused_and_named() {
        #[derive(Deserialize)]
        struct Any {}
        let refused = |body: &str| match parse::<Any>(body.as_bytes()) {
            Err(Error::InvalidValue(m)) => m,
            other => panic!("{body}: {:?}", other.map(|_| ())),
        };
        assert!(refused(r#"{"Description": "a\u0000b"}"#).starts_with("Description "));
        assert!(refused(r#"{"Tags": [{"TagKey": "k\u0000"}]}"#).starts_with("Tags[0].TagKey "));
        assert!(refused(r#"{"K\u0000": 1}"#).starts_with("K\u{0} "));
        // Sealed before it is stored; an escaped backslash followed by "u0000" is not NUL.
        assert!(parse::<Any>(br#"{"SecretString": "a\u0000b"}"#).is_ok());
        assert!(parse::<Any>(br#"{"Description": "a\\u0000b"}"#).is_ok());
    }
}

//! EncryptionContext: a JSON object in a string, bound to ciphertexts as associated data in a
//! canonical form (keys sorted, no whitespace), so `{"a": "1"}` from Python and `{"a":"1"}`
//! from Go are the same context and any other context fails to decrypt.

use crate::error::{Error, Result};

pub const MAX_CONTEXT_CHARS: usize = 1024;

/// Returns the canonical bytes of a context; `None`, `""` and `{}` are all "no context".
pub fn canonical(context: Option<&str>) -> Result<Vec<u8>> {
    let Some(text) = context.filter(|c| !c.is_empty()) else {
        return Ok(Vec::new());
    };
    if text.chars().count() > MAX_CONTEXT_CHARS {
        return Err(Error::InvalidValue(format!(
            "EncryptionContext must be at most {MAX_CONTEXT_CHARS} characters"
        )));
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| {
        Error::InvalidValue("EncryptionContext must be a JSON object in a string".into())
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err(Error::InvalidValue(
            "EncryptionContext must be a JSON object in a string".into(),
        ));
    };
    if map.is_empty() {
        return Ok(Vec::new());
    }
    // serde_json's Map is a BTreeMap (no `preserve_order`), so this prints keys sorted.
    serde_json::to_vec(&map).map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn spacing_and_order_do_not_matter() {
        let a = canonical(Some(r#"{"b": "2", "a": "1"}"#)).unwrap();
        let b = canonical(Some(r#"{"a":"1","b":"2"}"#)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, br#"{"a":"1","b":"2"}"#);
        assert_ne!(a, canonical(Some(r#"{"a":"1","b":"3"}"#)).unwrap());
    }

    #[test]
    fn empty_forms_are_no_context() {
        for c in [None, Some(""), Some("{}"), Some(" { } ")] {
            assert!(canonical(c).unwrap().is_empty());
        }
    }

    #[test]
    fn non_objects_are_rejected() {
        for c in ["[1]", "\"s\"", "3", "{bad", "null"] {
            assert!(canonical(Some(c)).is_err(), "{c}");
        }
        assert!(canonical(Some(&format!("{{\"a\":\"{}\"}}", "x".repeat(1100)))).is_err());
    }
}

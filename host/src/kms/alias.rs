//! CMK alias rules: 1–60 of `[A-Za-z0-9_-]`, starting with a letter or digit, and not starting
//! with `KMS-` in any letter case (reserved for keys that cloud products create).

use crate::error::{Error, Result};

pub const MAX_ALIAS_LEN: usize = 60;

pub fn validate(alias: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::InvalidAlias(format!(
            "invalid Alias `{alias}`: {why}"
        )))
    };
    if alias.is_empty() || alias.len() > MAX_ALIAS_LEN {
        return bad("must be 1 to 60 characters");
    }
    if !alias
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return bad("only letters, digits, `_` and `-` are allowed");
    }
    if !alias.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    if alias.len() >= 4 && alias[..4].eq_ignore_ascii_case("kms-") {
        return bad("the `KMS-` prefix is reserved");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_valid() {
        for a in ["a", "A1", "my-key_2", "kms", "kmsx-1", "9", &"x".repeat(60)] {
            validate(a).unwrap_or_else(|e| panic!("{a}: {e}"));
        }
    }

    #[test]
    fn rejects_invalid() {
        for a in [
            "",
            &"x".repeat(61),
            "-lead",
            "_lead",
            "has space",
            "dot.ted",
            "kms-foo",
            "KMS-foo",
            "Kms-foo",
            "kMs-",
            "ключ",
            "a/b",
        ] {
            assert!(validate(a).is_err(), "{a} should be rejected");
        }
    }
}

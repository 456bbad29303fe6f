//! Form fields of a console POST (`application/x-www-form-urlencoded`). Values may be
//! plaintexts or secret values, so they are wiped when the form is dropped.

use zeroize::Zeroize;

pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Self {
        Form(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Form(pairs)
    }

    /// The first value of `name`, or "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Every value of `name` in order (checkbox lists, editor rows).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl Drop for Form {
    fn drop(&mut self) {
        for (k, v) in &mut self.0 {
            k.zeroize();
            v.zeroize();
        }
    }
}

/// The query string of a GET (list filters, paging), read like a form.
pub struct Params(Form);

impl Params {
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Params(Form::parse(
            parts.uri.query().unwrap_or("").as_bytes(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_fields_and_escapes() {
        let f = Form::parse(b"key=a&key=b&alias=%3Cscript%3E+x&empty=");
        assert_eq!(f.all("key"), ["a", "b"]);
        assert_eq!(f.get("alias"), "<script> x");
        assert_eq!(f.get("empty"), "");
        assert_eq!(f.get("missing"), "");
    }
}

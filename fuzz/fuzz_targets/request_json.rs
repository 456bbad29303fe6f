//! Request bodies as the daemon decodes them. The per-action parameter structs are private to
//! their handlers, so this drives the public layer they are all built on: `api::params::parse`
//! (the body decoder and its error classification), into a free-form value and into a struct
//! shaped like the real ones (`deny_unknown_fields`, PascalCase, `opt_u64` numbers,
//! `TagFilters`), then the checks handlers run on the fields: base64, paging, order and role
//! flags, tag filters, the EncryptionContext canonical form, alias, data key name and id
//! rules, the action table lookup and the error envelope every refusal ends in.
#![no_main]

use keyward::api::{actions, envelope, params};
use keyward::kms::{alias, context, data_keys};
use keyward::Error;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
#[allow(dead_code)]
struct Body {
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    plaintext: Option<String>,
    #[serde(default)]
    ciphertext_blob: Option<String>,
    #[serde(default)]
    encryption_context: Option<String>,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    data_key_name: Option<String>,
    #[serde(default)]
    data_key_id: Option<String>,
    #[serde(default, deserialize_with = "params::opt_u64")]
    offset: Option<u64>,
    #[serde(default, deserialize_with = "params::opt_u64")]
    limit: Option<u64>,
    #[serde(default, deserialize_with = "params::opt_u64")]
    order_type: Option<u64>,
    #[serde(default, deserialize_with = "params::opt_u64")]
    role: Option<u64>,
    #[serde(default, deserialize_with = "params::opt_u64")]
    pending_window_in_days: Option<u64>,
    #[serde(default)]
    tag_filters: Option<Vec<params::TagFilterParam>>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

/// What the front does with a refusal: its code and message go into the response envelope.
fn refuse(e: &Error) {
    let _ = envelope::error_code(e);
    let _ = envelope::error_message(e);
    let _ = envelope::failure(e, "fuzz-request-id");
}

fn has_float(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(a) => a.iter().any(has_float),
        serde_json::Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}

fn check<T>(r: keyward::Result<T>) -> Option<T> {
    r.map_err(|e| refuse(&e)).ok()
}

fuzz_target!(|data: &[u8]| {
    // Free-form, as serde_json sees any body, and through the daemon's own decoder.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = serde_json::to_vec(&v);
    }
    if let Some(v) = check(params::parse::<serde_json::Value>(data)) {
        if let Some(fields) = v.as_object() {
            let _ = envelope::success(fields.clone(), "fuzz-request-id");
        }
    }

    // The EncryptionContext decoder on the input as a string; its canonical form is a fixed
    // point (canonicalising it again changes nothing) when it is within the length limit and
    // holds no floating-point number: serde_json's default float parsing is not correctly
    // rounded, so `{"":7e+23}` canonicalises to `{"":6.999999999999999e+23}`
    // (fuzz/crashes/request_json/, docs/fuzzing.md).
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(canon) = check(context::canonical(Some(text))).filter(|c| !c.is_empty()) {
            let canon_text = std::str::from_utf8(&canon).expect("canonical context is UTF-8");
            let value: serde_json::Value =
                serde_json::from_str(canon_text).expect("canonical context is JSON");
            if canon_text.chars().count() <= context::MAX_CONTEXT_CHARS && !has_float(&value) {
                let again = context::canonical(Some(canon_text)).expect("canonical form parses");
                assert_eq!(again, canon, "canonical form is not a fixed point");
            }
        }
        let _ = alias::validate(text);
        let _ = data_keys::check_name(text);
        let _ = data_keys::check_id(text);
        let _ = params::base64_decode(text, Error::InvalidValue);
    }

    // A typed body and the checks handlers make on its fields.
    let Some(body) = check(params::parse::<Body>(data)) else {
        return;
    };
    for b64 in [&body.plaintext, &body.ciphertext_blob]
        .into_iter()
        .flatten()
    {
        if let Some(bytes) = check(params::base64_decode(b64, Error::InvalidValue)) {
            let _ = keyward_shared::blob::Blob::parse(&bytes);
            assert_eq!(
                params::base64_decode(&params::base64_encode(&bytes), Error::InvalidValue).ok(),
                Some(bytes)
            );
        }
    }
    if let Some(c) = check(context::canonical(body.encryption_context.as_deref())) {
        let _ = c;
    }
    if let Some(a) = &body.alias {
        check(alias::validate(a));
    }
    if let Some(n) = &body.data_key_name {
        check(data_keys::check_name(n));
    }
    if let Some(i) = &body.data_key_id {
        check(data_keys::check_id(i));
    }
    if let Some(k) = &body.key_id {
        check(params::required("KeyId", k));
    }
    if let Some((offset, limit)) = check(params::page(body.offset, body.limit)) {
        assert!((1..=200).contains(&limit));
        assert_eq!(offset, body.offset.unwrap_or(0));
    }
    check(params::newest_first(body.order_type));
    check(params::user_created(body.role));
    let _ = body.pending_window_in_days;
    let filters = params::tag_filters(body.tag_filters);
    let _ = filters.len();
    let product = body
        .version
        .as_deref()
        .and_then(actions::Product::from_version);
    if let (Some(product), Some(action)) = (product, &body.action) {
        if let Some(row) = actions::find(product, action) {
            let _ = row.cam_name();
        }
    }
});

//! The Tencent Cloud API 3.0 response envelope, and the one place where errors become codes.

use crate::error::Error;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// Maps every error to its Tencent error code.
pub fn error_code(e: &Error) -> &'static str {
    match e {
        Error::InvalidAuthorization(_) => "AuthFailure.InvalidAuthorization",
        Error::SecretIdNotFound => "AuthFailure.SecretIdNotFound",
        Error::SignatureExpire => "AuthFailure.SignatureExpire",
        Error::SignatureFailure(_) => "AuthFailure.SignatureFailure",
        Error::UnsupportedRegion(_) => "UnsupportedRegion",
        Error::NoSuchVersion(_) => "NoSuchVersion",
        Error::InvalidAction(_) => "InvalidAction",
        Error::UnsupportedProtocol(_) => "UnsupportedProtocol",
        Error::RequestTooLarge(_) => "RequestSizeLimitExceeded",
        Error::MissingParameter(_) => "MissingParameter",
        Error::InvalidParameter(_) => "InvalidParameter",
        Error::UnknownParameter(_) => "UnknownParameter",
        Error::InvalidValue(_) => "InvalidParameterValue",
        Error::InvalidAlias(_) => "InvalidParameterValue.InvalidAlias",
        Error::AliasExists(_) => "InvalidParameterValue.AliasAlreadyExists",
        Error::InvalidKeyId(_) => "InvalidParameterValue.InvalidKeyId",
        Error::InvalidKeyUsage(_) => "InvalidParameterValue.InvalidKeyUsage",
        Error::InvalidType(_) => "InvalidParameterValue.InvalidType",
        Error::InvalidPlaintext(_) => "InvalidParameterValue.InvalidPlaintext",
        Error::InvalidCiphertext(_) => "InvalidParameterValue.InvalidCiphertext",
        Error::DuplicatedKeyId(_) => "InvalidParameterValue.DuplicatedKeyId",
        Error::TagKeysDuplicated(_) => "InvalidParameterValue.TagKeysDuplicated",
        Error::UnsupportedKeyUsage(_) => "UnsupportedOperation.UnsupportedKeyUsageInCurrentRegion",
        Error::Unsupported(_) => "UnsupportedOperation",
        Error::CmkNotFound(_) => "ResourceUnavailable.CmkNotFound",
        Error::CmkDisabled(_) => "ResourceUnavailable.CmkDisabled",
        Error::CmkArchived(_) => "ResourceUnavailable.CmkArchived",
        Error::KeyPendingDelete(_) => "ResourceUnavailable.KeyPendingDelete",
        Error::CmkStateNotSupport(_) => "ResourceUnavailable.CmkStateNotSupport",
        Error::CmkShouldBeDisabled(_) => "ResourceUnavailable.CmkShouldBeDisabled",
        Error::CmkNotPendingDelete(_) => "ResourceUnavailable.CmkNotPendingDelete",
        Error::NotUserCreatedCmk(_) => "UnsupportedOperation.NotUserCreatedCmk",
        Error::CmkUsedByCloudProduct(_) => "FailedOperation.CmkUsedByCloudProduct",
        Error::ExternalCmkCanNotRotate(_) => "UnsupportedOperation.ExternalCmkCanNotRotate",
        Error::RotateRateLimited(_) => "RequestLimitExceeded.RotateRateLimited",
        Error::RotateNotSupported(_) => "UnsupportedOperation.RotateNotSupported",
        Error::NotExternalCmk(_) => "UnsupportedOperation.NotExternalCmk",
        Error::TokenExpired => "ResourceUnavailable.TokenExpired",
        Error::MaterialNotMatch(_) => "InvalidParameterValue.MaterialNotMatch",
        Error::DecryptMaterial(_) => "InvalidParameter.DecryptMaterialError",
        Error::InvalidPendingWindow(_) => "InvalidParameter.InvalidPendingWindowInDays",
        Error::ResourceBindingNotFound(_) => "ResourceUnavailable.CloudResourceBindingNotFound",
        Error::DataKeyNotFound(_) => "ResourceUnavailable.DataKeyNotFound",
        Error::DataKeyDisabled(_) => "ResourceUnavailable.DataKeyDisabled",
        Error::DataKeyPendingDelete(_) => "ResourceUnavailable.DataKeyPendingDelete",
        Error::DataKeyNotPendingDelete(_) => "ResourceUnavailable.DataKeyNotPendingDelete",
        Error::DataKeyNameExists(_) => "InvalidParameterValue.DataKeyNameAlreadyExists",
        Error::InvalidDataKeyName(_) => "InvalidParameterValue.InvalidDataKeyName",
        Error::InvalidDataKeyId(_) => "InvalidParameterValue.InvalidDataKeyId",
        Error::DuplicatedDataKeyId(_) => "InvalidParameterValue.DuplicatedDataKeyId",
        Error::InvalidImportKeyMaterial(_) => "InvalidParameterValue.InvalidImportKeyMaterial",
        Error::DataKeyLimitExceeded(_) => "LimitExceeded.DataKeyLimitExceeded",
        Error::SecretNotFound(_) => "ResourceNotFound.SecretNotExist",
        Error::SecretExists(_) => "ResourceInUse.SecretExists",
        Error::SecretVersionNotFound(_) => "ResourceNotFound",
        Error::VersionIdExists(_) => "ResourceInUse.VersionIdExists",
        Error::SecretVersionLimit(_) | Error::SecretLimitExceeded(_) => "LimitExceeded",
        Error::SecretDisabled(_) => "ResourceUnavailable.ResourceDisabled",
        Error::SecretPendingDelete(_) => "ResourceUnavailable.ResourcePendingDeleted",
        Error::OperationDenied(_) => "OperationDenied",
        Error::AccessKms(_) => "FailedOperation.AccessKmsError",
        Error::TargetFailed(_) => "FailedOperation",
        Error::RotationBusy(_) => "FailedOperation.RotationForbidden",
        Error::FlowNotFound(_) => "ResourceNotFound",
        Error::DecryptFailed | Error::ValueTampered => "FailedOperation.DecryptError",
        Error::CmkLimitExceeded(_) => "LimitExceeded.CmkLimitExceeded",
        Error::Unauthorized(_) => "AuthFailure.UnauthorizedOperation",
        Error::RequestLimitExceeded(_) => "RequestLimitExceeded",
        Error::IamConflict(_) => "ResourceInUse",
        Error::UserNotFound(_) => "ResourceNotFound.UserNotExist",
        Error::GroupNotFound(_) => "ResourceNotFound.GroupNotExist",
        Error::PolicyNotFound(_) => "ResourceNotFound.PolicyIdNotFound",
        Error::AccessKeyNotFound(_) => "ResourceNotFound.SecretNotExist",
        Error::InvalidPolicyDocument(_) => "InvalidParameter.PolicyDocumentError",
        Error::OperationNotPermitted(_) => "OperationDenied",
        Error::AuditTimeMissing => "InvalidParameter.Time",
        Error::AuditTimeOrder => "InvalidParameterValue.Time",
        Error::AuditMaxResults => "InvalidParameterValue.MaxResult",
        Error::AuditAttributeKey(_) => "InvalidParameterValue.attributeKey",
        Error::AuditOverTime => "LimitExceeded.OverTime",
        Error::Hsm(_)
        | Error::IntegrityFailure(_)
        | Error::Store(_)
        | Error::StoreBusy(_)
        | Error::Io(_)
        | Error::Config(_)
        | Error::Internal(_)
        | Error::LeaseLost(_)
        | Error::Cli(_) => "InternalError",
    }
}

/// The message clients see. Internal details stay in the log, keyed by RequestId.
pub fn error_message(e: &Error) -> String {
    match error_code(e) {
        "InternalError" => {
            "an internal error occurred; see the server log for this RequestId".into()
        }
        _ => e.to_string(),
    }
}

/// HTTP 200 with exactly `Content-Type: application/json`: the Python SDK compares the header
/// string for equality and skips error detection on anything else.
///
/// Response bodies carry plaintexts, data keys and secret values, so the serialized bytes are
/// wiped when hyper drops the last reference to them (a `Bytes` owned by a `Zeroizing`
/// buffer), and the JSON strings they were built from are wiped right after serialization.
fn json_200(mut v: Value) -> Response {
    let body = zeroize::Zeroizing::new(serde_json::to_vec(&v).unwrap_or_else(|_| b"{}".to_vec()));
    wipe(&mut v);
    let mut resp = (StatusCode::OK, axum::body::Bytes::from_owner(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Overwrites every string in a JSON value before it is freed.
fn wipe(v: &mut Value) {
    use zeroize::Zeroize;
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe),
        Value::Object(map) => map.values_mut().for_each(wipe),
        _ => {}
    }
}

pub fn success(mut fields: Map<String, Value>, request_id: &str) -> Response {
    fields.insert("RequestId".into(), Value::String(request_id.to_string()));
    json_200(json!({ "Response": fields }))
}

pub fn failure(e: &Error, request_id: &str) -> Response {
    json_200(json!({
        "Response": {
            "Error": { "Code": error_code(e), "Message": error_message(e) },
            "RequestId": request_id,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Services keep infrastructure failures internal with `Error::is_internal`; it must
    /// agree with the one code table.
    #[test]
    fn is_internal_agrees_with_the_code_table() {
        let samples = [
            Error::Hsm("x".into()),
            Error::Store("x".into()),
            Error::StoreBusy("x".into()),
            Error::Io(std::io::Error::other("x")),
            Error::Config("x".into()),
            Error::Internal("x".into()),
            Error::Cli("x".into()),
            Error::DecryptFailed,
            Error::ValueTampered,
            Error::CmkNotFound("k".into()),
            Error::AccessKms("x".into()),
            Error::Unsupported("x".into()),
        ];
        for e in samples {
            assert_eq!(e.is_internal(), error_code(&e) == "InternalError", "{e:?}");
        }
    }

    #[test]
    fn every_string_of_a_response_is_wiped_and_the_body_still_serialises() {
        let mut v =
            json!({"Response": {"Plaintext": "c2VjcmV0", "List": [{"Value": "x"}], "N": 3}});
        let body = serde_json::to_vec(&v).unwrap();
        wipe(&mut v);
        assert_eq!(
            v,
            json!({"Response": {"Plaintext": "", "List": [{"Value": ""}], "N": 3}})
        );
        let resp = success(
            json!({"Plaintext": "c2VjcmV0"})
                .as_object()
                .cloned()
                .unwrap(),
            "rid",
        );
        assert_eq!(
            resp.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        assert!(!body.is_empty());
    }
}

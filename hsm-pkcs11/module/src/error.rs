//! The crate's one error type. Every failure inside the module ends up here and is mapped to
//! a `CKR_*` code at the FFI edge (`Error::rv`); nothing else crosses into the application.

use cryptoki_sys::*;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A PKCS#11 condition decided locally (bad handle, wrong argument, buffer too small...).
    #[error("PKCS#11 return value {0:#x}")]
    Ck(CK_RV),
    /// The daemon answered with a Tencent Cloud error envelope.
    #[error("Keyward answered {action}: {code}: {message}")]
    Api {
        action: String,
        code: String,
        message: String,
    },
    /// The daemon could not be reached or answered something that is not the API.
    #[error("talking to Keyward: {0}")]
    Transport(String),
    /// The module's configuration file is missing or wrong.
    #[error("configuration: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The PKCS#11 return value the application sees.
    pub fn rv(&self) -> CK_RV {
        match self {
            Error::Ck(rv) => *rv,
            Error::Api { code, .. } => api_rv(code),
            // The "device" is the daemon: unreachable or broken is a device error.
            Error::Transport(_) => CKR_DEVICE_ERROR,
            Error::Config(_) => CKR_GENERAL_ERROR,
        }
    }
}

/// Tencent error codes to the closest PKCS#11 meaning. Codes are matched by prefix because
/// the API refines them (`ResourceUnavailable.CmkNotFound`, `...CmkDisabled`, ...).
fn api_rv(code: &str) -> CK_RV {
    if code == "ResourceUnavailable.CmkNotFound" {
        // The key went away between listing and use.
        CKR_KEY_HANDLE_INVALID
    } else if code.starts_with("ResourceUnavailable") || code.starts_with("UnsupportedOperation") {
        // Disabled, pending deletion, wrong usage for the operation.
        CKR_KEY_FUNCTION_NOT_PERMITTED
    } else if code == "AuthFailure.UnauthorizedOperation"
        || code.starts_with("UnauthorizedOperation")
        || code == "OperationDenied"
    {
        // A CAM policy of the configured API key denies the action (checked before the other
        // AuthFailure codes, which are about the credentials themselves).
        CKR_FUNCTION_REJECTED
    } else if code.starts_with("InvalidParameter") || code.starts_with("MissingParameter") {
        CKR_ARGUMENTS_BAD
    } else if code.starts_with("LimitExceeded") || code.starts_with("RequestLimitExceeded") {
        CKR_DEVICE_MEMORY
    } else {
        // AuthFailure (wrong SecretId/SecretKey, clock skew), InternalError, FailedOperation.
        CKR_DEVICE_ERROR
    }
}

impl From<CK_RV> for Error {
    fn from(rv: CK_RV) -> Self {
        Error::Ck(rv)
    }
}

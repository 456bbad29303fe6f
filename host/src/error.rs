//! The host crate's one error type. Each variant maps to exactly one Tencent Cloud API error code
//! in `api::envelope`; nothing else in the crate picks codes. It names no backend crate: each
//! adapter (the SQLite store, the PKCS#11 and firmware HSM backends) converts its own errors
//! into these once, where it calls the backend.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- request / protocol ---
    #[error("{0}")]
    InvalidAuthorization(String),
    #[error("the SecretId is unknown or disabled")]
    SecretIdNotFound,
    #[error("the request timestamp is more than 5 minutes from the server time")]
    SignatureExpire,
    #[error("{0}")]
    SignatureFailure(String),
    #[error("region `{0}` is not served here")]
    UnsupportedRegion(String),
    #[error("API version `{0}` does not exist")]
    NoSuchVersion(String),
    #[error("action `{0}` does not exist")]
    InvalidAction(String),
    #[error("{0}")]
    UnsupportedProtocol(String),
    #[error("request body exceeds the limit of {0} bytes")]
    RequestTooLarge(usize),
    #[error("{0}")]
    MissingParameter(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    UnknownParameter(String),
    #[error("{0}")]
    InvalidValue(String),

    // --- KMS parameter values ---
    #[error("{0}")]
    InvalidAlias(String),
    #[error("alias `{0}` already exists in this region")]
    AliasExists(String),
    #[error("{0}")]
    InvalidKeyId(String),
    #[error("{0}")]
    InvalidKeyUsage(String),
    #[error("{0}")]
    InvalidType(String),
    #[error("{0}")]
    InvalidPlaintext(String),
    #[error("{0}")]
    InvalidCiphertext(String),
    #[error("KeyId `{0}` appears more than once")]
    DuplicatedKeyId(String),
    #[error("tag key `{0}` appears more than once")]
    TagKeysDuplicated(String),
    #[error("{0}")]
    UnsupportedKeyUsage(String),
    #[error("{0}")]
    Unsupported(String),

    // --- KMS resource state ---
    #[error("CMK `{0}` does not exist")]
    CmkNotFound(String),
    #[error("CMK `{0}` is disabled")]
    CmkDisabled(String),
    #[error("CMK `{0}` is archived")]
    CmkArchived(String),
    #[error("CMK `{0}` is pending deletion")]
    KeyPendingDelete(String),
    #[error("{0}")]
    CmkStateNotSupport(String),
    #[error("CMK `{0}` must be disabled before it can be scheduled for deletion")]
    CmkShouldBeDisabled(String),
    #[error("CMK `{0}` is not pending deletion")]
    CmkNotPendingDelete(String),
    #[error("{0}")]
    NotUserCreatedCmk(String),
    #[error("CMK `{0}` is bound to cloud resources; unbind them first")]
    CmkUsedByCloudProduct(String),
    #[error("{0}")]
    ExternalCmkCanNotRotate(String),
    #[error("{0}")]
    RotateRateLimited(String),
    #[error("{0}")]
    RotateNotSupported(String),
    #[error("CMK `{0}` does not hold imported material (create it with Type 2)")]
    NotExternalCmk(String),
    #[error("the import token has expired or does not exist; call GetParametersForImport again")]
    TokenExpired,
    #[error("the material differs from the material imported before into CMK `{0}`")]
    MaterialNotMatch(String),
    #[error("{0}")]
    DecryptMaterial(String),
    #[error("{0}")]
    InvalidPendingWindow(String),
    #[error("{0}")]
    ResourceBindingNotFound(String),
    #[error("data key `{0}` does not exist")]
    DataKeyNotFound(String),
    #[error("data key `{0}` is disabled")]
    DataKeyDisabled(String),
    #[error("data key `{0}` is pending deletion")]
    DataKeyPendingDelete(String),
    #[error("data key `{0}` is not pending deletion")]
    DataKeyNotPendingDelete(String),
    #[error("data key name `{0}` already exists in this region")]
    DataKeyNameExists(String),
    #[error("{0}")]
    InvalidDataKeyName(String),
    #[error("{0}")]
    InvalidDataKeyId(String),
    #[error("DataKeyId `{0}` appears more than once")]
    DuplicatedDataKeyId(String),
    #[error("{0}")]
    InvalidImportKeyMaterial(String),
    #[error("the hosted data key quota of {0} is reached")]
    DataKeyLimitExceeded(u64),
    #[error("decryption failed: the ciphertext or the encryption context does not match")]
    DecryptFailed,
    /// An envelope's value failed authentication under its data key (moved or altered).
    #[error("the stored value failed authentication")]
    ValueTampered,
    /// A stored row's integrity tag does not match it: it was written outside Keyward.
    #[error("{0} failed its integrity check (changed outside Keyward)")]
    IntegrityFailure(String),
    #[error("the CMK quota of {0} is reached")]
    CmkLimitExceeded(u64),

    // --- Secrets Manager ---
    #[error("secret `{0}` does not exist")]
    SecretNotFound(String),
    #[error("secret `{0}` already exists in this region")]
    SecretExists(String),
    #[error("version `{0}` does not exist")]
    SecretVersionNotFound(String),
    #[error("version `{0}` already exists")]
    VersionIdExists(String),
    #[error("a secret holds at most {0} versions")]
    SecretVersionLimit(u64),
    #[error("the secret quota of {0} is reached")]
    SecretLimitExceeded(u64),
    #[error("secret `{0}` is disabled")]
    SecretDisabled(String),
    #[error("secret `{0}` is pending deletion")]
    SecretPendingDelete(String),
    #[error("{0}")]
    OperationDenied(String),
    /// A database a product secret rotates on failed or refused (down, wrong admin login,
    /// grant refused). The message names the database and the step, never a password.
    #[error("{0}")]
    TargetFailed(String),
    /// Another rotation of the same product secret is under way.
    #[error("{0}")]
    RotationBusy(String),
    #[error("asynchronous request {0} does not exist")]
    FlowNotFound(i64),
    /// A KMS failure while protecting or opening a secret value.
    #[error("KMS operation failed: {0}")]
    AccessKms(String),

    // --- access control ---
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    RequestLimitExceeded(String),
    #[error("{0}")]
    IamConflict(String),
    #[error("user `{0}` does not exist")]
    UserNotFound(String),
    #[error("group `{0}` does not exist")]
    GroupNotFound(String),
    #[error("policy `{0}` does not exist")]
    PolicyNotFound(String),
    #[error("access key `{0}` does not exist")]
    AccessKeyNotFound(String),
    #[error("policy document: {0}")]
    InvalidPolicyDocument(String),
    #[error("{0}")]
    OperationNotPermitted(String),

    // --- audit queries (CloudAudit codes) ---
    #[error("StartTime and EndTime are required unix-second timestamps")]
    AuditTimeMissing,
    #[error("StartTime is later than EndTime")]
    AuditTimeOrder,
    #[error("MaxResults must be between 1 and 50")]
    AuditMaxResults,
    #[error("{0}")]
    AuditAttributeKey(String),
    #[error("the search range may span at most 7 days")]
    AuditOverTime,

    // --- infrastructure (reported as InternalError, details only in the log) ---
    #[error("HSM error: {0}")]
    Hsm(String),
    /// A store failure, already described by the store adapter that saw it.
    #[error("store error: {0}")]
    Store(String),
    /// The store is held by another process (a running daemon holds its data directory).
    #[error("the store is in use by another process: {0}")]
    StoreBusy(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("configuration error: {0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// Leased work (scheduled jobs) whose lease passed to another daemon: not committed.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// A command-line failure (an API error returned to `keyward admin`, a broken audit log).
    #[error("{0}")]
    Cli(String),
}

impl Error {
    /// A failure of the daemon's own machinery (HSM, store, I/O, configuration, a bug) rather
    /// than of the request: reported as `InternalError` with details only in the log. Services
    /// use it to keep such failures internal when they wrap other services' refusals.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Error::Hsm(_)
                | Error::Store(_)
                | Error::StoreBusy(_)
                | Error::Io(_)
                | Error::Config(_)
                | Error::Internal(_)
                | Error::Cli(_)
        )
    }
}

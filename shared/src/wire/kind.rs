//! Which response answers which request.
//!
//! Every request kind has exactly one response kind that answers it (or `Error`), written down
//! once in [`Request::expects`]. The host takes a reply through [`reply`], which hands back the
//! fields of the expected kind and turns anything else into an error that names kinds only:
//! a wrong reply may carry plaintext or key material, so its contents never reach a message.

use super::{DeviceError, Request, Response};
#[cfg(feature = "alloc")]
use super::{OwnedDeviceInfo, OwnedResponse};
#[cfg(feature = "alloc")]
use alloc::{string::String, vec::Vec};

/// The kind of a [`Request`], without its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    Hello,
    GenerateKey,
    ImportKey,
    Encrypt,
    Decrypt,
    Random,
    GenerateKeyPair,
    Sign,
    AsymDecrypt,
    Attest,
    Pair,
    BeginSession,
    Authenticated,
    GeneratePrime,
    AssembleKeyPair,
    SignRsa,
    DecryptRsa,
    ImportWrapped,
}

/// The kind of a [`Response`] (or [`OwnedResponse`]), without its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseKind {
    Hello,
    Sealed,
    Encrypted,
    Plaintext,
    Random,
    Error,
    KeyPair,
    Signature,
    Attestation,
    Paired,
    Session,
    Authenticated,
    Imported,
}

impl RequestKind {
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Hello => "Hello",
            RequestKind::GenerateKey => "GenerateKey",
            RequestKind::ImportKey => "ImportKey",
            RequestKind::Encrypt => "Encrypt",
            RequestKind::Decrypt => "Decrypt",
            RequestKind::Random => "Random",
            RequestKind::GenerateKeyPair => "GenerateKeyPair",
            RequestKind::Sign => "Sign",
            RequestKind::AsymDecrypt => "AsymDecrypt",
            RequestKind::Attest => "Attest",
            RequestKind::Pair => "Pair",
            RequestKind::BeginSession => "BeginSession",
            RequestKind::Authenticated => "Authenticated",
            RequestKind::GeneratePrime => "GeneratePrime",
            RequestKind::AssembleKeyPair => "AssembleKeyPair",
            RequestKind::SignRsa => "SignRsa",
            RequestKind::DecryptRsa => "DecryptRsa",
            RequestKind::ImportWrapped => "ImportWrapped",
        }
    }

    /// The response kind that answers a request of this kind (when it does not fail).
    pub fn expects(self) -> ResponseKind {
        match self {
            RequestKind::Hello => ResponseKind::Hello,
            RequestKind::GenerateKey | RequestKind::ImportKey | RequestKind::GeneratePrime => {
                ResponseKind::Sealed
            }
            RequestKind::Encrypt => ResponseKind::Encrypted,
            RequestKind::Decrypt | RequestKind::AsymDecrypt | RequestKind::DecryptRsa => {
                ResponseKind::Plaintext
            }
            RequestKind::Random => ResponseKind::Random,
            RequestKind::GenerateKeyPair | RequestKind::AssembleKeyPair => ResponseKind::KeyPair,
            RequestKind::Sign | RequestKind::SignRsa => ResponseKind::Signature,
            RequestKind::ImportWrapped => ResponseKind::Imported,
            RequestKind::Attest => ResponseKind::Attestation,
            RequestKind::Pair => ResponseKind::Paired,
            RequestKind::BeginSession => ResponseKind::Session,
            RequestKind::Authenticated => ResponseKind::Authenticated,
        }
    }

    /// Whether a request of this kind uses key material or the device's random source, and so
    /// is served on the serial link only inside an `Authenticated` envelope of the paired host
    /// (docs/wire-protocol.md, "Pairing"). The rest are open: `Hello` and `Attest` (the host
    /// needs them before it can authenticate anything) and the pairing requests themselves.
    /// The device's gate (keyward_firmware::link) and the host's serial backend both decide
    /// with this one function.
    pub fn needs_pairing(self) -> bool {
        match self {
            RequestKind::GenerateKey
            | RequestKind::ImportKey
            | RequestKind::Encrypt
            | RequestKind::Decrypt
            | RequestKind::Random
            | RequestKind::GenerateKeyPair
            | RequestKind::Sign
            | RequestKind::AsymDecrypt
            | RequestKind::GeneratePrime
            | RequestKind::AssembleKeyPair
            | RequestKind::SignRsa
            | RequestKind::DecryptRsa
            | RequestKind::ImportWrapped => true,
            RequestKind::Hello
            | RequestKind::Attest
            | RequestKind::Pair
            | RequestKind::BeginSession
            | RequestKind::Authenticated => false,
        }
    }
}

impl ResponseKind {
    pub fn name(self) -> &'static str {
        match self {
            ResponseKind::Hello => "Hello",
            ResponseKind::Sealed => "Sealed",
            ResponseKind::Encrypted => "Encrypted",
            ResponseKind::Plaintext => "Plaintext",
            ResponseKind::Random => "Random",
            ResponseKind::Error => "Error",
            ResponseKind::KeyPair => "KeyPair",
            ResponseKind::Signature => "Signature",
            ResponseKind::Attestation => "Attestation",
            ResponseKind::Paired => "Paired",
            ResponseKind::Session => "Session",
            ResponseKind::Authenticated => "Authenticated",
            ResponseKind::Imported => "Imported",
        }
    }
}

impl core::fmt::Display for RequestKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl core::fmt::Display for ResponseKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl Request<'_> {
    pub fn kind(&self) -> RequestKind {
        match self {
            Request::Hello { .. } => RequestKind::Hello,
            Request::GenerateKey { .. } => RequestKind::GenerateKey,
            Request::ImportKey { .. } => RequestKind::ImportKey,
            Request::Encrypt { .. } => RequestKind::Encrypt,
            Request::Decrypt { .. } => RequestKind::Decrypt,
            Request::Random { .. } => RequestKind::Random,
            Request::GenerateKeyPair { .. } => RequestKind::GenerateKeyPair,
            Request::Sign { .. } => RequestKind::Sign,
            Request::AsymDecrypt { .. } => RequestKind::AsymDecrypt,
            Request::Attest { .. } => RequestKind::Attest,
            Request::Pair { .. } => RequestKind::Pair,
            Request::BeginSession => RequestKind::BeginSession,
            Request::Authenticated { .. } => RequestKind::Authenticated,
            Request::GeneratePrime { .. } => RequestKind::GeneratePrime,
            Request::AssembleKeyPair { .. } => RequestKind::AssembleKeyPair,
            Request::SignRsa { .. } => RequestKind::SignRsa,
            Request::DecryptRsa { .. } => RequestKind::DecryptRsa,
            Request::ImportWrapped { .. } => RequestKind::ImportWrapped,
        }
    }

    /// The response kind that answers this request (when it does not fail with `Error`).
    pub fn expects(&self) -> ResponseKind {
        self.kind().expects()
    }
}

impl Response<'_> {
    pub fn kind(&self) -> ResponseKind {
        match self {
            Response::Hello(_) => ResponseKind::Hello,
            Response::Sealed(_) => ResponseKind::Sealed,
            Response::Encrypted { .. } => ResponseKind::Encrypted,
            Response::Plaintext(_) => ResponseKind::Plaintext,
            Response::Random(_) => ResponseKind::Random,
            Response::Error(_) => ResponseKind::Error,
            Response::KeyPair { .. } => ResponseKind::KeyPair,
            Response::Signature(_) => ResponseKind::Signature,
            Response::Attestation { .. } => ResponseKind::Attestation,
            Response::Paired => ResponseKind::Paired,
            Response::Session { .. } => ResponseKind::Session,
            Response::Authenticated { .. } => ResponseKind::Authenticated,
            Response::Imported { .. } => ResponseKind::Imported,
        }
    }
}

#[cfg(feature = "alloc")]
impl OwnedResponse {
    pub fn kind(&self) -> ResponseKind {
        match self {
            OwnedResponse::Hello(_) => ResponseKind::Hello,
            OwnedResponse::Sealed(_) => ResponseKind::Sealed,
            OwnedResponse::Encrypted { .. } => ResponseKind::Encrypted,
            OwnedResponse::Plaintext(_) => ResponseKind::Plaintext,
            OwnedResponse::Random(_) => ResponseKind::Random,
            OwnedResponse::Error(_) => ResponseKind::Error,
            OwnedResponse::KeyPair { .. } => ResponseKind::KeyPair,
            OwnedResponse::Signature(_) => ResponseKind::Signature,
            OwnedResponse::Attestation { .. } => ResponseKind::Attestation,
            OwnedResponse::Paired => ResponseKind::Paired,
            OwnedResponse::Session { .. } => ResponseKind::Session,
            OwnedResponse::Authenticated { .. } => ResponseKind::Authenticated,
            OwnedResponse::Imported { .. } => ResponseKind::Imported,
        }
    }
}

/// A reply that is not the kind its request expects. Names kinds only, never contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnexpectedResponse {
    pub request: RequestKind,
    pub expected: ResponseKind,
    pub got: ResponseKind,
}

impl core::fmt::Display for UnexpectedResponse {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "device answered {} with {} (expected {})",
            self.request, self.got, self.expected
        )
    }
}

#[cfg(feature = "std")]
impl std::error::Error for UnexpectedResponse {}

/// Why [`reply`] did not return the expected fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// The device refused the request.
    Device(DeviceError),
    /// The device answered with another kind of response.
    Unexpected(UnexpectedResponse),
}

impl core::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReplyError::Device(e) => e.fmt(f),
            ReplyError::Unexpected(u) => u.fmt(f),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ReplyError {}

/// A response kind as a type: `Fields` is what a reply of that kind carries.
#[cfg(feature = "alloc")]
pub trait Reply {
    const KIND: ResponseKind;
    type Fields;
    /// The reply's fields, or the reply itself back if it is of another kind.
    fn take(resp: OwnedResponse) -> Result<Self::Fields, OwnedResponse>;
}

/// The [`Reply`] types, one per response kind a request can expect.
#[cfg(feature = "alloc")]
pub mod replies {
    use super::*;

    macro_rules! reply {
        ($(#[$doc:meta])* $name:ident: $fields:ty, $pat:pat => $out:expr) => {
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub enum $name {}

            impl Reply for $name {
                const KIND: ResponseKind = ResponseKind::$name;
                type Fields = $fields;
                fn take(resp: OwnedResponse) -> Result<$fields, OwnedResponse> {
                    match resp {
                        $pat => Ok($out),
                        other => Err(other),
                    }
                }
            }
        };
    }

    reply!(
        /// `Hello`: what the device says about itself.
        Hello: OwnedDeviceInfo, OwnedResponse::Hello(info) => info
    );
    reply!(
        /// `Sealed`: a sealed key.
        Sealed: Vec<u8>, OwnedResponse::Sealed(s) => s
    );
    reply!(
        /// `Encrypted`: `(nonce, ciphertext || tag)`.
        Encrypted: (Vec<u8>, Vec<u8>),
        OwnedResponse::Encrypted { nonce, ciphertext } => (nonce, ciphertext)
    );
    reply!(
        /// `Plaintext`: decrypted data.
        Plaintext: Vec<u8>, OwnedResponse::Plaintext(p) => p
    );
    reply!(
        /// `Random`: random bytes.
        Random: Vec<u8>, OwnedResponse::Random(r) => r
    );
    reply!(
        /// `KeyPair`: `(sealed private key, public key DER)`.
        KeyPair: (Vec<u8>, Vec<u8>),
        OwnedResponse::KeyPair { sealed, public_key } => (sealed, public_key)
    );
    reply!(
        /// `Signature`: a DER signature.
        Signature: Vec<u8>, OwnedResponse::Signature(s) => s
    );
    reply!(
        /// `Attestation`: `(serial, identity public key DER, signature DER)`.
        Attestation: (String, Vec<u8>, Vec<u8>),
        OwnedResponse::Attestation { serial, public_key, signature } => {
            (serial, public_key, signature)
        }
    );
    reply!(
        /// `Paired`: the device holds the pairing key.
        Paired: (), OwnedResponse::Paired => ()
    );
    reply!(
        /// `Session`: the session nonce.
        Session: Vec<u8>, OwnedResponse::Session { nonce } => nonce
    );
    reply!(
        /// `Authenticated`: `(counter, tag, inner response bytes)`, to be verified
        /// (`keyward_firmware::pairing::open_response`) before the inner response is decoded.
        Authenticated: (u64, Vec<u8>, Vec<u8>),
        OwnedResponse::Authenticated { counter, tag, response } => (counter, tag, response)
    );
    reply!(
        /// `Imported`: `(sealed key, check value)`.
        Imported: (Vec<u8>, Vec<u8>),
        OwnedResponse::Imported { sealed, check_value } => (sealed, check_value)
    );
}

/// Takes `resp` as the answer to `request`: the fields of a reply of kind `R` when that is
/// the kind `request` expects and the kind the device sent. A device `Error` becomes
/// [`ReplyError::Device`]; any other mismatch becomes [`ReplyError::Unexpected`], which names
/// the kinds and drops the reply unread.
#[cfg(feature = "alloc")]
pub fn reply<R: Reply>(
    request: &Request<'_>,
    resp: OwnedResponse,
) -> Result<R::Fields, ReplyError> {
    let unexpected = |expected, got| {
        ReplyError::Unexpected(UnexpectedResponse {
            request: request.kind(),
            expected,
            got,
        })
    };
    if let OwnedResponse::Error(e) = resp {
        return Err(ReplyError::Device(e));
    }
    let (expected, got) = (request.expects(), resp.kind());
    if got != expected {
        return Err(unexpected(expected, got));
    }
    // Only a caller asking for a reply type its request is never answered with gets here.
    R::take(resp).map_err(|other| unexpected(R::KIND, other.kind()))
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::Algorithm;
    use alloc::format;
    use alloc::string::ToString;
    use alloc::vec;

    const MARKER: &[u8] = b"TOP-SECRET-PLAINTEXT-7f3a";

    /// Every way a byte string can show up in text: as text, as hex (either case, with or
    /// without separators) and as the decimal list a derived `Debug` prints.
    fn leaks(text: &str, secret: &[u8]) -> bool {
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let spaced: Vec<String> = secret.iter().map(|b| format!("{b:02x}")).collect();
        let decimal: Vec<String> = secret.iter().map(|b| b.to_string()).collect();
        let lower = text.to_lowercase();
        lower.contains(&String::from_utf8_lossy(secret).to_lowercase())
            || lower.contains(&hex)
            || lower.contains(&spaced.join(" "))
            || lower.contains(&spaced.join(":"))
            || text.contains(&decimal.join(", "))
    }

    fn every_reply_kind(secret: &[u8]) -> Vec<OwnedResponse> {
        vec![
            OwnedResponse::Sealed(secret.to_vec()),
            OwnedResponse::Encrypted {
                nonce: secret.to_vec(),
                ciphertext: secret.to_vec(),
            },
            OwnedResponse::Plaintext(secret.to_vec()),
            OwnedResponse::Random(secret.to_vec()),
            OwnedResponse::KeyPair {
                sealed: secret.to_vec(),
                public_key: secret.to_vec(),
            },
            OwnedResponse::Signature(secret.to_vec()),
            OwnedResponse::Attestation {
                serial: "KW-000000000000".into(),
                public_key: secret.to_vec(),
                signature: secret.to_vec(),
            },
            OwnedResponse::Session {
                nonce: secret.to_vec(),
            },
            OwnedResponse::Authenticated {
                counter: 7,
                tag: secret.to_vec(),
                response: secret.to_vec(),
            },
            OwnedResponse::Imported {
                sealed: secret.to_vec(),
                check_value: secret.to_vec(),
            },
        ]
    }

    #[test]
    fn every_request_expects_the_kind_the_device_sends() {
        let cases = [
            (Request::Hello { protocol: 1 }, ResponseKind::Hello),
            (
                Request::GenerateKey {
                    algorithm: Algorithm::Aes256Gcm,
                },
                ResponseKind::Sealed,
            ),
            (
                Request::ImportKey {
                    algorithm: Algorithm::Aes256Gcm,
                    material: &[],
                },
                ResponseKind::Sealed,
            ),
            (
                Request::Decrypt {
                    algorithm: Algorithm::Aes256Gcm,
                    sealed: &[],
                    aad: &[],
                    nonce: &[],
                    ciphertext: &[],
                },
                ResponseKind::Plaintext,
            ),
            (
                Request::AsymDecrypt {
                    algorithm: Algorithm::Sm2,
                    sealed: &[],
                    ciphertext: &[],
                },
                ResponseKind::Plaintext,
            ),
            (Request::Random { len: 1 }, ResponseKind::Random),
            (
                Request::Attest { challenge: &[] },
                ResponseKind::Attestation,
            ),
            (
                Request::Pair {
                    ephemeral: &[],
                    wrapped_key: &[],
                },
                ResponseKind::Paired,
            ),
            (Request::BeginSession, ResponseKind::Session),
            (
                Request::Authenticated {
                    counter: 1,
                    tag: &[],
                    request: &[],
                },
                ResponseKind::Authenticated,
            ),
        ];
        for (req, kind) in cases {
            assert_eq!(req.expects(), kind, "{req:?}");
        }
    }

    #[test]
    fn the_expected_reply_gives_its_fields_and_errors_stay_device_errors() {
        let req = Request::GenerateKey {
            algorithm: Algorithm::Aes256Gcm,
        };
        assert_eq!(
            reply::<replies::Sealed>(&req, OwnedResponse::Sealed(vec![1, 2])),
            Ok(vec![1, 2])
        );
        assert_eq!(
            reply::<replies::Sealed>(&req, OwnedResponse::Error(DeviceError::BadLength)),
            Err(ReplyError::Device(DeviceError::BadLength))
        );
        // Asking for a reply type the request is never answered with is refused too.
        assert_eq!(
            reply::<replies::Signature>(&req, OwnedResponse::Sealed(vec![1])),
            Err(ReplyError::Unexpected(UnexpectedResponse {
                request: RequestKind::GenerateKey,
                expected: ResponseKind::Signature,
                got: ResponseKind::Sealed,
            }))
        );
    }

    /// A reply of the wrong kind carrying secret bytes is refused with an error that names
    /// the kinds, and neither its Display nor its Debug (nor the reply's own Debug) shows the
    /// bytes in any form.
    #[test]
    fn a_mismatched_reply_never_shows_its_contents() {
        let req = Request::GenerateKey {
            algorithm: Algorithm::Aes256Gcm,
        };
        for resp in every_reply_kind(MARKER) {
            let got = resp.kind();
            let shown = format!("{resp:?} {resp:#?}");
            assert!(!leaks(&shown, MARKER), "{shown}");
            if got == ResponseKind::Sealed {
                continue;
            }
            let err = reply::<replies::Sealed>(&req, resp).unwrap_err();
            assert_eq!(
                err,
                ReplyError::Unexpected(UnexpectedResponse {
                    request: RequestKind::GenerateKey,
                    expected: ResponseKind::Sealed,
                    got,
                })
            );
            let text = format!("{err} {err:?} {err:#?}");
            assert!(!leaks(&text, MARKER), "{text}");
            assert_eq!(
                err.to_string(),
                format!("device answered GenerateKey with {got} (expected Sealed)")
            );
        }
        // The test's own detector does find the marker where it is printed.
        assert!(leaks(&format!("{MARKER:?}"), MARKER));
        assert!(leaks(
            &format!("{:?}", alloc::string::String::from_utf8_lossy(MARKER)),
            MARKER
        ));
    }

    #[test]
    fn request_debug_shows_lengths_not_bytes() {
        let req = Request::Encrypt {
            algorithm: Algorithm::Sm4Gcm,
            sealed: MARKER,
            aad: MARKER,
            plaintext: MARKER,
        };
        let shown = format!("{req:?}");
        assert!(!leaks(&shown, MARKER), "{shown}");
        assert_eq!(
            shown,
            "Encrypt { algorithm: Sm4Gcm, sealed: <25 bytes>, aad: <25 bytes>, plaintext: <25 bytes> }"
        );
        let imported = Request::ImportKey {
            algorithm: Algorithm::Aes256Gcm,
            material: MARKER,
        };
        assert!(!leaks(&format!("{imported:#?}"), MARKER));
        let resp = Response::Plaintext(MARKER);
        assert_eq!(format!("{resp:?}"), "Plaintext(<25 bytes>)");
        // The pairing key (wrapped or not), tags and the enveloped request never show either.
        for req in [
            Request::Pair {
                ephemeral: MARKER,
                wrapped_key: MARKER,
            },
            Request::Authenticated {
                counter: 9,
                tag: MARKER,
                request: MARKER,
            },
        ] {
            let shown = format!("{req:?} {req:#?}");
            assert!(!leaks(&shown, MARKER), "{shown}");
        }
        let resp = Response::Authenticated {
            counter: 9,
            tag: MARKER,
            response: MARKER,
        };
        assert_eq!(
            format!("{resp:?}"),
            "Authenticated { counter: 9, tag: <25 bytes>, response: <25 bytes> }"
        );
    }

    #[test]
    fn only_key_operations_need_pairing() {
        let open = [
            RequestKind::Hello,
            RequestKind::Attest,
            RequestKind::Pair,
            RequestKind::BeginSession,
            RequestKind::Authenticated,
        ];
        let key_operations = [
            RequestKind::GenerateKey,
            RequestKind::ImportKey,
            RequestKind::Encrypt,
            RequestKind::Decrypt,
            RequestKind::Random,
            RequestKind::GenerateKeyPair,
            RequestKind::Sign,
            RequestKind::AsymDecrypt,
            RequestKind::GeneratePrime,
            RequestKind::AssembleKeyPair,
            RequestKind::SignRsa,
            RequestKind::DecryptRsa,
            RequestKind::ImportWrapped,
        ];
        assert!(open.iter().all(|k| !k.needs_pairing()));
        assert!(key_operations.iter().all(|k| k.needs_pairing()));
    }
}

//! Requests and responses between the host and an HSM running the Keyward firmware core.
//!
//! The embedded backend passes these values directly; the serial backend postcard-encodes them.
//! Requests borrow their byte fields so a device can decode them in place, and responses
//! borrow theirs from a caller-supplied output buffer, so the device's request path needs no
//! heap. The host, which may allocate, decodes responses as [`OwnedResponse`].

use crate::alg::Algorithm;
#[cfg(feature = "alloc")]
use alloc::{string::String, vec::Vec};
use serde::{Deserialize, Serialize};

mod debug;
mod kind;

#[cfg(feature = "alloc")]
pub use kind::{replies, reply, Reply};
pub use kind::{ReplyError, RequestKind, ResponseKind, UnexpectedResponse};

/// Protocol version spoken by this crate.
pub const PROTOCOL_VERSION: u16 = 1;
/// Largest plaintext or ciphertext a single request may carry.
pub const MAX_DATA_LEN: usize = 64 * 1024;
/// Largest associated data a request may carry.
pub const MAX_AAD_LEN: usize = 4096;
/// Largest number of random bytes one request may ask for.
pub const MAX_RANDOM_LEN: usize = 4096;

/// `Debug` is written by hand (wire/debug.rs): it prints byte fields as lengths only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request<'a> {
    Hello {
        protocol: u16,
    },
    /// Generate fresh key material inside the device and return it sealed.
    GenerateKey {
        algorithm: Algorithm,
    },
    /// Seal caller-supplied material (BYOK import).
    ImportKey {
        algorithm: Algorithm,
        #[serde(borrow)]
        material: &'a [u8],
    },
    Encrypt {
        algorithm: Algorithm,
        #[serde(borrow)]
        sealed: &'a [u8],
        #[serde(borrow)]
        aad: &'a [u8],
        #[serde(borrow)]
        plaintext: &'a [u8],
    },
    Decrypt {
        algorithm: Algorithm,
        #[serde(borrow)]
        sealed: &'a [u8],
        #[serde(borrow)]
        aad: &'a [u8],
        #[serde(borrow)]
        nonce: &'a [u8],
        #[serde(borrow)]
        ciphertext: &'a [u8],
    },
    Random {
        len: u32,
    },
    // Variants are only ever appended: their index is the wire format.
    /// Generate an asymmetric key pair inside the device; the private half comes back sealed.
    GenerateKeyPair {
        algorithm: Algorithm,
    },
    /// Sign a message (the device hashes it) or a digest with a sealed private key: 32 bytes,
    /// or on P-384 also a 48-byte SHA-384 digest (`message` is length-prefixed, so this took
    /// no new variant).
    Sign {
        algorithm: Algorithm,
        #[serde(borrow)]
        sealed: &'a [u8],
        #[serde(borrow)]
        message: &'a [u8],
        is_digest: bool,
    },
    /// Decrypt an SM2 (C1C3C2, ASN.1) ciphertext with a sealed private key.
    AsymDecrypt {
        algorithm: Algorithm,
        #[serde(borrow)]
        sealed: &'a [u8],
        #[serde(borrow)]
        ciphertext: &'a [u8],
    },
    /// Prove the device's identity: sign `ATTESTATION_CONTEXT || challenge || model || 0 ||
    /// firmware_version || 0 || serial` with the device identity key (P-256, ECDSA/SHA-256).
    Attest {
        #[serde(borrow)]
        challenge: &'a [u8],
    },
    /// Registers the host's pairing key on a device that has none (docs/wire-protocol.md,
    /// "Pairing"). The key travels wrapped to the device's attested identity key:
    /// `ephemeral` is the host's one-time P-256 public key (65-byte uncompressed SEC1 point),
    /// `wrapped_key` the 32-byte key under AES-256-GCM with a key derived from their ECDH
    /// (`keyward_firmware::pairing::wrap_key`), 48 bytes with its tag. Refused with
    /// `AlreadyPaired` once a key is registered.
    Pair {
        #[serde(borrow)]
        ephemeral: &'a [u8],
        #[serde(borrow)]
        wrapped_key: &'a [u8],
    },
    /// Asks a paired device for a fresh session nonce; answered with `Session`.
    BeginSession,
    /// A request authenticated with the pairing key: `request` is the postcard encoding of the
    /// inner request, `tag` HMAC-SHA256 over a label, the session nonce, `counter` and those
    /// bytes. The device runs the inner request only if the tag verifies and `counter` is above
    /// every counter it accepted in the session, and answers with `Response::Authenticated`.
    Authenticated {
        counter: u64,
        #[serde(borrow)]
        tag: &'a [u8],
        #[serde(borrow)]
        request: &'a [u8],
    },
    // Issue 18: RSA-2048 and BYOK. Appended, so every frame above still decodes as before.
    /// One bounded step of RSA key generation (docs/wire-protocol.md, "RSA key generation in
    /// steps"): the device tests a fixed number of candidates from a fresh random start and
    /// answers `Sealed` with the prime sealed under the device key (usable only by
    /// `AssembleKeyPair`), or `Error(TryAgain)` when this step found none.
    GeneratePrime {
        algorithm: Algorithm,
    },
    /// Builds the key pair from two sealed primes of `GeneratePrime`; answered with `KeyPair`.
    AssembleKeyPair {
        algorithm: Algorithm,
        #[serde(borrow)]
        first: &'a [u8],
        #[serde(borrow)]
        second: &'a [u8],
    },
    /// An RSA signature with the named padding over a message (the device hashes it with
    /// SHA-256) or a 32-byte SHA-256 digest; answered with `Signature` (256 bytes).
    SignRsa {
        algorithm: Algorithm,
        padding: SignPadding,
        #[serde(borrow)]
        sealed: &'a [u8],
        #[serde(borrow)]
        message: &'a [u8],
        is_digest: bool,
    },
    /// RSA decryption of a 256-byte ciphertext with the named padding; answered with
    /// `Plaintext`, or `Error(AuthenticationFailed)` when the padding is not well-formed.
    DecryptRsa {
        algorithm: Algorithm,
        padding: DecryptPadding,
        #[serde(borrow)]
        sealed: &'a [u8],
        #[serde(borrow)]
        ciphertext: &'a [u8],
    },
    /// BYOK: decrypts `encrypted` with the sealed RSA-2048 wrapping key `wrapping` and seals
    /// the result as a key of `algorithm` (AES-256-GCM or SM4-GCM) without it leaving the
    /// device; answered with `Imported`.
    ImportWrapped {
        algorithm: Algorithm,
        padding: DecryptPadding,
        #[serde(borrow)]
        wrapping: &'a [u8],
        #[serde(borrow)]
        encrypted: &'a [u8],
    },
}

/// The RSA signature schemes (hash SHA-256; PSS with MGF1-SHA-256 and a 32-byte salt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignPadding {
    Pkcs1v15Sha256,
    PssSha256,
}

/// The RSA encryption schemes (OAEP with MGF1 over the same hash and an empty label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecryptPadding {
    Pkcs1v15,
    OaepSha1,
    OaepSha256,
}

/// What a device says about itself in answer to `Hello`. The device's own constants, so the
/// type borrows them for `'static`; the host decodes it as [`OwnedDeviceInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    pub protocol: u16,
    pub model: &'static str,
    pub firmware_version: &'static str,
    pub algorithms: &'static [Algorithm],
    pub max_data_len: u32,
}

/// A device's answer. Byte and string fields borrow from the output buffer the caller handed
/// the key service (`KeyService::handle`), so building and encoding one allocates nothing.
/// The host decodes responses as [`OwnedResponse`], which has the same wire encoding: postcard
/// writes `&[u8]`/`Vec<u8>` and `&str`/`String` alike (varint length, then the bytes).
/// `Debug` is written by hand (wire/debug.rs): it prints byte fields as lengths only.
#[derive(Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Response<'a> {
    Hello(DeviceInfo),
    Sealed(&'a [u8]),
    Encrypted {
        nonce: &'a [u8],
        ciphertext: &'a [u8],
    },
    Plaintext(&'a [u8]),
    Random(&'a [u8]),
    Error(DeviceError),
    /// A sealed private key and its public key (DER SubjectPublicKeyInfo).
    KeyPair {
        sealed: &'a [u8],
        public_key: &'a [u8],
    },
    /// A DER signature.
    Signature(&'a [u8]),
    Attestation {
        serial: &'a str,
        /// The identity public key, DER SubjectPublicKeyInfo.
        public_key: &'a [u8],
        /// DER ECDSA signature over the attestation message.
        signature: &'a [u8],
    },
    /// The pairing key is registered (and stored by the device).
    Paired,
    /// A fresh session nonce (`pairing::NONCE_LEN` bytes) for `Authenticated` requests.
    Session {
        nonce: &'a [u8],
    },
    /// The answer to an `Authenticated` request: `response` is the postcard encoding of the
    /// inner response, `tag` HMAC-SHA256 under the pairing key over another label, the session
    /// nonce, the request's `counter` and those bytes, so the host knows the paired device
    /// sent it, in answer to this request.
    Authenticated {
        counter: u64,
        tag: &'a [u8],
        response: &'a [u8],
    },
    /// Imported material, sealed, and its check value: the first 16 bytes of the material's
    /// own AEAD (AES-256-GCM or SM4-GCM) over 16 zero bytes with a zero nonce, which names the
    /// material without revealing it.
    Imported {
        sealed: &'a [u8],
        check_value: &'a [u8],
    },
}

/// Largest attestation challenge a device accepts.
pub const MAX_CHALLENGE_LEN: usize = 64;

/// Domain separation for attestation signatures.
pub const ATTESTATION_CONTEXT: &[u8] = b"keyward/attest/v1\0";

/// Length of the attestation message for these parts.
pub fn attestation_message_len(
    challenge: &[u8],
    model: &str,
    firmware_version: &str,
    serial: &str,
) -> usize {
    ATTESTATION_CONTEXT.len()
        + challenge.len()
        + model.len()
        + firmware_version.len()
        + serial.len()
        + 2
}

/// Writes the bytes an attestation signature covers, `ATTESTATION_CONTEXT || challenge ||
/// model || 0 || firmware_version || 0 || serial`, into `out`; returns the length, or `None`
/// if `out` is too short.
pub fn write_attestation_message(
    out: &mut [u8],
    challenge: &[u8],
    model: &str,
    firmware_version: &str,
    serial: &str,
) -> Option<usize> {
    let len = attestation_message_len(challenge, model, firmware_version, serial);
    let out = out.get_mut(..len)?;
    let mut at = 0;
    for part in [
        ATTESTATION_CONTEXT,
        challenge,
        model.as_bytes(),
        &[0],
        firmware_version.as_bytes(),
        &[0],
        serial.as_bytes(),
    ] {
        out[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    Some(len)
}

/// The bytes an attestation signature covers (see [`write_attestation_message`]).
#[cfg(feature = "alloc")]
pub fn attestation_message(
    challenge: &[u8],
    model: &str,
    firmware_version: &str,
    serial: &str,
) -> Vec<u8> {
    let mut m =
        alloc::vec![0u8; attestation_message_len(challenge, model, firmware_version, serial)];
    let n = write_attestation_message(&mut m, challenge, model, firmware_version, serial);
    debug_assert_eq!(n, Some(m.len()));
    m
}

/// The host's owned copy of [`DeviceInfo`], decoded from a device's frame.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedDeviceInfo {
    pub protocol: u16,
    pub model: String,
    pub firmware_version: String,
    pub algorithms: Vec<Algorithm>,
    pub max_data_len: u32,
}

/// The host's owned copy of a [`Response`]: same variants, same wire encoding, owned fields.
/// `Debug` is written by hand (wire/debug.rs): it prints byte fields as lengths only.
#[cfg(feature = "alloc")]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OwnedResponse {
    Hello(OwnedDeviceInfo),
    Sealed(Vec<u8>),
    Encrypted {
        nonce: Vec<u8>,
        ciphertext: Vec<u8>,
    },
    Plaintext(Vec<u8>),
    Random(Vec<u8>),
    Error(DeviceError),
    KeyPair {
        sealed: Vec<u8>,
        public_key: Vec<u8>,
    },
    Signature(Vec<u8>),
    Attestation {
        serial: String,
        public_key: Vec<u8>,
        signature: Vec<u8>,
    },
    Paired,
    Session {
        nonce: Vec<u8>,
    },
    Authenticated {
        counter: u64,
        tag: Vec<u8>,
        response: Vec<u8>,
    },
    Imported {
        sealed: Vec<u8>,
        check_value: Vec<u8>,
    },
}

#[cfg(feature = "alloc")]
impl From<DeviceInfo> for OwnedDeviceInfo {
    fn from(info: DeviceInfo) -> Self {
        OwnedDeviceInfo {
            protocol: info.protocol,
            model: info.model.into(),
            firmware_version: info.firmware_version.into(),
            algorithms: info.algorithms.to_vec(),
            max_data_len: info.max_data_len,
        }
    }
}

#[cfg(feature = "alloc")]
impl From<Response<'_>> for OwnedResponse {
    fn from(resp: Response<'_>) -> Self {
        match resp {
            Response::Hello(info) => OwnedResponse::Hello(info.into()),
            Response::Sealed(s) => OwnedResponse::Sealed(s.to_vec()),
            Response::Encrypted { nonce, ciphertext } => OwnedResponse::Encrypted {
                nonce: nonce.to_vec(),
                ciphertext: ciphertext.to_vec(),
            },
            Response::Plaintext(p) => OwnedResponse::Plaintext(p.to_vec()),
            Response::Random(r) => OwnedResponse::Random(r.to_vec()),
            Response::Error(e) => OwnedResponse::Error(e),
            Response::KeyPair { sealed, public_key } => OwnedResponse::KeyPair {
                sealed: sealed.to_vec(),
                public_key: public_key.to_vec(),
            },
            Response::Signature(s) => OwnedResponse::Signature(s.to_vec()),
            Response::Attestation {
                serial,
                public_key,
                signature,
            } => OwnedResponse::Attestation {
                serial: serial.into(),
                public_key: public_key.to_vec(),
                signature: signature.to_vec(),
            },
            Response::Paired => OwnedResponse::Paired,
            Response::Session { nonce } => OwnedResponse::Session {
                nonce: nonce.to_vec(),
            },
            Response::Authenticated {
                counter,
                tag,
                response,
            } => OwnedResponse::Authenticated {
                counter,
                tag: tag.to_vec(),
                response: response.to_vec(),
            },
            Response::Imported {
                sealed,
                check_value,
            } => OwnedResponse::Imported {
                sealed: sealed.to_vec(),
                check_value: check_value.to_vec(),
            },
        }
    }
}

#[cfg(feature = "alloc")]
impl Response<'_> {
    /// Copies the response out of the device's output buffer.
    pub fn to_owned_response(self) -> OwnedResponse {
        self.into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceError {
    UnsupportedProtocol,
    UnsupportedAlgorithm,
    /// A sealed key failed authentication or does not match the named algorithm.
    BadSealedKey,
    /// AEAD authentication failed.
    AuthenticationFailed,
    BadLength,
    Internal,
    // Variants are only ever appended: their index is the wire format.
    /// A frame failed its COBS or CRC check, so the device could not read its sequence number;
    /// the answer carries `seq` 0, which the host never uses.
    BadFrame,
    /// A key operation (or a session) on a device that has no pairing key yet.
    NotPaired,
    /// A key operation outside an `Authenticated` envelope, or an envelope whose tag does not
    /// verify under the pairing key and the current (or newest) session nonce.
    Unauthenticated,
    /// An authentic envelope whose counter is not above the last one the session accepted.
    Replayed,
    /// `Pair` on a device that already has a pairing key.
    AlreadyPaired,
    /// `GeneratePrime` found no prime in this step's candidates: ask again.
    TryAgain,
}

impl core::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DeviceError::UnsupportedProtocol => "unsupported protocol version",
            DeviceError::UnsupportedAlgorithm => "algorithm not supported by the device",
            DeviceError::BadSealedKey => "sealed key rejected",
            DeviceError::AuthenticationFailed => "authentication failed",
            DeviceError::BadLength => "length out of range",
            DeviceError::Internal => "internal device error",
            DeviceError::BadFrame => "damaged frame",
            DeviceError::NotPaired => "the device is not paired with a host",
            DeviceError::Unauthenticated => "request not authenticated by the paired host",
            DeviceError::Replayed => "replayed request",
            DeviceError::AlreadyPaired => "the device is already paired",
            DeviceError::TryAgain => "no prime in this step; ask again",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DeviceError {}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use alloc::vec;

    /// The borrowed responses the device encodes and the owned ones the host decodes are the
    /// same bytes on the wire, for every variant.
    #[test]
    fn borrowed_and_owned_responses_encode_identically() {
        static ALGS: [Algorithm; 2] = [Algorithm::Aes256Gcm, Algorithm::Sm2];
        let big = vec![0xA5u8; 300];
        let responses = [
            Response::Hello(DeviceInfo {
                protocol: 1,
                model: "keyward-fw",
                firmware_version: "0.1.0",
                algorithms: &ALGS,
                max_data_len: MAX_DATA_LEN as u32,
            }),
            Response::Sealed(&[1, 2, 3]),
            Response::Encrypted {
                nonce: &[7; 12],
                ciphertext: &big,
            },
            Response::Plaintext(&[]),
            Response::Random(&big[..200]),
            Response::Error(DeviceError::AuthenticationFailed),
            Response::KeyPair {
                sealed: &[9; 62],
                public_key: &[4; 91],
            },
            Response::Signature(&[0x30, 0x44]),
            Response::Attestation {
                serial: "KW-0123456789AB",
                public_key: &[1; 91],
                signature: &big[..72],
            },
            Response::Paired,
            Response::Session { nonce: &[3; 32] },
            Response::Authenticated {
                counter: u64::MAX,
                tag: &[4; 32],
                response: &big,
            },
            Response::Imported {
                sealed: &big[..62],
                check_value: &[5; 16],
            },
        ];
        for resp in responses {
            let borrowed = postcard::to_allocvec(&resp).unwrap();
            let owned = resp.to_owned_response();
            assert_eq!(borrowed, postcard::to_allocvec(&owned).unwrap(), "{resp:?}");
            let back: OwnedResponse = postcard::from_bytes(&borrowed).unwrap();
            assert_eq!(back, owned);
        }
    }

    #[test]
    fn attestation_message_layout() {
        let m = attestation_message(b"ch", "model", "1.0", "KW-1");
        assert_eq!(m, b"keyward/attest/v1\0chmodel\x001.0\0KW-1");
        let mut short = [0u8; 10];
        assert_eq!(
            write_attestation_message(&mut short, b"ch", "model", "1.0", "KW-1"),
            None
        );
    }

    #[test]
    fn request_round_trips_through_postcard() {
        let req = Request::Encrypt {
            algorithm: Algorithm::Aes256Gcm,
            sealed: &[1, 2, 3],
            aad: b"aad",
            plaintext: b"hello",
        };
        let bytes = postcard::to_allocvec(&req).unwrap();
        let back: Request<'_> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for len in 0..64u8 {
            let junk: Vec<u8> = (0..len)
                .map(|i| i.wrapping_mul(37).wrapping_add(200))
                .collect();
            let _ = postcard::from_bytes::<Request<'_>>(&junk);
        }
    }
}

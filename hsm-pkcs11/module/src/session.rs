//! A session and the operation it may have in progress: the mechanisms the module offers and
//! the state between an *Init call and the call that finishes it.

use crate::keys::{KeyInfo, Kind};
use cryptoki_sys::*;
use sha2::{Digest, Sha256, Sha384};
use std::sync::Arc;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMech {
    /// CKM_ECDSA: the input is a hash.
    Ecdsa,
    EcdsaSha256,
    /// CKM_ECDSA_SHA384 (SHA-384, as TLS and X.509 pair with P-384 keys).
    EcdsaSha384,
    /// CKM_RSA_PKCS: the input is a SHA-256 DigestInfo.
    RsaPkcs,
    RsaPkcsSha256,
    /// CKM_RSA_PKCS_PSS: the input is a SHA-256 hash.
    RsaPss,
    RsaPssSha256,
}

impl SignMech {
    /// The hash of a hashing mechanism, fresh.
    pub(crate) fn hasher(self) -> Option<Hasher> {
        match self {
            SignMech::EcdsaSha256 | SignMech::RsaPkcsSha256 | SignMech::RsaPssSha256 => {
                Some(Hasher::Sha256(Sha256::new()))
            }
            SignMech::EcdsaSha384 => Some(Hasher::Sha384(Sha384::new())),
            _ => None,
        }
    }

    pub(crate) fn for_kind(self, kind: Kind) -> bool {
        match self {
            SignMech::Ecdsa | SignMech::EcdsaSha256 | SignMech::EcdsaSha384 => {
                kind != Kind::Rsa2048
            }
            _ => kind == Kind::Rsa2048,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecryptScheme {
    Pkcs1v15,
    OaepSha1,
    OaepSha256,
}

impl DecryptScheme {
    pub(crate) fn api_name(self) -> &'static str {
        match self {
            DecryptScheme::Pkcs1v15 => "RSAES_PKCS1_V1_5",
            DecryptScheme::OaepSha1 => "RSAES_OAEP_SHA_1",
            DecryptScheme::OaepSha256 => "RSAES_OAEP_SHA_256",
        }
    }
}

/// The hash a hashing mechanism runs over its input.
pub(crate) enum Hasher {
    Sha256(Sha256),
    Sha384(Sha384),
}

impl Hasher {
    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
        }
    }

    pub(crate) fn finalize(self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
        }
    }
}

/// The input of a sign or verify operation collected so far.
pub(crate) enum Input {
    Raw(Vec<u8>),
    /// Boxed: a SHA-384 state is several times the size of the other variant.
    Hashing(Box<Hasher>),
}

pub(crate) struct SignOp {
    pub(crate) key: Arc<KeyInfo>,
    pub(crate) mech: SignMech,
    pub(crate) input: Input,
}

pub(crate) struct DecryptOp {
    pub(crate) key: Arc<KeyInfo>,
    pub(crate) scheme: DecryptScheme,
    /// The plaintext of a size query, kept so the real call does not decrypt again.
    pub(crate) result: Option<Zeroizing<Vec<u8>>>,
}

pub struct Session {
    pub rw: bool,
    pub(crate) find: Option<Vec<CK_OBJECT_HANDLE>>,
    pub(crate) sign: Option<SignOp>,
    pub(crate) verify: Option<SignOp>,
    pub(crate) decrypt: Option<DecryptOp>,
}

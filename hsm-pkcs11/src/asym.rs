//! Asymmetric keys (RSA-2048, ECDSA P-256/P-384) generated in the token and held only sealed.
//!
//! # Life of a key pair
//!
//! 1. `C_GenerateKeyPair` creates both halves as *session* objects. The private half is
//!    `CKA_SENSITIVE=true` (its components can never be read) and `CKA_EXTRACTABLE=true`, only
//!    so that it can be wrapped once.
//! 2. `C_WrapKey(CKM_AES_KEY_WRAP_PAD, root)` seals it. SoftHSM2 encodes the private key as
//!    PKCS#8 `PrivateKeyInfo` and wraps that with RFC 5649 key wrap.
//! 3. The SubjectPublicKeyInfo is built on the host from the public object's attributes
//!    (`CKA_MODULUS`/`CKA_PUBLIC_EXPONENT`, or `CKA_EC_POINT`), and both objects are destroyed
//!    on every path. The sealed blob is `0x04 || kind || AES-KWP(root, PKCS#8)`.
//! 4. To use it, `C_UnwrapKey` brings it back as a sensitive, **non-extractable** session
//!    object (the root key's `CKA_UNWRAP_TEMPLATE` refuses anything else, exactly as for AES
//!    data keys), cached per session like the AES keys. Sign/decrypt run inside the token.
//!
//! The kind byte sits outside the key wrap, so it is not integrity-protected by AES-KWP. It
//! only selects `CKA_KEY_TYPE` in the unwrap template, and every freshly unwrapped key is
//! checked against it (RSA: 2048-bit modulus; EC: the expected named curve), so an altered
//! kind byte gives [`Error::BadSealedKey`] rather than a key of a different size or curve.
//!
//! # Capabilities
//!
//! [`Pkcs11Hsm::open`] reads `C_GetMechanismList`/`C_GetMechanismInfo` and then runs the whole
//! life cycle above once per key kind, with throw-away session objects, including every
//! sign/decrypt mechanism. A mechanism list cannot say which *parameters* a mechanism takes:
//! SoftHSM2 2.6.1 lists `CKM_RSA_PKCS_OAEP` but refuses every hash except SHA-1. (cryptoki also
//! silently drops mechanism types it does not model, so the list is only a first filter.)
//!
//! # Decryption is an oracle
//!
//! [`Pkcs11Hsm::rsa_decrypt`] reports a padding failure as [`Error::AuthenticationFailed`]. With
//! PKCS#1 v1.5 that distinction is a Bleichenbacher oracle for whoever can submit ciphertexts;
//! it is inherent to offering v1.5 decryption at all (callers should prefer OAEP and must not
//! reveal the failure reason to untrusted parties in a timing- or content-visible way).

use std::cell::Cell;

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use der::asn1::{AnyRef, BitStringRef, OctetStringRef, SequenceOf, UintRef};
use der::{Decode, Encode};
use spki::{AlgorithmIdentifierRef, EncodePublicKey, SubjectPublicKeyInfoRef};
use zeroize::Zeroizing;

use crate::blob::{check_wrapped_len, parse_private_blob, FORMAT_KWP_PRIVATE};
use crate::error::{der_error, rv_of};
use crate::error::{map_decrypt_error, Error};
use crate::kind::{AsymKind, RsaDecryptMechanism, SignMechanism, RSA2048_LEN};
use crate::templates;
use crate::unwrap::{unwrap_private_key, vet_unwrapped, with_cached_key};
use crate::Pkcs11Hsm;

/// Length of a SHA-256 digest.
const SHA256_LEN: usize = 32;
/// Digest lengths accepted for ECDSA: SHA-256 up to SHA-512 (the token truncates a digest
/// longer than the curve order, as ECDSA prescribes).
const ECDSA_DIGEST_LEN: std::ops::RangeInclusive<usize> = 32..=64;

/// DER of `DigestInfo { AlgorithmIdentifier { id-sha256, NULL }, OCTET STRING (32 bytes) }`
/// without the digest itself (RFC 8017 section 9.2, note 1). PKCS#1 v1.5 signing of a
/// precomputed digest with `CKM_RSA_PKCS` needs it prepended.
const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// A key pair generated in the token: the private half sealed, the public half in the clear.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKeyPair {
    /// Opaque: [0x04][kind byte][AES-KWP(root, private key)]
    pub sealed_private: Vec<u8>,
    /// X.509 SubjectPublicKeyInfo, DER.
    pub public_spki_der: Vec<u8>,
}

impl std::fmt::Debug for SealedKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The sealed blob is not secret, but it is long and useless in logs.
        f.debug_struct("SealedKeyPair")
            .field("sealed_private_len", &self.sealed_private.len())
            .field("public_spki_der_len", &self.public_spki_der.len())
            .finish()
    }
}

/// What this token can do with sealed asymmetric keys, established at [`Pkcs11Hsm::open`].
///
/// Each flag means the complete path worked once on this token with throw-away keys:
/// generate, wrap under the root key, unwrap with the non-extractable template, and run the
/// mechanism (for decryption: a round trip through the token's public-key encryption).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RSA-2048 key pairs, PKCS#1 v1.5 signing and decryption.
    pub rsa_2048: bool,
    /// ECDSA key pairs on P-256.
    pub ec_p256: bool,
    /// ECDSA key pairs on P-384.
    pub ec_p384: bool,
    /// RSASSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) with RSA-2048 keys.
    pub rsa_pss: bool,
    /// RSA-OAEP with SHA-1 / MGF1-SHA-1.
    pub rsa_oaep_sha1: bool,
    /// RSA-OAEP with SHA-256 / MGF1-SHA-256.
    pub rsa_oaep_sha256: bool,
}

impl Capabilities {
    fn kind(&self, kind: AsymKind) -> bool {
        match kind {
            AsymKind::Rsa2048 => self.rsa_2048,
            AsymKind::EcP256 => self.ec_p256,
            AsymKind::EcP384 => self.ec_p384,
        }
    }

    pub(crate) fn require_kind(&self, kind: AsymKind) -> Result<(), Error> {
        if self.kind(kind) {
            return Ok(());
        }
        Err(Error::Unsupported(match kind {
            AsymKind::Rsa2048 => "RSA-2048 key pairs are not supported by this token",
            AsymKind::EcP256 => "P-256 key pairs are not supported by this token",
            AsymKind::EcP384 => "P-384 key pairs are not supported by this token",
        }))
    }

    /// `mech` worked in the decryption trial at open (PKCS#1 v1.5 comes with `rsa_2048`).
    pub(crate) fn require_rsa_decrypt(&self, mech: RsaDecryptMechanism) -> Result<(), Error> {
        match mech {
            RsaDecryptMechanism::Pkcs1v15 => Ok(()),
            RsaDecryptMechanism::OaepSha1 if self.rsa_oaep_sha1 => Ok(()),
            RsaDecryptMechanism::OaepSha256 if self.rsa_oaep_sha256 => Ok(()),
            RsaDecryptMechanism::OaepSha1 => Err(Error::Unsupported(
                "RSA-OAEP with SHA-1 is not supported by this token",
            )),
            RsaDecryptMechanism::OaepSha256 => Err(Error::Unsupported(
                "RSA-OAEP with SHA-256 is not supported by this token",
            )),
        }
    }
}

impl Pkcs11Hsm {
    /// Which mechanisms this token really supports, probed at open() with C_GetMechanismList
    /// plus a real trial where the list may lie (the cryptoki crate drops mechanism types it does
    /// not model). Measured on SoftHSM2 2.6.1: RSA-OAEP works with SHA-1 only (SHA-256 refused).
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// Generate a key pair inside the token; return the private key sealed (wrapped under the
    /// root key) and the public key as a DER SubjectPublicKeyInfo.
    ///
    /// Both token objects are session objects and are destroyed before this returns, on every
    /// path. Returns [`Error::Unsupported`] if [`Pkcs11Hsm::capabilities`] says the token
    /// cannot do `kind`.
    pub fn generate_key_pair_sealed(&self, kind: AsymKind) -> Result<SealedKeyPair, Error> {
        self.caps.require_kind(kind)?;
        let (public_t, private_t) = templates::generated_key_pair_templates(kind)?;
        let mut s = self.pool.checkout()?;
        let leaked = Cell::new(false);
        let result = s.call("C_GenerateKeyPair/C_WrapKey", |s, k| {
            generate_wrap_destroy(s, k.root, kind, &public_t, &private_t, &leaked)
        });
        if leaked.get() {
            // A destroy failed: an extractable private key may still exist in this session.
            // Closing the session destroys all of its objects.
            s.retire();
        }
        let (wrapped, public_attrs) = result?;
        check_wrapped_len(&wrapped)?;
        let public_spki_der = build_spki(kind, &public_attrs)?;
        let mut sealed_private = Vec::with_capacity(2 + wrapped.len());
        sealed_private.extend_from_slice(&[FORMAT_KWP_PRIVATE, kind.byte()]);
        sealed_private.extend_from_slice(&wrapped);
        Ok(SealedKeyPair {
            sealed_private,
            public_spki_der,
        })
    }

    /// Sign a digest with a sealed private key, inside the token.
    ///
    /// * [`Error::BadSealedKey`]: not a sealed private key, or it does not unwrap.
    /// * [`Error::WrongKeyKind`]: an RSA mechanism with an EC key or vice versa.
    /// * [`Error::BadLength`]: `digest` is not 32 bytes (RSA) or not 32..=64 bytes (ECDSA).
    /// * [`Error::Unsupported`]: the token cannot do this (see [`Pkcs11Hsm::capabilities`]).
    ///
    /// RSA signatures are 256 bytes; ECDSA signatures are DER `ECDSA-Sig-Value`.
    pub fn sign(
        &self,
        sealed_private: &[u8],
        mech: SignMechanism,
        digest: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let (kind, wrapped) = parse_private_blob(sealed_private)?;
        if mech.wants_rsa() != kind.is_rsa() {
            return Err(Error::WrongKeyKind {
                kind,
                mechanism: mech.name(),
            });
        }
        self.caps.require_kind(kind)?;
        let data = sign_input(mech, digest)?;
        if mech == SignMechanism::RsaPssSha256 && !self.caps.rsa_pss {
            return Err(Error::Unsupported(
                "RSA-PSS (SHA-256) is not supported by this token",
            ));
        }
        let mechanism = sign_mechanism(mech);
        let mut s = self.pool.checkout()?;
        let raw = with_cached_key(
            &mut s,
            sealed_private,
            |s| unwrap_private_key(s, kind, wrapped),
            |s, key| s.call("C_SignInit/C_Sign", |s, _| s.sign(&mechanism, key, &data)),
        )?;
        finish_signature(kind, raw)
    }

    /// Decrypt an RSA ciphertext with a sealed RSA private key, inside the token.
    ///
    /// A ciphertext that does not decrypt (bad padding, wrong length, wrong key) is
    /// [`Error::AuthenticationFailed`], never garbage. [`Error::Unsupported`] if the token
    /// cannot do the padding (SoftHSM2 2.6.1: OAEP with SHA-256); [`Error::WrongKeyKind`] for
    /// an EC key.
    pub fn rsa_decrypt(
        &self,
        sealed_private: &[u8],
        mech: RsaDecryptMechanism,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let (kind, wrapped) = parse_private_blob(sealed_private)?;
        if !kind.is_rsa() {
            return Err(Error::WrongKeyKind {
                kind,
                mechanism: "RSA decryption",
            });
        }
        self.caps.require_kind(kind)?;
        self.caps.require_rsa_decrypt(mech)?;
        // An RSA ciphertext is exactly one modulus long; anything else cannot decrypt.
        if ciphertext.len() != RSA2048_LEN {
            return Err(Error::AuthenticationFailed);
        }
        let mechanism = mech.mechanism();
        let mut s = self.pool.checkout()?;
        with_cached_key(
            &mut s,
            sealed_private,
            |s| unwrap_private_key(s, kind, wrapped),
            |s, key| {
                s.call("C_DecryptInit/C_Decrypt", |s, _| {
                    s.decrypt(&mechanism, key, ciphertext)
                })
                .map(Zeroizing::new)
                .map_err(map_decrypt_error)
            },
        )
    }
}

/// Validate the digest and build what the token signs.
fn sign_input(mech: SignMechanism, digest: &[u8]) -> Result<Vec<u8>, Error> {
    match mech {
        SignMechanism::RsaPkcs1Sha256 if digest.len() == SHA256_LEN => {
            let mut data = SHA256_DIGEST_INFO_PREFIX.to_vec();
            data.extend_from_slice(digest);
            Ok(data)
        }
        SignMechanism::RsaPssSha256 if digest.len() == SHA256_LEN => Ok(digest.to_vec()),
        SignMechanism::Ecdsa if ECDSA_DIGEST_LEN.contains(&digest.len()) => Ok(digest.to_vec()),
        _ => Err(Error::BadLength),
    }
}

fn sign_mechanism(mech: SignMechanism) -> Mechanism<'static> {
    match mech {
        SignMechanism::RsaPkcs1Sha256 => Mechanism::RsaPkcs,
        SignMechanism::RsaPssSha256 => Mechanism::RsaPkcsPss(PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: (SHA256_LEN as u64).into(),
        }),
        SignMechanism::Ecdsa => Mechanism::Ecdsa,
    }
}

/// Check the token's raw signature and convert ECDSA r||s to DER.
fn finish_signature(kind: AsymKind, raw: Vec<u8>) -> Result<Vec<u8>, Error> {
    if kind.is_rsa() {
        if raw.len() != RSA2048_LEN {
            return Err(Error::TokenOutput(format!(
                "RSA-2048 signature is {} bytes",
                raw.len()
            )));
        }
        return Ok(raw);
    }
    let n = kind.ec_scalar_len();
    if raw.len() != 2 * n {
        return Err(Error::TokenOutput(format!(
            "{kind:?} ECDSA signature is {} bytes, expected r||s of {}",
            raw.len(),
            2 * n
        )));
    }
    ecdsa_raw_to_der(&raw[..n], &raw[n..])
}

/// `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` from big-endian unsigned r and s.
fn ecdsa_raw_to_der(r: &[u8], s: &[u8]) -> Result<Vec<u8>, Error> {
    let mut seq = SequenceOf::<UintRef<'_>, 2>::new();
    // UintRef strips leading zeros and adds the 0x00 sign octet where needed.
    seq.add(UintRef::new(r).map_err(der_error)?)
        .map_err(der_error)?;
    seq.add(UintRef::new(s).map_err(der_error)?)
        .map_err(der_error)?;
    seq.to_der().map_err(der_error)
}

/// Generate a key pair, wrap the private half under `root`, read the public half's
/// attributes, and destroy both objects, whatever happened in between.
///
/// Restartable as `SessionGuard::call` requires: it leaves nothing behind unless a destroy
/// fails, which it reports through `leaked` so the caller can close the session.
fn generate_wrap_destroy(
    session: &Session,
    root: ObjectHandle,
    kind: AsymKind,
    public_t: &[Attribute],
    private_t: &[Attribute],
    leaked: &Cell<bool>,
) -> Result<(Vec<u8>, Vec<Attribute>), CryptokiError> {
    let (public, private) =
        session.generate_key_pair(&kind.keygen_mechanism(), public_t, private_t)?;
    let wrapped = session.wrap_key(&Mechanism::AesKeyWrapPad, root, private);
    let attrs = session.get_attributes(public, public_attribute_types(kind));
    // Private first: it is the one that matters.
    let destroyed_private = session.destroy_object(private);
    let destroyed_public = session.destroy_object(public);
    if destroyed_private.is_err() || destroyed_public.is_err() {
        leaked.set(true);
    }
    destroyed_private?;
    destroyed_public?;
    Ok((wrapped?, attrs?))
}

fn public_attribute_types(kind: AsymKind) -> &'static [AttributeType] {
    if kind.is_rsa() {
        &[AttributeType::Modulus, AttributeType::PublicExponent]
    } else {
        &[AttributeType::EcPoint]
    }
}

/// DER SubjectPublicKeyInfo from the public key object's attributes.
fn build_spki(kind: AsymKind, attrs: &[Attribute]) -> Result<Vec<u8>, Error> {
    let missing = |what| Error::TokenOutput(format!("public key object has no {what}"));
    if kind.is_rsa() {
        let modulus = attrs
            .iter()
            .find_map(|a| match a {
                Attribute::Modulus(m) => Some(m.as_slice()),
                _ => None,
            })
            .ok_or_else(|| missing("CKA_MODULUS"))?;
        let exponent = attrs
            .iter()
            .find_map(|a| match a {
                Attribute::PublicExponent(e) => Some(e.as_slice()),
                _ => None,
            })
            .ok_or_else(|| missing("CKA_PUBLIC_EXPONENT"))?;
        rsa_spki(modulus, exponent)
    } else {
        let point = attrs
            .iter()
            .find_map(|a| match a {
                Attribute::EcPoint(p) => Some(p.as_slice()),
                _ => None,
            })
            .ok_or_else(|| missing("CKA_EC_POINT"))?;
        ec_spki(kind, point)
    }
}

fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Result<Vec<u8>, Error> {
    let modulus = UintRef::new(modulus).map_err(der_error)?;
    let exponent = UintRef::new(exponent).map_err(der_error)?;
    // UintRef strips leading zero bytes, so this is the true size: a full 2048-bit modulus.
    let n = modulus.as_bytes();
    if n.len() != RSA2048_LEN || n[0] & 0x80 == 0 {
        return Err(Error::TokenOutput(format!(
            "RSA modulus is not 2048 bits ({} bytes)",
            n.len()
        )));
    }
    if exponent.as_bytes() != templates::RSA_PUBLIC_EXPONENT {
        return Err(Error::TokenOutput(format!(
            "RSA public exponent is {:02x?}, expected 65537",
            exponent.as_bytes()
        )));
    }
    let rsa_public_key = pkcs1::RsaPublicKey {
        modulus,
        public_exponent: exponent,
    }
    .to_der()
    .map_err(der_error)?;
    SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef {
            oid: pkcs1::ALGORITHM_OID,
            parameters: Some(AnyRef::NULL),
        },
        subject_public_key: BitStringRef::from_bytes(&rsa_public_key).map_err(der_error)?,
    }
    .to_der()
    .map_err(der_error)
}

/// `CKA_EC_POINT` is specified as a DER OCTET STRING holding the SEC1 point (SoftHSM2 does
/// that); some tokens return the bare point. The point is checked to lie on the curve.
fn ec_spki(kind: AsymKind, ec_point: &[u8]) -> Result<Vec<u8>, Error> {
    let point = match OctetStringRef::from_der(ec_point) {
        Ok(os) => os.as_bytes(),
        Err(_) => ec_point,
    };
    let uncompressed_len = 1 + 2 * kind.ec_scalar_len();
    if point.len() != uncompressed_len || point[0] != 0x04 {
        return Err(Error::TokenOutput(format!(
            "{kind:?} CKA_EC_POINT is not an uncompressed point ({} bytes)",
            point.len()
        )));
    }
    let invalid = |_| Error::TokenOutput(format!("{kind:?} public point is not on the curve"));
    let doc = match kind {
        AsymKind::EcP256 => p256::PublicKey::from_sec1_bytes(point)
            .map_err(invalid)?
            .to_public_key_der(),
        AsymKind::EcP384 => p384::PublicKey::from_sec1_bytes(point)
            .map_err(invalid)?
            .to_public_key_der(),
        AsymKind::Rsa2048 => unreachable!("ec_spki called for RSA"),
    }
    .map_err(|e| Error::TokenOutput(format!("SPKI encoding failed: {e}")))?;
    Ok(doc.into_vec())
}

/// Return values after which a capability trial must not simply report "unsupported": the
/// session or token is in trouble, and `open` should fail instead.
fn is_trial_fatal(e: &CryptokiError) -> bool {
    matches!(
        rv_of(e),
        Some(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::HostMemory
                | RvError::TokenNotPresent
                | RvError::UserNotLoggedIn
                | RvError::CryptokiNotInitialized
        )
    ) || !matches!(e, CryptokiError::Pkcs11(..))
}

/// `Ok(true)`: worked; `Ok(false)`: the token refused; `Err`: the token is in trouble.
fn trial<T>(r: Result<T, CryptokiError>, what: &'static str) -> Result<Option<T>, Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_trial_fatal(&e) => Err(Error::pkcs11(what)(e)),
        Err(_) => Ok(None),
    }
}

/// Establish [`Capabilities`] on a logged-in session: mechanism list first, then the full
/// generate / wrap / unwrap / use cycle with throw-away session objects for every kind the
/// list allows.
///
/// Every object created is destroyed before returning `Ok`. On `Err` the caller drops the
/// session, which destroys whatever may be left.
pub(crate) fn probe_capabilities(
    pkcs11: &Pkcs11,
    slot: Slot,
    session: &Session,
    root: ObjectHandle,
) -> Result<Capabilities, Error> {
    let listed = pkcs11
        .get_mechanism_list(slot)
        .map_err(Error::pkcs11("C_GetMechanismList"))?;
    let can_generate = |mech: MechanismType, bits: u64| {
        listed.contains(&mech)
            && pkcs11.get_mechanism_info(slot, mech).is_ok_and(|i| {
                i.generate_key_pair()
                    && (i.min_key_size() as u64..=i.max_key_size() as u64).contains(&bits)
            })
    };
    let mut caps = Capabilities::default();
    for kind in AsymKind::ALL {
        let (keygen, op) = if kind.is_rsa() {
            (
                MechanismType::RSA_PKCS_KEY_PAIR_GEN,
                MechanismType::RSA_PKCS,
            )
        } else {
            (MechanismType::ECC_KEY_PAIR_GEN, MechanismType::ECDSA)
        };
        if !(listed.contains(&MechanismType::AES_KEY_WRAP_PAD)
            && listed.contains(&op)
            && can_generate(keygen, kind.bits()))
        {
            continue;
        }
        trial_kind(session, root, kind, &listed, &mut caps)?;
    }
    Ok(caps)
}

/// Run the full cycle for one kind and record what worked in `caps`.
fn trial_kind(
    session: &Session,
    root: ObjectHandle,
    kind: AsymKind,
    listed: &[MechanismType],
    caps: &mut Capabilities,
) -> Result<(), Error> {
    let (public_t, private_t) = templates::generated_key_pair_templates(kind)?;
    let Some((public, private)) = trial(
        session.generate_key_pair(&kind.keygen_mechanism(), &public_t, &private_t),
        "C_GenerateKeyPair",
    )?
    else {
        return Ok(());
    };
    let result = trial_generated(session, root, kind, public, private, listed, caps);
    session
        .destroy_object(private)
        .map_err(Error::pkcs11("C_DestroyObject"))?;
    session
        .destroy_object(public)
        .map_err(Error::pkcs11("C_DestroyObject"))?;
    result
}

fn trial_generated(
    session: &Session,
    root: ObjectHandle,
    kind: AsymKind,
    public: ObjectHandle,
    private: ObjectHandle,
    listed: &[MechanismType],
    caps: &mut Capabilities,
) -> Result<(), Error> {
    let Some(wrapped) = trial(
        session.wrap_key(&Mechanism::AesKeyWrapPad, root, private),
        "C_WrapKey",
    )?
    else {
        return Ok(());
    };
    let attrs = session
        .get_attributes(public, public_attribute_types(kind))
        .map_err(Error::pkcs11("C_GetAttributeValue"))?;
    if check_wrapped_len(&wrapped).is_err() || build_spki(kind, &attrs).is_err() {
        return Ok(());
    }
    let template = templates::unwrapped_private_key_template(kind);
    let Some(key) = trial(
        session.unwrap_key(&Mechanism::AesKeyWrapPad, root, &wrapped, &template),
        "C_UnwrapKey",
    )?
    else {
        return Ok(());
    };
    let result = trial_unwrapped(session, kind, public, key, listed, caps);
    session
        .destroy_object(key)
        .map_err(Error::pkcs11("C_DestroyObject"))?;
    result
}

fn trial_unwrapped(
    session: &Session,
    kind: AsymKind,
    public: ObjectHandle,
    key: ObjectHandle,
    listed: &[MechanismType],
    caps: &mut Capabilities,
) -> Result<(), Error> {
    if vet_unwrapped(session, kind, key).is_err() {
        return Ok(());
    }
    let digest = [0x5a; SHA256_LEN];
    let signs = |mech: SignMechanism| -> Result<bool, Error> {
        let data = sign_input(mech, &digest)?;
        Ok(
            trial(session.sign(&sign_mechanism(mech), key, &data), "C_Sign")?
                .is_some_and(|raw| finish_signature(kind, raw).is_ok()),
        )
    };
    // Encrypt with the token's public key, decrypt with the unwrapped private key.
    let round_trips = |mech: RsaDecryptMechanism| -> Result<bool, Error> {
        let m = mech.mechanism();
        let msg = b"keyward capability probe";
        let Some(ct) = trial(session.encrypt(&m, public, msg), "C_Encrypt")? else {
            return Ok(false);
        };
        Ok(trial(session.decrypt(&m, key, &ct), "C_Decrypt")?
            .is_some_and(|pt| pt.as_slice() == msg))
    };
    match kind {
        AsymKind::EcP256 => caps.ec_p256 = signs(SignMechanism::Ecdsa)?,
        AsymKind::EcP384 => caps.ec_p384 = signs(SignMechanism::Ecdsa)?,
        AsymKind::Rsa2048 => {
            caps.rsa_2048 = signs(SignMechanism::RsaPkcs1Sha256)?
                && round_trips(RsaDecryptMechanism::Pkcs1v15)?;
            if !caps.rsa_2048 {
                return Ok(());
            }
            if listed.contains(&MechanismType::RSA_PKCS_PSS) {
                caps.rsa_pss = signs(SignMechanism::RsaPssSha256)?;
            }
            if listed.contains(&MechanismType::RSA_PKCS_OAEP) {
                caps.rsa_oaep_sha1 = round_trips(RsaDecryptMechanism::OaepSha1)?;
                caps.rsa_oaep_sha256 = round_trips(RsaDecryptMechanism::OaepSha256)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn digest_lengths_are_checked() {
        for (mech, ok, bad) in [
            (
                SignMechanism::RsaPkcs1Sha256,
                &[32][..],
                &[0, 31, 33, 48][..],
            ),
            (SignMechanism::RsaPssSha256, &[32], &[0, 31, 33, 64]),
            (SignMechanism::Ecdsa, &[32, 48, 64], &[0, 20, 31, 65]),
        ] {
            for &n in ok {
                assert!(sign_input(mech, &vec![1; n]).is_ok(), "{mech:?} {n}");
            }
            for &n in bad {
                assert!(
                    matches!(sign_input(mech, &vec![1; n]), Err(Error::BadLength)),
                    "{mech:?} {n}"
                );
            }
        }
        let data = sign_input(SignMechanism::RsaPkcs1Sha256, &[7; 32]).unwrap();
        assert_eq!(data.len(), 51);
        assert_eq!(&data[19..], &[7; 32]);
    }

    #[test]
    fn ecdsa_der_conversion() {
        // High bit set in r gets a 0x00 sign octet; leading zeros of s are stripped.
        let r = [0x80u8; 32];
        let mut s = [0u8; 32];
        s[31] = 0x05;
        let der = ecdsa_raw_to_der(&r, &s).unwrap();
        let mut want = vec![0x30, 2 + 33 + 3, 0x02, 33, 0x00];
        want.extend_from_slice(&r);
        want.extend_from_slice(&[0x02, 0x01, 0x05]);
        assert_eq!(der, want);
    }
}

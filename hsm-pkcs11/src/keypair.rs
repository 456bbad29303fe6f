//! Asymmetric key pairs (RSA-2048, ECDSA P-256/P-384) generated in the token and held only
//! sealed, and the SubjectPublicKeyInfo of their public half.
//!
//! # Life of a key pair
//!
//! 1. `C_GenerateKeyPair` creates both halves as *session* objects. The private half is
//!    `CKA_SENSITIVE=true` (its components can never be read) and `CKA_EXTRACTABLE=true`, only
//!    so that it can be wrapped once.
//! 2. `C_WrapKey(RFC 5649, root)` (`keywrap`) seals it. SoftHSM2 encodes the private key as
//!    PKCS#8 `PrivateKeyInfo` and wraps that with RFC 5649 key wrap.
//! 3. The SubjectPublicKeyInfo is built on the host from the public object's attributes
//!    (`CKA_MODULUS`/`CKA_PUBLIC_EXPONENT`, or `CKA_EC_POINT`), and both objects are destroyed
//!    on every path. The sealed blob is `0x04 || kind || AES-KWP(root, PKCS#8)`.
//! 4. To use it, `C_UnwrapKey` brings it back as a sensitive, **non-extractable** session
//!    object (the root key's `CKA_UNWRAP_TEMPLATE` refuses anything else, exactly as for AES
//!    data keys), cached per session like the AES keys. Sign/decrypt run inside the token.
//!
//! The sealed-blob format is checked in `blob`; unwrapping for use is in `unwrap`.

use std::cell::Cell;

use cryptoki::error::Error as CryptokiError;
use cryptoki::object::{Attribute, AttributeType};
use cryptoki::session::Session;
use der::asn1::{AnyRef, BitStringRef, OctetStringRef, UintRef};
use der::{Decode, Encode};
use spki::{AlgorithmIdentifierRef, EncodePublicKey, SubjectPublicKeyInfoRef};

use crate::blob::{check_wrapped_len, FORMAT_KWP_PRIVATE};
use crate::error::{der_error, Error};
use crate::hsm::Pkcs11Hsm;
use crate::keys::RootKey;
use crate::kind::{AsymKind, RSA2048_LEN};
use crate::templates;

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

impl Pkcs11Hsm {
    /// Generate a key pair inside the token; return the private key sealed (wrapped under the
    /// root key) and the public key as a DER SubjectPublicKeyInfo.
    ///
    /// Both token objects are session objects and are destroyed before this returns, on every
    /// path. Returns [`Error::Unsupported`] if [`Pkcs11Hsm::capabilities`] says the token
    /// cannot do `kind`.
    pub fn generate_key_pair_sealed(&self, kind: AsymKind) -> Result<SealedKeyPair, Error> {
        self.caps.require_kind(kind)?;
        let (public_t, private_t) = templates::generated_key_pair_templates(kind)?;
        self.pool.run(|s| {
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
        })
    }
}

/// Generate a key pair, wrap the private half under `root`, read the public half's
/// attributes, and destroy both objects, whatever happened in between.
///
/// Restartable as `SessionGuard::call` requires: it leaves nothing behind unless a destroy
/// fails, which it reports through `leaked` so the caller can close the session.
fn generate_wrap_destroy(
    session: &Session,
    root: RootKey,
    kind: AsymKind,
    public_t: &[Attribute],
    private_t: &[Attribute],
    leaked: &Cell<bool>,
) -> Result<(Vec<u8>, Vec<Attribute>), CryptokiError> {
    let (public, private) =
        session.generate_key_pair(&kind.keygen_mechanism(), public_t, private_t)?;
    let wrapped = root.wrap(session, private);
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

pub(crate) fn public_attribute_types(kind: AsymKind) -> &'static [AttributeType] {
    if kind.is_rsa() {
        &[AttributeType::Modulus, AttributeType::PublicExponent]
    } else {
        &[AttributeType::EcPoint]
    }
}

/// DER SubjectPublicKeyInfo from the public key object's attributes.
pub(crate) fn build_spki(kind: AsymKind, attrs: &[Attribute]) -> Result<Vec<u8>, Error> {
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

//! Object templates for the key hierarchy.
//!
//! Kept in one place so the security-relevant attribute choices can be reviewed together.

use std::ffi::c_void;
use std::mem::{size_of, size_of_val};

use cryptoki::mechanism::MechanismType;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki_sys::{
    CKA_EXTRACTABLE, CKA_PRIVATE, CKA_SENSITIVE, CKA_TOKEN, CKA_UNWRAP_TEMPLATE, CK_ATTRIBUTE,
    CK_ATTRIBUTE_TYPE, CK_BBOOL, CK_FALSE, CK_TRUE, CK_ULONG,
};

use crate::error::der_error;
use crate::error::Error;
use crate::keywrap::{allowed_mechanism, KeyWrap};
use crate::kind::AsymKind;

/// Label of the root key (wrap/unwrap of AES data keys).
pub const ROOT_KEY_LABEL: &str = "keyward-root";
/// Label of the seal key (AES-GCM encrypt/decrypt of software-level key material).
pub const SEAL_KEY_LABEL: &str = "keyward-seal";

/// AES-256 key length in bytes.
pub(crate) const AES256_LEN: usize = 32;

/// `CKA_UNWRAP_TEMPLATE` as a cryptoki attribute type.
///
/// cryptoki 0.12 has no typed variant for the array-valued attributes (`CKA_WRAP_TEMPLATE`,
/// `CKA_UNWRAP_TEMPLATE`, `CKA_DERIVE_TEMPLATE`), and `AttributeType::try_from` rejects the
/// constant. `AttributeType::VendorDefined(x)` is converted to the raw `CK_ATTRIBUTE_TYPE`
/// `x` without any range check, so it is the supported escape hatch for passing any type.
pub(crate) const UNWRAP_TEMPLATE_TYPE: AttributeType =
    AttributeType::VendorDefined(CKA_UNWRAP_TEMPLATE);

// The nested template's values must live at stable addresses for as long as the outer
// template is in use; statics are the simplest way to guarantee that. The token only reads them.
static BBOOL_TRUE: CK_BBOOL = CK_TRUE;
static BBOOL_FALSE: CK_BBOOL = CK_FALSE;

// We copy CK_ATTRIBUTE values into a byte buffer below; that is only sound if the struct has
// no padding bytes (uninitialised padding must not be read). Holds on every platform
// cryptoki-sys supports (natural alignment on Unix, pack(1) on Windows).
const _: () =
    assert!(size_of::<CK_ATTRIBUTE>() == 2 * size_of::<CK_ULONG>() + size_of::<*mut c_void>());

/// The root key's `CKA_UNWRAP_TEMPLATE`, exactly: every key unwrapped under the root key gets
/// these values, and start-up refuses a root whose nested template differs in any way.
///
/// * SENSITIVE=true, EXTRACTABLE=false: otherwise a PIN holder unwraps a sealed blob and reads
///   (or wraps out) `CKA_VALUE`.
/// * PRIVATE=true, TOKEN=false: otherwise a PIN holder unwraps a sealed blob as a *public token
///   object*, which SoftHSM2 writes unencrypted to its token directory (only private objects
///   are encrypted under the user PIN), where anyone who can read the directory finds it.
pub(crate) const UNWRAP_TEMPLATE: [(CK_ATTRIBUTE_TYPE, bool); 4] = [
    (CKA_SENSITIVE, true),
    (CKA_EXTRACTABLE, false),
    (CKA_PRIVATE, true),
    (CKA_TOKEN, false),
];

/// Build the `CKA_UNWRAP_TEMPLATE` attribute carrying [`UNWRAP_TEMPLATE`].
///
/// An array attribute's value is a `CK_ATTRIBUTE[]`, so we serialise the nested
/// `CK_ATTRIBUTE` structs (type, pointer to a static CK_BBOOL, length 1) into the byte vector
/// carried by `Attribute::VendorDefined`. cryptoki passes that vector's pointer and length
/// through unchanged as `pValue`/`ulValueLen`, which is exactly what the token expects.
pub(crate) fn unwrap_template_attribute() -> Result<Attribute, Error> {
    let nested = UNWRAP_TEMPLATE.map(|(type_, value)| CK_ATTRIBUTE {
        type_,
        pValue: if value { &BBOOL_TRUE } else { &BBOOL_FALSE } as *const CK_BBOOL as *mut c_void,
        ulValueLen: size_of::<CK_BBOOL>() as CK_ULONG,
    });
    // SAFETY: `nested` is a fully initialised array of a padding-free POD struct (asserted
    // above), so viewing it as bytes reads only initialised memory.
    let bytes =
        unsafe { std::slice::from_raw_parts(nested.as_ptr().cast::<u8>(), size_of_val(&nested)) }
            .to_vec();
    // The token reads the buffer as CK_ATTRIBUTE[]; make sure that is an aligned read. The
    // global allocator returns at least 16-byte-aligned blocks for a 48-byte request, so
    // this never fires in practice, but if it did we would rather fail than hand C code a
    // misaligned struct pointer.
    if (bytes.as_ptr() as usize) % std::mem::align_of::<CK_ATTRIBUTE>() != 0 {
        return Err(Error::InvalidConfig(
            "allocator returned a misaligned buffer for CKA_UNWRAP_TEMPLATE",
        ));
    }
    Ok(Attribute::VendorDefined((UNWRAP_TEMPLATE_TYPE, bytes)))
}

/// Attributes shared by the two long-lived token keys.
fn token_key_common(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen((AES256_LEN as cryptoki_sys::CK_ULONG).into()),
        Attribute::Token(true),
        // Private: invisible without the user PIN.
        Attribute::Private(true),
        // Sensitive + !Extractable: CKA_VALUE can never be read or wrapped out, and the token
        // then also reports CKA_ALWAYS_SENSITIVE / CKA_NEVER_EXTRACTABLE, which we verify.
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        // !Modifiable: a PIN holder cannot later strip the unwrap template or flip usage flags.
        Attribute::Modifiable(false),
        // !Copyable: on a token that lets C_CopyObject override attributes, a PIN holder could
        // mint a twin without CKA_UNWRAP_TEMPLATE and unwrap blobs with it as extractable.
        // (SoftHSM2 already refuses attribute changes when copying a !Modifiable key; this is
        // defence in depth for other tokens.)
        Attribute::Copyable(false),
        // !Destroyable: one C_DestroyObject by a PIN holder would otherwise lose every key
        // sealed under it (SoftHSM2 2.6.1 honours it: C_DestroyObject answers
        // CKR_ACTION_PROHIBITED; tested in tests/softhsm.rs). Note that the token's SO can
        // still re-initialise the whole token; the store's record of the root's identity
        // turns that into a clear start-up error rather than a silently fresh root.
        Attribute::Destroyable(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

/// Template for the root (wrap/unwrap only) key, allowed only `key_wrap`'s mechanism.
pub(crate) fn root_key_template(key_wrap: KeyWrap) -> Result<Vec<Attribute>, Error> {
    let mut t = token_key_common(ROOT_KEY_LABEL);
    t.extend([
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
        // No encrypt/decrypt: AES-KWP is built from raw AES, so with CKA_DECRYPT a PIN holder
        // could run C_Decrypt(CKM_AES_ECB) on a wrapped blob and undo the key wrap by hand,
        // side-stepping the unwrap template. (SoftHSM2 defaults CKA_DECRYPT to true for AES
        // keys, so it must be set explicitly.)
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        // Only the one wrapping mechanism we use (RFC 5649 under the number the token gives it).
        allowed_mechanism(key_wrap.mechanism()),
        unwrap_template_attribute()?,
    ]);
    Ok(t)
}

/// Template for the seal key (encrypt/decrypt of software-level material).
pub(crate) fn seal_key_template() -> Vec<Attribute> {
    let mut t = token_key_common(SEAL_KEY_LABEL);
    t.extend([
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::AllowedMechanisms(vec![MechanismType::AES_GCM]),
    ]);
    t
}

/// Template for a freshly generated data key that is about to be wrapped.
///
/// It must be extractable (C_WrapKey refuses otherwise) but stays sensitive, so its value is
/// never readable with C_GetAttributeValue; it is a session object and destroyed right after
/// wrapping.
pub(crate) fn generated_data_key_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen((AES256_LEN as cryptoki_sys::CK_ULONG).into()),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
    ]
}

/// Template for unwrapping a sealed data key into a session object. Exactly the attributes
/// the design calls for; the root key's unwrap template would reject anything weaker anyway.
pub(crate) fn unwrapped_data_key_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
    ]
}

/// RSA public exponent F4 = 65537, big-endian.
pub(crate) const RSA_PUBLIC_EXPONENT: [u8; 3] = [0x01, 0x00, 0x01];

/// (public, private) templates for C_GenerateKeyPair of a key pair that is about to be sealed.
///
/// Both halves are session objects. The private half must be extractable (C_WrapKey refuses
/// otherwise) but is sensitive, so its components can never be read with
/// C_GetAttributeValue; it is wrapped once and destroyed straight away, together with the
/// public half (whose attributes we read to build the SubjectPublicKeyInfo).
pub(crate) fn generated_key_pair_templates(
    kind: AsymKind,
) -> Result<(Vec<Attribute>, Vec<Attribute>), Error> {
    let mut public = vec![
        Attribute::Token(false),
        Attribute::Private(false),
        Attribute::Verify(true),
    ];
    let mut private = vec![
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::Sign(true),
        // Usages we never need on the short-lived generated object.
        Attribute::Derive(false),
        Attribute::Unwrap(false),
    ];
    match kind.ec_params_der().map_err(der_error)? {
        None => {
            public.extend([
                Attribute::Encrypt(true),
                Attribute::ModulusBits(kind.bits().into()),
                Attribute::PublicExponent(RSA_PUBLIC_EXPONENT.to_vec()),
            ]);
            private.push(Attribute::Decrypt(true));
        }
        Some(params) => public.push(Attribute::EcParams(params)),
    }
    Ok((public, private))
}

/// Template for unwrapping a sealed private key into a session object: exactly the
/// attributes the design calls for. The key type comes from the blob's kind byte; a blob whose
/// kind byte was altered fails to unwrap or fails the check in `unwrap::vet_unwrapped`.
///
/// `CKA_UNWRAP=false` is explicit: SoftHSM2 2.6.1 (measured) defaults it to true on unwrapped
/// private keys. Use as an unwrapping key (BYOK import) gets its own object, see
/// [`unwrapping_private_key_template`].
pub(crate) fn unwrapped_private_key_template(kind: AsymKind) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(kind.key_type()),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Unwrap(false),
    ];
    if kind.is_rsa() {
        t.push(Attribute::Decrypt(true));
    }
    t
}

/// Template for unwrapping a sealed RSA private key as the *unwrapping* key of a BYOK import
/// (`Pkcs11Hsm::import_wrapped_aes256`). Same protection as
/// [`unwrapped_private_key_template`], but the only usage is `CKA_UNWRAP`: this object is
/// cached under its own cache key, apart from the sign/decrypt object of the same blob.
pub(crate) fn unwrapping_private_key_template(kind: AsymKind) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(kind.key_type()),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Unwrap(true),
        Attribute::Sign(false),
        Attribute::Decrypt(false),
    ]
}

/// Template for the AES key a BYOK import unwraps with the caller's RSA wrapping key.
///
/// It must be extractable, only so that it can be wrapped under the root key once (the
/// wrapping RSA key has no unwrap template, so the token allows this); it is sensitive, so its
/// value is never readable, and it is a session object destroyed right after wrapping.
/// `CKA_ENCRYPT` is for the key check value (AES-ECB of a zero block).
pub(crate) fn imported_data_key_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::Encrypt(true),
        Attribute::Decrypt(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
    ]
}

/// Find template for one of our token keys.
pub(crate) fn find_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

//! The attributes of the key objects, and the token's mechanism table.

use crate::keys::{Class, KeyInfo, Kind, Public};
use cryptoki_sys::*;

/// The outcome of reading one attribute.
pub enum Attr {
    Value(Vec<u8>),
    Sensitive,
    Invalid,
}

fn ulong(v: CK_ULONG) -> Attr {
    Attr::Value(v.to_ne_bytes().to_vec())
}

fn bool_attr(v: bool) -> Attr {
    Attr::Value(vec![if v { CK_TRUE } else { CK_FALSE }])
}

/// The value of attribute `t` of the `class` object of `k`.
pub fn attribute(k: &KeyInfo, class: Class, login_required: bool, t: CK_ATTRIBUTE_TYPE) -> Attr {
    let private = class == Class::Private;
    let common = match t {
        CKA_CLASS => Some(ulong(if private {
            CKO_PRIVATE_KEY
        } else {
            CKO_PUBLIC_KEY
        })),
        CKA_TOKEN | CKA_LOCAL => Some(bool_attr(true)),
        CKA_PRIVATE => Some(bool_attr(private && login_required)),
        CKA_MODIFIABLE | CKA_COPYABLE | CKA_DESTROYABLE | CKA_DERIVE => Some(bool_attr(false)),
        CKA_LABEL => Some(Attr::Value(k.alias.as_bytes().to_vec())),
        CKA_ID => Some(Attr::Value(k.key_id.as_bytes().to_vec())),
        CKA_KEY_TYPE => Some(ulong(k.kind.key_type())),
        CKA_KEY_GEN_MECHANISM => Some(ulong(match k.kind {
            Kind::Rsa2048 => CKM_RSA_PKCS_KEY_PAIR_GEN,
            _ => CKM_EC_KEY_PAIR_GEN,
        })),
        CKA_START_DATE | CKA_END_DATE | CKA_SUBJECT => Some(Attr::Value(Vec::new())),
        CKA_PUBLIC_KEY_INFO => Some(Attr::Value(k.spki.clone())),
        CKA_ALLOWED_MECHANISMS => Some(Attr::Value(
            allowed_mechanisms(k)
                .iter()
                .flat_map(|m| m.to_ne_bytes())
                .collect(),
        )),
        _ => None,
    };
    if let Some(a) = common {
        return a;
    }
    let key_specific = match (&k.public, t) {
        (Public::Rsa { modulus, .. }, CKA_MODULUS) => Some(Attr::Value(modulus.clone())),
        (Public::Rsa { exponent, .. }, CKA_PUBLIC_EXPONENT) => Some(Attr::Value(exponent.clone())),
        (Public::Rsa { .. }, CKA_MODULUS_BITS) => Some(ulong(k.kind.bits() as CK_ULONG)),
        (Public::Ec { params, .. }, CKA_EC_PARAMS) => Some(Attr::Value(params.clone())),
        (Public::Ec { point, .. }, CKA_EC_POINT) => Some(Attr::Value(point.clone())),
        _ => None,
    };
    if let Some(a) = key_specific {
        return a;
    }
    if private {
        match t {
            CKA_SIGN => bool_attr(k.sign),
            CKA_DECRYPT => bool_attr(!k.sign),
            CKA_SIGN_RECOVER | CKA_UNWRAP | CKA_ALWAYS_AUTHENTICATE | CKA_WRAP_WITH_TRUSTED => {
                bool_attr(false)
            }
            CKA_SENSITIVE | CKA_ALWAYS_SENSITIVE | CKA_NEVER_EXTRACTABLE => bool_attr(true),
            CKA_EXTRACTABLE => bool_attr(false),
            // The private key never leaves the daemon's HSM.
            CKA_PRIVATE_EXPONENT | CKA_PRIME_1 | CKA_PRIME_2 | CKA_EXPONENT_1 | CKA_EXPONENT_2
            | CKA_COEFFICIENT | CKA_VALUE => Attr::Sensitive,
            _ => Attr::Invalid,
        }
    } else {
        match t {
            CKA_VERIFY => bool_attr(k.sign),
            // Encryption to an RSA decryption key happens with its public key, in the
            // application; the module does not offer C_Encrypt.
            CKA_ENCRYPT | CKA_WRAP | CKA_VERIFY_RECOVER | CKA_TRUSTED => bool_attr(false),
            _ => Attr::Invalid,
        }
    }
}

fn allowed_mechanisms(k: &KeyInfo) -> Vec<CK_MECHANISM_TYPE> {
    match (k.kind, k.sign) {
        (Kind::Rsa2048, true) => vec![
            CKM_RSA_PKCS,
            CKM_SHA256_RSA_PKCS,
            CKM_RSA_PKCS_PSS,
            CKM_SHA256_RSA_PKCS_PSS,
        ],
        (Kind::Rsa2048, false) => vec![CKM_RSA_PKCS, CKM_RSA_PKCS_OAEP],
        _ => vec![CKM_ECDSA, CKM_ECDSA_SHA256, CKM_ECDSA_SHA384],
    }
}

/// The mechanisms of the token, with their key sizes (bits) and flags.
pub fn mechanisms() -> Vec<(CK_MECHANISM_TYPE, CK_ULONG, CK_ULONG, CK_FLAGS)> {
    let ec = CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;
    vec![
        (
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            2048,
            2048,
            CKF_HW | CKF_GENERATE_KEY_PAIR,
        ),
        (
            CKM_EC_KEY_PAIR_GEN,
            256,
            384,
            CKF_HW | CKF_GENERATE_KEY_PAIR | ec,
        ),
        (
            CKM_RSA_PKCS,
            2048,
            2048,
            CKF_HW | CKF_SIGN | CKF_VERIFY | CKF_DECRYPT,
        ),
        (
            CKM_SHA256_RSA_PKCS,
            2048,
            2048,
            CKF_HW | CKF_SIGN | CKF_VERIFY,
        ),
        (CKM_RSA_PKCS_PSS, 2048, 2048, CKF_HW | CKF_SIGN | CKF_VERIFY),
        (
            CKM_SHA256_RSA_PKCS_PSS,
            2048,
            2048,
            CKF_HW | CKF_SIGN | CKF_VERIFY,
        ),
        (CKM_RSA_PKCS_OAEP, 2048, 2048, CKF_HW | CKF_DECRYPT),
        (CKM_ECDSA, 256, 384, CKF_HW | CKF_SIGN | CKF_VERIFY | ec),
        (
            CKM_ECDSA_SHA256,
            256,
            384,
            CKF_HW | CKF_SIGN | CKF_VERIFY | ec,
        ),
        (
            CKM_ECDSA_SHA384,
            256,
            384,
            CKF_HW | CKF_SIGN | CKF_VERIFY | ec,
        ),
    ]
}

//! Entry points: signing, verification, decryption, key pair generation, random numbers, and
//! the functions the token does not offer.
// The names and the safety contract are the PKCS#11 specification's.
#![allow(non_snake_case, clippy::missing_safety_doc)]

use crate::error::{Error, Result};
use crate::ffi::*;
use crate::keys;
use crate::token::Token;
use cryptoki_sys::*;
use std::ffi::c_void;

// ---- signing and verification ----

#[no_mangle]
pub unsafe extern "C" fn C_SignInit(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_SignInit", || {
        let t = token()?;
        t.session_rw(h)?;
        t.sign_init(h, sign_mech(mech)?, key, false)
    })
}

/// The end of a signature: a length query or a too-small buffer keeps the operation active.
unsafe fn sign_out(
    t: &Token,
    h: CK_SESSION_HANDLE,
    data: Option<&[u8]>,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> Result<()> {
    let len = t.sign_len(h)?;
    let sig_len = out(sig_len)?;
    if sig.is_null() {
        *sig_len = len as CK_ULONG;
        return Ok(());
    }
    if (*sig_len as usize) < len {
        *sig_len = len as CK_ULONG;
        return Err(Error::Ck(CKR_BUFFER_TOO_SMALL));
    }
    let s = t.sign(h, data)?;
    write_out(sig, sig_len, &s)
}

#[no_mangle]
pub unsafe extern "C" fn C_Sign(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> CK_RV {
    guard("C_Sign", || {
        let t = token()?;
        let data = slice(data, data_len)?;
        sign_out(&t, h, Some(data), sig, sig_len)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_SignUpdate(
    h: CK_SESSION_HANDLE,
    part: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    guard("C_SignUpdate", || {
        let t = token()?;
        t.sign_update(h, false, slice(part, len)?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_SignFinal(
    h: CK_SESSION_HANDLE,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> CK_RV {
    guard("C_SignFinal", || {
        let t = token()?;
        sign_out(&t, h, None, sig, sig_len)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_VerifyInit(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_VerifyInit", || {
        let t = token()?;
        t.session_rw(h)?;
        t.sign_init(h, sign_mech(mech)?, key, true)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_Verify(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    sig: *mut CK_BYTE,
    sig_len: CK_ULONG,
) -> CK_RV {
    guard("C_Verify", || {
        let t = token()?;
        t.verify(h, Some(slice(data, data_len)?), slice(sig, sig_len)?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_VerifyUpdate(
    h: CK_SESSION_HANDLE,
    part: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    guard("C_VerifyUpdate", || {
        let t = token()?;
        t.sign_update(h, true, slice(part, len)?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_VerifyFinal(
    h: CK_SESSION_HANDLE,
    sig: *mut CK_BYTE,
    sig_len: CK_ULONG,
) -> CK_RV {
    guard("C_VerifyFinal", || {
        let t = token()?;
        t.verify(h, None, slice(sig, sig_len)?)
    })
}

// ---- decryption ----

#[no_mangle]
pub unsafe extern "C" fn C_DecryptInit(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_DecryptInit", || {
        let t = token()?;
        t.session_rw(h)?;
        t.decrypt_init(h, decrypt_scheme(mech)?, key)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_Decrypt(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    plain: *mut CK_BYTE,
    plain_len: *mut CK_ULONG,
) -> CK_RV {
    guard("C_Decrypt", || {
        let t = token()?;
        let ct = slice(data, data_len)?;
        let plain_len = out(plain_len)?;
        let cap = (!plain.is_null()).then_some(*plain_len as usize);
        let p = t.decrypt(h, ct, |n| cap.is_none_or(|c| c < n))?;
        write_out(plain, plain_len, &p)
    })
}

// ---- key generation and random numbers ----

#[no_mangle]
pub unsafe extern "C" fn C_GenerateKeyPair(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    pub_attrs: *mut CK_ATTRIBUTE,
    pub_count: CK_ULONG,
    priv_attrs: *mut CK_ATTRIBUTE,
    priv_count: CK_ULONG,
    pub_key: *mut CK_OBJECT_HANDLE,
    priv_key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_GenerateKeyPair", || {
        let t = token()?;
        let m = mechanism(mech)?;
        let pubt = template_values(pub_attrs, pub_count)?;
        let privt = template_values(priv_attrs, priv_count)?;
        let pub_key = out(pub_key)?;
        let priv_key = out(priv_key)?;
        let (kind, sign) = match m.mechanism {
            CKM_EC_KEY_PAIR_GEN => {
                let params =
                    find_attr(&pubt, CKA_EC_PARAMS).ok_or(Error::Ck(CKR_TEMPLATE_INCOMPLETE))?;
                let kind =
                    keys::kind_of_ec_params(params).ok_or(Error::Ck(CKR_CURVE_NOT_SUPPORTED))?;
                if attr_bool(&privt, CKA_DECRYPT) == Some(true) {
                    // Keyward's EC keys sign only.
                    return Err(Error::Ck(CKR_TEMPLATE_INCONSISTENT));
                }
                (kind, true)
            }
            CKM_RSA_PKCS_KEY_PAIR_GEN => {
                let bits =
                    find_attr(&pubt, CKA_MODULUS_BITS).ok_or(Error::Ck(CKR_TEMPLATE_INCOMPLETE))?;
                if attr_ulong(bits)? != 2048 {
                    return Err(Error::Ck(CKR_KEY_SIZE_RANGE));
                }
                if let Some(e) = find_attr(&pubt, CKA_PUBLIC_EXPONENT) {
                    let e: Vec<u8> = e.iter().copied().skip_while(|&b| b == 0).collect();
                    if e != [1, 0, 1] {
                        return Err(Error::Ck(CKR_ATTRIBUTE_VALUE_INVALID));
                    }
                }
                // A CMK has one usage. Signing unless only decryption is asked for
                // (pkcs11-tool asks for both by default).
                let sign = attr_bool(&privt, CKA_SIGN) == Some(true)
                    || attr_bool(&privt, CKA_DECRYPT) != Some(true);
                (keys::Kind::Rsa2048, sign)
            }
            _ => return Err(Error::Ck(CKR_MECHANISM_INVALID)),
        };
        let label = find_attr(&privt, CKA_LABEL)
            .or_else(|| find_attr(&pubt, CKA_LABEL))
            .map(|l| {
                String::from_utf8(l.to_vec()).map_err(|_| Error::Ck(CKR_ATTRIBUTE_VALUE_INVALID))
            })
            .transpose()?;
        let (p, k) = t.generate(h, kind, sign, label)?;
        *pub_key = p;
        *priv_key = k;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GenerateRandom(
    h: CK_SESSION_HANDLE,
    buf: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    guard("C_GenerateRandom", || {
        let t = token()?;
        t.session_rw(h)?;
        if len == 0 {
            return Ok(());
        }
        if buf.is_null() {
            return Err(Error::Ck(CKR_ARGUMENTS_BAD));
        }
        let r = t.random(len as usize)?;
        std::ptr::copy_nonoverlapping(r.as_ptr(), buf, r.len());
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_SeedRandom(
    h: CK_SESSION_HANDLE,
    _seed: *mut CK_BYTE,
    _len: CK_ULONG,
) -> CK_RV {
    guard("C_SeedRandom", || {
        token()?.session_rw(h)?;
        // The daemon's HSM owns its RNG.
        Err(Error::Ck(CKR_RANDOM_SEED_NOT_SUPPORTED))
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionStatus(h: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_GetFunctionStatus", || {
        token()?.session_rw(h)?;
        Err(Error::Ck(CKR_FUNCTION_NOT_PARALLEL))
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_CancelFunction(h: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_CancelFunction", || {
        token()?.session_rw(h)?;
        Err(Error::Ck(CKR_FUNCTION_NOT_PARALLEL))
    })
}

/// Entry points the token does not offer: key objects are created through CreateKey
/// (C_GenerateKeyPair) and administered through the API, and the module neither encrypts
/// nor digests (applications do both with the public key and their own library).
macro_rules! not_supported {
    ($($name:ident($($arg:ty),*);)*) => {
        $(
            #[no_mangle]
            pub unsafe extern "C" fn $name($(_: $arg),*) -> CK_RV {
                guard(stringify!($name), || {
                    token()?;
                    Err(Error::Ck(CKR_FUNCTION_NOT_SUPPORTED))
                })
            }
        )*
    };
}

not_supported! {
    C_InitToken(CK_SLOT_ID, *mut CK_UTF8CHAR, CK_ULONG, *mut CK_UTF8CHAR);
    C_InitPIN(CK_SESSION_HANDLE, *mut CK_UTF8CHAR, CK_ULONG);
    C_SetPIN(CK_SESSION_HANDLE, *mut CK_UTF8CHAR, CK_ULONG, *mut CK_UTF8CHAR, CK_ULONG);
    C_GetOperationState(CK_SESSION_HANDLE, *mut CK_BYTE, *mut CK_ULONG);
    C_SetOperationState(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE);
    C_CreateObject(CK_SESSION_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE);
    C_CopyObject(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE);
    C_DestroyObject(CK_SESSION_HANDLE, CK_OBJECT_HANDLE);
    C_SetAttributeValue(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG);
    C_EncryptInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE);
    C_Encrypt(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_EncryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_EncryptFinal(CK_SESSION_HANDLE, *mut CK_BYTE, *mut CK_ULONG);
    C_DecryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DecryptFinal(CK_SESSION_HANDLE, *mut CK_BYTE, *mut CK_ULONG);
    C_DigestInit(CK_SESSION_HANDLE, *mut CK_MECHANISM);
    C_Digest(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DigestUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG);
    C_DigestKey(CK_SESSION_HANDLE, CK_OBJECT_HANDLE);
    C_DigestFinal(CK_SESSION_HANDLE, *mut CK_BYTE, *mut CK_ULONG);
    C_SignRecoverInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE);
    C_SignRecover(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_VerifyRecoverInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE);
    C_VerifyRecover(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DigestEncryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DecryptDigestUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_SignEncryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DecryptVerifyUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_GenerateKey(CK_SESSION_HANDLE, *mut CK_MECHANISM, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE);
    C_WrapKey(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE, *mut CK_BYTE, *mut CK_ULONG);
    C_UnwrapKey(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE);
    C_DeriveKey(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE);
}

#[no_mangle]
pub unsafe extern "C" fn C_WaitForSlotEvent(
    _flags: CK_FLAGS,
    _slot: *mut CK_SLOT_ID,
    _r: *mut c_void,
) -> CK_RV {
    guard("C_WaitForSlotEvent", || {
        token()?;
        // One slot whose token never goes away: there are no events.
        Err(Error::Ck(CKR_FUNCTION_NOT_SUPPORTED))
    })
}

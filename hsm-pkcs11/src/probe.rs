//! The start-up capability probe: mechanism discovery plus a real trial of every key kind and
//! mechanism, run once by [`Pkcs11Hsm::open`].
//!
//! [`Pkcs11Hsm::open`] reads `C_GetMechanismList`/`C_GetMechanismInfo` and then runs the whole
//! life cycle of a sealed key pair (see `keypair`) once per key kind, with throw-away session
//! objects, including every sign/decrypt mechanism. A mechanism list cannot say which *parameters* a mechanism takes:
//! SoftHSM2 2.6.1 lists `CKM_RSA_PKCS_OAEP` but refuses every hash except SHA-1. (cryptoki also
//! silently drops mechanism types it does not model, so the list is only a first filter.)
//!
//! RSA-OAEP is tried per hash twice: as C_Decrypt (AsymmetricRsaDecrypt) and as C_UnwrapKey
//! (BYOK), the latter only where the former worked (SoftHSM2 logs every refusal at ERROR; a
//! token that cannot decrypt a padding will not unwrap with it). Only if some OAEP variant is
//! missing is raw RSA (`CKM_RSA_X_509`) tried, for the host-decoding fallback: a token with
//! native OAEP never runs raw RSA for Keyward.

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use cryptoki::slot::Slot;

use crate::blob::check_wrapped_len;
use crate::capabilities::Capabilities;
use crate::error::{rv_of, Error};
use crate::hsm::Pkcs11Hsm;
use crate::keypair::{build_spki, public_attribute_types};
use crate::keys::RootKey;
use crate::kind::{AsymKind, RsaDecryptMechanism, SignMechanism, RSA2048_LEN};
use crate::sign::{finish_signature, sign_input, sign_mechanism, SHA256_LEN};
use crate::templates;
use crate::unwrap::vet_unwrapped;

impl Pkcs11Hsm {
    /// Which mechanisms this token really supports, probed at open() with C_GetMechanismList
    /// plus a real trial where the list may lie (the cryptoki crate drops mechanism types it does
    /// not model). Measured on SoftHSM2 2.6.1: RSA-OAEP works with SHA-1 only (SHA-256 refused).
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }
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
    root: RootKey,
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
        // The root key's wrap needs no listing here: `keys::provision` has wrapped and
        // unwrapped with it already (under whichever RFC 5649 number the token uses, which
        // cryptoki's mechanism list may not even show).
        if !(listed.contains(&op) && can_generate(keygen, kind.bits())) {
            continue;
        }
        trial_kind(session, root, kind, &listed, &mut caps)?;
    }
    Ok(caps)
}

/// Run the full cycle for one kind and record what worked in `caps`.
fn trial_kind(
    session: &Session,
    root: RootKey,
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
    root: RootKey,
    kind: AsymKind,
    public: ObjectHandle,
    private: ObjectHandle,
    listed: &[MechanismType],
    caps: &mut Capabilities,
) -> Result<(), Error> {
    let Some(wrapped) = trial(root.wrap(session, private), "C_WrapKey")? else {
        return Ok(());
    };
    let attrs = session
        .get_attributes(public, public_attribute_types(kind))
        .map_err(Error::pkcs11("C_GetAttributeValue"))?;
    if check_wrapped_len(&wrapped).is_err() || build_spki(kind, &attrs).is_err() {
        return Ok(());
    }
    let template = templates::unwrapped_private_key_template(kind);
    let Some(key) = trial(root.unwrap(session, &wrapped, &template), "C_UnwrapKey")? else {
        return Ok(());
    };
    let t = Trial {
        session,
        root,
        wrapped: &wrapped,
        kind,
        public,
        key,
        listed,
    };
    let result = trial_unwrapped(&t, caps);
    session
        .destroy_object(key)
        .map_err(Error::pkcs11("C_DestroyObject"))?;
    result
}

/// One key pair under trial: its wrapped private half, the public object and the private half
/// unwrapped with the ordinary sign/decrypt template.
struct Trial<'a> {
    session: &'a Session,
    root: RootKey,
    wrapped: &'a [u8],
    kind: AsymKind,
    public: ObjectHandle,
    key: ObjectHandle,
    listed: &'a [MechanismType],
}

fn trial_unwrapped(t: &Trial<'_>, caps: &mut Capabilities) -> Result<(), Error> {
    let (session, kind, key) = (t.session, t.kind, t.key);
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
    match kind {
        AsymKind::EcP256 => caps.ec_p256 = signs(SignMechanism::Ecdsa)?,
        AsymKind::EcP384 => caps.ec_p384 = signs(SignMechanism::Ecdsa)?,
        AsymKind::Rsa2048 => {
            caps.rsa_2048 = signs(SignMechanism::RsaPkcs1Sha256)?
                && round_trips(t, &RsaDecryptMechanism::Pkcs1v15.mechanism())?;
            if !caps.rsa_2048 {
                return Ok(());
            }
            caps.rsa_refusal_is_device_error = refuses_with_device_error(t);
            if t.listed.contains(&MechanismType::RSA_PKCS_PSS) {
                caps.rsa_pss = signs(SignMechanism::RsaPssSha256)?;
            }
            trial_rsa_decryption(t, caps)?;
        }
    }
    Ok(())
}

/// Whether the token answers a ciphertext that cannot decrypt with `CKR_DEVICE_ERROR` while
/// the session stays usable (see [`Capabilities::rsa_refusal_is_device_error`]). The
/// ciphertext is 1: its RSA plaintext is 1 too, which no PKCS#1 padding accepts. Called
/// directly, not through `trial`, for which that code means the token is in trouble.
fn refuses_with_device_error(t: &Trial<'_>) -> bool {
    let mut one = [0u8; RSA2048_LEN];
    one[RSA2048_LEN - 1] = 1;
    let m = RsaDecryptMechanism::Pkcs1v15.mechanism();
    matches!(t.session.decrypt(&m, t.key, &one), Err(e) if rv_of(&e) == Some(RvError::DeviceError))
        && t.session.get_session_info().is_ok()
        // A session that really failed would not decrypt any more.
        && round_trips(t, &m).unwrap_or(false)
}

/// Encrypt with the token's public key, decrypt with the unwrapped private key.
fn round_trips(t: &Trial<'_>, m: &Mechanism<'_>) -> Result<bool, Error> {
    let msg = b"keyward capability probe";
    let Some(ct) = trial(t.session.encrypt(m, t.public, msg), "C_Encrypt")? else {
        return Ok(false);
    };
    Ok(
        trial(t.session.decrypt(m, t.key, &ct), "C_Decrypt")?
            .is_some_and(|pt| pt.as_slice() == msg),
    )
}

/// The OAEP variants natively (decryption, then unwrapping), and raw RSA where one is missing.
fn trial_rsa_decryption(t: &Trial<'_>, caps: &mut Capabilities) -> Result<(), Error> {
    if t.listed.contains(&MechanismType::RSA_PKCS_OAEP) {
        caps.rsa_oaep_sha1 = round_trips(t, &RsaDecryptMechanism::OaepSha1.mechanism())?;
        caps.rsa_oaep_sha256 = round_trips(t, &RsaDecryptMechanism::OaepSha256.mechanism())?;
        if caps.rsa_oaep_sha1 || caps.rsa_oaep_sha256 {
            trial_oaep_unwrap(t, caps)?;
        }
    }
    let all_native = caps.rsa_oaep_sha1
        && caps.rsa_oaep_sha256
        && caps.rsa_oaep_sha1_unwrap
        && caps.rsa_oaep_sha256_unwrap;
    if !all_native && t.listed.contains(&MechanismType::RSA_X_509) {
        caps.rsa_raw = raw_round_trips(t)?;
    }
    Ok(())
}

/// `C_UnwrapKey(CKM_RSA_PKCS_OAEP)` of an AES key encrypted to the token's public key, with the
/// private half unwrapped as BYOK unwraps it (`CKA_UNWRAP` only), for each hash whose
/// decryption worked.
fn trial_oaep_unwrap(t: &Trial<'_>, caps: &mut Capabilities) -> Result<(), Error> {
    let session = t.session;
    let template = templates::unwrapping_private_key_template(t.kind);
    let Some(unwrapping) = trial(t.root.unwrap(session, t.wrapped, &template), "C_UnwrapKey")?
    else {
        return Ok(());
    };
    let unwraps = |mech: RsaDecryptMechanism| -> Result<bool, Error> {
        let m = mech.mechanism();
        let Some(ct) = trial(session.encrypt(&m, t.public, &[0x5a; 32]), "C_Encrypt")? else {
            return Ok(false);
        };
        let aes_template = templates::imported_data_key_template();
        let Some(aes) = trial(
            session.unwrap_key(&m, unwrapping, &ct, &aes_template),
            "C_UnwrapKey",
        )?
        else {
            return Ok(false);
        };
        session
            .destroy_object(aes)
            .map_err(Error::pkcs11("C_DestroyObject"))?;
        Ok(true)
    };
    let result = (|| {
        if caps.rsa_oaep_sha1 {
            caps.rsa_oaep_sha1_unwrap = unwraps(RsaDecryptMechanism::OaepSha1)?;
        }
        if caps.rsa_oaep_sha256 {
            caps.rsa_oaep_sha256_unwrap = unwraps(RsaDecryptMechanism::OaepSha256)?;
        }
        Ok(())
    })();
    session
        .destroy_object(unwrapping)
        .map_err(Error::pkcs11("C_DestroyObject"))?;
    result
}

/// Raw RSA (`CKM_RSA_X_509`) both ways: a block below the modulus comes back unchanged.
fn raw_round_trips(t: &Trial<'_>) -> Result<bool, Error> {
    let mut block = [0u8; RSA2048_LEN];
    for (i, b) in block.iter_mut().enumerate().skip(1) {
        *b = i as u8;
    }
    let m = Mechanism::RsaX509;
    let Some(ct) = trial(t.session.encrypt(&m, t.public, &block), "C_Encrypt")? else {
        return Ok(false);
    };
    Ok(
        trial(t.session.decrypt(&m, t.key, &ct), "C_Decrypt")?.is_some_and(|pt| {
            // A token may strip the leading zero byte (the integer is the same).
            pt.len() <= RSA2048_LEN && pt[..] == block[RSA2048_LEN - pt.len()..]
        }),
    )
}

//! PKCS#11 backend for Keyward.
//!
//! # Key hierarchy
//!
//! Two long-lived AES-256 keys live on the token, found by label (and created on first use):
//!
//! * **Root key** ([`ROOT_KEY_LABEL`]): wrap/unwrap only. Every AES data key Keyward hands out
//!   is generated inside the token as a session object, wrapped under the root key with AES
//!   key wrap with padding (RFC 5649: `CKM_AES_KEY_WRAP_KWP` or, on SoftHSM2,
//!   `CKM_AES_KEY_WRAP_PAD`), and returned to the caller as an opaque sealed blob.
//!   To use a data key we `C_UnwrapKey` the blob back into a *sensitive, non-extractable*
//!   session object and run AES-GCM inside the token. The plaintext of an AES data key never
//!   exists outside the token.
//! * **Seal key** ([`SEAL_KEY_LABEL`]): encrypt/decrypt only (AES-GCM). It protects
//!   *software* key material: keys for algorithms the token cannot run (e.g. SM4), which must
//!   be decrypted into host memory to be used at all.
//!
//! Both are private token objects with `CKA_SENSITIVE=true`, `CKA_EXTRACTABLE=false`,
//! `CKA_MODIFIABLE=false`, `CKA_COPYABLE=false` and `CKA_DESTROYABLE=false`, so their values
//! can never be read or wrapped out, and a PIN holder cannot later change their attributes,
//! clone them with a weaker template or delete them. Whenever a session locates them (at open,
//! for replacement sessions, and after a logout invalidated the handles) every one of their
//! attributes is re-checked, the root key's nested `CKA_UNWRAP_TEMPLATE` value by value, and
//! `CKA_LOCAL`, `CKA_ALWAYS_SENSITIVE` and `CKA_NEVER_EXTRACTABLE` too: a key a PIN holder
//! planted under our label before Keyward first ran, with a weaker template or a value they
//! know, is refused with [`Error::KeyPolicy`] instead of silently wrapping data keys under it.
//!
//! [`Pkcs11Hsm::root_identity`] identifies the root key (a hash of a fixed input wrapped
//! under it). A caller that stores sealed keys records it and compares it on every start, and
//! opens with [`Pkcs11Config::create_keys`] false once it holds sealed keys: a lost root is
//! then [`Error::KeyMissing`], never silently replaced by a fresh one.
//!
//! ## Why the root key carries `CKA_UNWRAP_TEMPLATE`
//!
//! Sealed blobs are not secret from whoever holds the user PIN: they are stored by the
//! application. Without an unwrap template, a PIN holder could call
//! `C_UnwrapKey(root, blob, {CKA_SENSITIVE=false, CKA_EXTRACTABLE=true})` and then simply read
//! `CKA_VALUE`, recovering every data key; or unwrap it with `CKA_TOKEN=true,
//! CKA_PRIVATE=false`, and SoftHSM2 writes the key unencrypted into its token directory. The
//! root key is therefore created with `CKA_UNWRAP_TEMPLATE = {CKA_SENSITIVE=true,
//! CKA_EXTRACTABLE=false, CKA_PRIVATE=true, CKA_TOKEN=false}`: the token refuses any
//! C_UnwrapKey under the root key whose template contradicts it (`CKR_TEMPLATE_INCONSISTENT`
//! on SoftHSM2, which even insists that the caller's template repeat every value; our own
//! unwraps name exactly these four). Because a token that silently ignored the template would
//! give a false sense of security, [`Pkcs11Hsm::open`] probes it on every start: it wraps a
//! throw-away key and checks that our own template unwraps it, that each of the four
//! attributes the other way round is refused, and that an unwrap that does not mention them
//! is either refused or still yields a key with the template's values.
//!
//! The root key also has `CKA_ENCRYPT=false`/`CKA_DECRYPT=false`. AES-KWP is built from raw
//! AES, so a root key with `CKA_DECRYPT` would let a PIN holder `C_Decrypt(CKM_AES_ECB)` a
//! wrapped blob and undo the wrap by hand (SoftHSM2 defaults `CKA_DECRYPT` to true, so this
//! has to be explicit). `CKA_ALLOWED_MECHANISMS` narrows it further, to the one RFC 5649
//! mechanism number the token uses (checked as the raw number at every locate).
//!
//! ## Why RFC 5649 (`CKM_AES_KEY_WRAP_KWP` / `CKM_AES_KEY_WRAP_PAD`)
//!
//! Tokens give it one of two numbers; the bytes are the same (see `keywrap`): a new root key
//! takes the PKCS#11 3.0 number `CKM_AES_KEY_WRAP_KWP` (0x210B, kryoptic) where the token
//! offers it, otherwise `CKM_AES_KEY_WRAP_PAD` (0x210A, SoftHSM2).
//!
//! It is the standard, deterministic, integrity-protected AES key-wrap (RFC 5649) and is
//! what PKCS#11 tokens broadly support as a *wrapping* mechanism. SoftHSM2 refuses AES-GCM
//! for `C_WrapKey`/`C_UnwrapKey`. Its built-in integrity check makes a tampered blob fail to
//! unwrap ([`Error::BadSealedKey`]). Determinism is harmless here: each wrapped key is fresh
//! random key material.
//!
//! ## Why software keys use a separate seal key
//!
//! Software material must come back to the host in plaintext, so it is *encrypted* (AES-GCM,
//! `C_Decrypt`), not *wrapped*. Doing that with the root key would require giving the root key
//! `CKA_DECRYPT=true`, and then any PIN holder could decrypt root-wrapped blobs as data,
//! bypassing the unwrap template. A dedicated seal key keeps the two capabilities apart: the
//! root key can only unwrap into non-extractable keys; the seal key can only do AES-GCM on
//! software material, authenticated with the fixed AAD `b"keyward/software-key/v1"`.
//!
//! # Sealed-blob formats (opaque to callers)
//!
//! * `0x02 || AES-KWP(root, data key)` (41 bytes): an AES-256 data key.
//! * `0x03 || nonce[12] || AES-GCM(seal, material, aad = "keyward/software-key/v1") || tag[16]`:
//!   software material.
//! * `0x04 || kind || AES-KWP(root, PKCS#8 private key)`: an RSA-2048 (kind 0x01), P-256 (0x02)
//!   or P-384 (0x03) private key generated in the token; see "Asymmetric keys" below.
//!
//! A blob with the wrong format byte or length is rejected with [`Error::BadSealedKey`].
//!
//! # Asymmetric keys
//!
//! RSA-2048 and ECDSA P-256/P-384 key pairs are generated in the token as session objects; the
//! private half is wrapped once under the root key (SoftHSM2 wraps it as PKCS#8 inside AES-KWP)
//! and both objects are destroyed. To sign or decrypt, the blob is unwrapped into a sensitive,
//! non-extractable session object (the root key's unwrap template applies exactly as for AES
//! data keys) and cached in the same per-session LRU. The public key is returned as a DER
//! SubjectPublicKeyInfo built from the public object's attributes.
//!
//! A sealed RSA-2048 pair can also receive AES-256 material from outside (BYOK):
//! [`Pkcs11Hsm::import_wrapped_aes256`] runs `C_UnwrapKey` with the RSA private key (unwrapped
//! for that purpose into its own cached object with `CKA_UNWRAP=true`, apart from the
//! sign/decrypt object, which has `CKA_UNWRAP=false`) and reseals the result as an ordinary
//! `0x02` data key, returning the key check value `AES-256-ECB(key, 0^16)` that
//! [`Pkcs11Hsm::aes_key_check_value`] also computes.
//!
//! What the token can do is established once, at [`Pkcs11Hsm::open`], by running that whole
//! cycle with throw-away keys for each kind and mechanism ([`Pkcs11Hsm::capabilities`]); the
//! mechanism list alone cannot tell, e.g., that SoftHSM2 2.6.1 lists `CKM_RSA_PKCS_OAEP` but
//! answers `CKR_ARGUMENTS_BAD` to any hash but SHA-1. The RSA-2048 key generation makes this
//! probe cost a few hundred milliseconds per `open` on SoftHSM2.
//!
//! Where the token lacks an OAEP variant (SoftHSM2: OAEP-SHA-256) but does raw RSA
//! (`CKM_RSA_X_509`), decryption and BYOK import still work: the RSA step runs in the token
//! and the EME-OAEP padding is removed on the host in constant time (`oaep`), so the padded
//! block, and for an import the material on its way back into the token, pass through host
//! memory in zeroizing buffers ([`RsaDecryptPath`], [`Pkcs11Hsm::rsa_decrypt_path`]). A token
//! with native OAEP never takes that path.
//!
//! # Concurrency and performance
//!
//! [`Pkcs11Hsm`] is `Send + Sync`. It owns a pool of `pool_size` logged-in R/W sessions; each
//! call checks one out for its duration. Each session caches up to 1024 unwrapped data keys
//! (LRU, keyed by SHA-256 of the sealed blob) because unwrapping costs about four AES-GCM
//! operations on SoftHSM2. Evicted keys are destroyed; all cached keys disappear when the
//! session is closed.
//!
//! The module is loaded and `C_Initialize`d once per process and path and never finalized
//! (another [`Pkcs11Hsm`] or library in the process may still be using it). For SoftHSM2
//! this means `SOFTHSM2_CONF` is read once, at the first [`Pkcs11Hsm::open`].
//!
//! PKCS#11 login state belongs to the process, not the session. If this process is already
//! logged in to the token (another [`Pkcs11Hsm`] on it is open), `C_Login` answers
//! `CKR_USER_ALREADY_LOGGED_IN`, which we must treat as success, so `open` cannot detect a
//! wrong PIN in that situation.
//!
//! Provisioning note: the first `open` on an empty token creates the two keys (only with
//! `create_keys`). Two processes
//! doing that first open at the same moment could both create them; `open` then refuses to
//! run (duplicate labels) rather than pick one. Provision with a single process.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod blob;
mod cache;
mod capabilities;
mod decrypt;
mod error;
mod hsm;
mod import;
mod keypair;
mod keys;
mod keywrap;
mod kind;
mod nested;
mod oaep;
mod open;
mod pool;
mod probe;
mod select;
mod sign;
mod symmetric;
mod templates;
mod unwrap;

pub use crate::capabilities::{Capabilities, RsaDecryptPath};
pub use crate::error::Error;
pub use crate::hsm::{Pkcs11Config, Pkcs11Hsm};
pub use crate::import::KCV_LEN;
pub use crate::keypair::SealedKeyPair;
pub use crate::keys::ROOT_IDENTITY_LEN;
pub use crate::kind::{AsymKind, RsaDecryptMechanism, SignMechanism};
pub use crate::open::init_token;
pub use crate::templates::{ROOT_KEY_LABEL, SEAL_KEY_LABEL};

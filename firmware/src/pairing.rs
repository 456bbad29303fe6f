//! Pairing: the device serves key operations only to the host that provisioned it.
//!
//! Red-team finding 6 (issue 12): anyone who could open the serial device and held a copy of
//! the database could decrypt everything, since the sealed keys are in the database and the
//! device used any sealed key it was handed. Now:
//!
//! * **Pairing key.** At provisioning the host generates a 32-byte key and registers it with
//!   `Request::Pair`, which an unpaired device accepts once. The key crosses the line wrapped
//!   to the device's *attested identity key* (ECDH with a one-time P-256 key of the host,
//!   SHA-256 key derivation, AES-256-GCM): someone watching the line at provisioning does not
//!   learn it, and a device other than the attested one cannot unwrap it. The device keeps it
//!   with its device secret ([`PairingStore`]); the host in a 0600 file outside the database.
//! * **Sessions.** `Request::BeginSession` gives a fresh random nonce. Key operations then
//!   travel as `Request::Authenticated { counter, tag, request }`, the tag being
//!   HMAC-SHA256(pairing key, label || nonce || counter || request bytes) ([`request_tag`]).
//!   The device runs the inner request only if the tag verifies (constant-time comparison)
//!   and the counter is above every counter the session accepted, so a recorded frame
//!   replayed in the same session is refused (`Replayed`) and one from an earlier session
//!   does not verify (`Unauthenticated`). Counters live in RAM: nothing is written to flash
//!   per request, and a restart loses the session, after which the host begins a new one.
//! * **Answers are authenticated too.** The answer is `Response::Authenticated` with a tag
//!   over another label, the same nonce and counter and the inner response bytes
//!   ([`response_tag`]): the host takes answers only from the paired device and only for the
//!   request it sent (a recorded answer cannot be passed off as the answer to a later one).
//!   That matters for answers the host trusts blindly: random bytes that become data keys,
//!   sealed keys, ciphertexts it stores.
//! * **What stays open:** `Hello` and `Attest` (the host needs them before it can
//!   authenticate anything), `Pair` while unpaired, and `BeginSession`. A bare key operation
//!   is refused with `NotPaired` or `Unauthenticated`
//!   (`keyward_shared::wire::RequestKind::needs_pairing` decides, for both ends).
//! * **A new session does not end the current one** until it is used: `BeginSession` only
//!   draws a *pending* nonce, which replaces the current session when the first authentic
//!   request under it arrives. So a stranger on the line who asks for sessions cannot break
//!   the paired host's session (it can still jam the line, as anyone who can write to it can).
//! * **After a restart** the device has no session at all, and answers an envelope it has
//!   nothing to check against with `Session` (a fresh pending nonce) instead of a refusal:
//!   the host's retry after the silence of a restart learns the new nonce in the same round
//!   trip and sends the request again under it. Nothing runs without a verified tag.
//!
//! What it does not do: the link is authenticated, not encrypted. Someone who can read the
//! line sees the plaintexts and data keys that pass, as before; pairing stops them from
//! *using* the device. And whoever can read the host's pairing key file (root on the host,
//! the daemon's user) can act as the host.
//!
//! Heap-free: tags are computed over borrowed slices, keys live in fixed zeroizing arrays.
//! The host-side helpers at the end ([`SealedRequest`], [`open_response`]) need `alloc`.

use crate::aead;
use hmac::{Hmac, Mac};
use keyward_shared::wire::DeviceError;
use keyward_shared::Algorithm;
use p256::elliptic_curve::point::AffineCoordinates;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Length of the pairing key.
pub const KEY_LEN: usize = 32;
/// Length of a session nonce.
pub const NONCE_LEN: usize = 32;
/// Length of a request or response tag (HMAC-SHA256).
pub const TAG_LEN: usize = 32;
/// Length of the host's one-time public key in `Pair` (an uncompressed SEC1 P-256 point).
pub const EPHEMERAL_LEN: usize = 65;
/// Length of the wrapped pairing key in `Pair`: the key and its AES-GCM tag.
pub const WRAPPED_KEY_LEN: usize = KEY_LEN + aead::TAG_LEN;

const REQUEST_LABEL: &[u8] = b"keyward/pairing/request/v1\0";
const RESPONSE_LABEL: &[u8] = b"keyward/pairing/response/v1\0";
const WRAP_LABEL: &[u8] = b"keyward/pairing/wrap/v1\0";
/// The wrapping key is used for exactly one message (a fresh ephemeral key per wrap), so a
/// fixed nonce is safe.
const WRAP_NONCE: [u8; 12] = [0; 12];

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8; KEY_LEN], label: &[u8], nonce: &[u8], counter: u64, body: &[u8]) -> HmacSha256 {
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length.
        Err(_) => unreachable!(),
    };
    m.update(label);
    m.update(nonce);
    m.update(&counter.to_le_bytes());
    m.update(body);
    m
}

/// The tag of an authenticated request: HMAC-SHA256(key, `"keyward/pairing/request/v1\0"` ||
/// nonce || counter (8 bytes, little-endian) || the inner request's postcard bytes).
pub fn request_tag(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    counter: u64,
    request: &[u8],
) -> [u8; TAG_LEN] {
    mac(key, REQUEST_LABEL, nonce, counter, request)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether `tag` is the request tag (compared in constant time).
pub fn verify_request(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    counter: u64,
    request: &[u8],
    tag: &[u8],
) -> bool {
    mac(key, REQUEST_LABEL, nonce, counter, request)
        .verify_slice(tag)
        .is_ok()
}

/// The tag of an authenticated answer: as [`request_tag`] under `"keyward/pairing/response/v1\0"`
/// over the request's nonce and counter and the inner response's postcard bytes.
pub fn response_tag(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    counter: u64,
    response: &[u8],
) -> [u8; TAG_LEN] {
    mac(key, RESPONSE_LABEL, nonce, counter, response)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether `tag` is the response tag (compared in constant time).
pub fn verify_response(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    counter: u64,
    response: &[u8],
    tag: &[u8],
) -> bool {
    mac(key, RESPONSE_LABEL, nonce, counter, response)
        .verify_slice(tag)
        .is_ok()
}

/// The key that wraps the pairing key: SHA-256(label || ECDH x-coordinate || the host's
/// one-time public key || the device's identity public key (DER SubjectPublicKeyInfo)).
fn wrapping_key(shared_x: &[u8], ephemeral: &[u8], identity_spki: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(WRAP_LABEL);
    h.update(shared_x);
    h.update(ephemeral);
    h.update(identity_spki);
    let mut kek = Zeroizing::new([0u8; 32]);
    h.finalize_into((&mut kek[..]).into());
    kek
}

/// The host's side of `Pair`: wraps `key` to the device whose attested identity public key
/// is `identity_spki`. Returns the one-time public key and the wrapped key.
pub fn wrap_key<R: RngCore + CryptoRng>(
    rng: &mut R,
    identity_spki: &[u8],
    key: &[u8; KEY_LEN],
) -> Result<([u8; EPHEMERAL_LEN], [u8; WRAPPED_KEY_LEN]), DeviceError> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::DecodePublicKey;
    let identity =
        p256::PublicKey::from_public_key_der(identity_spki).map_err(|_| DeviceError::BadLength)?;
    let one_time = p256::SecretKey::random(rng);
    let mut ephemeral = [0u8; EPHEMERAL_LEN];
    ephemeral.copy_from_slice(one_time.public_key().to_encoded_point(false).as_bytes());
    let shared = (identity.to_projective() * *one_time.to_nonzero_scalar()).to_affine();
    let kek = wrapping_key(&shared.x(), &ephemeral, identity_spki);
    let mut wrapped = [0u8; WRAPPED_KEY_LEN];
    wrapped[..KEY_LEN].copy_from_slice(key);
    aead::encrypt_in_place(
        Algorithm::Aes256Gcm,
        &kek[..],
        &WRAP_NONCE,
        WRAP_LABEL,
        &mut wrapped,
        KEY_LEN,
    )?;
    Ok((ephemeral, wrapped))
}

/// The device's side of `Pair`: unwraps the key with the identity key (`identity_secret`, its
/// public key `identity_spki`). `AuthenticationFailed` if it was not wrapped to this device.
pub fn unwrap_key(
    identity_secret: &[u8],
    identity_spki: &[u8],
    ephemeral: &[u8],
    wrapped_key: &[u8],
) -> Result<Zeroizing<[u8; KEY_LEN]>, DeviceError> {
    if ephemeral.len() != EPHEMERAL_LEN || wrapped_key.len() != WRAPPED_KEY_LEN {
        return Err(DeviceError::BadLength);
    }
    let point = p256::PublicKey::from_sec1_bytes(ephemeral).map_err(|_| DeviceError::BadLength)?;
    let secret = p256::SecretKey::from_slice(identity_secret).map_err(|_| DeviceError::Internal)?;
    let shared = (point.to_projective() * *secret.to_nonzero_scalar()).to_affine();
    let kek = wrapping_key(&shared.x(), ephemeral, identity_spki);
    let mut buf = Zeroizing::new([0u8; WRAPPED_KEY_LEN]);
    buf.copy_from_slice(wrapped_key);
    aead::decrypt_in_place(
        Algorithm::Aes256Gcm,
        &kek[..],
        &WRAP_NONCE,
        WRAP_LABEL,
        &mut buf[..],
    )?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&buf[..KEY_LEN]);
    Ok(key)
}

/// Where the device keeps its pairing key, next to its device secret: flash on a board, a
/// 0600 file in the simulator's state directory.
pub trait PairingStore {
    /// The key registered earlier, if any. Read once, when the gate is built.
    fn load(&mut self) -> Option<Zeroizing<[u8; KEY_LEN]>>;
    /// Stores `key` durably. Called once, before `Paired` is answered; on failure (answer
    /// `Internal`) the device stays unpaired.
    fn save(&mut self, key: &[u8; KEY_LEN]) -> Result<(), DeviceError>;
}

/// A store that keeps nothing: the key lasts until the device stops. For a device whose
/// device secret does not outlive it either (the freestanding host build draws a fresh one
/// at every start), and for tests.
pub struct Volatile;

impl PairingStore for Volatile {
    fn load(&mut self) -> Option<Zeroizing<[u8; KEY_LEN]>> {
        None
    }
    fn save(&mut self, _: &[u8; KEY_LEN]) -> Result<(), DeviceError> {
        Ok(())
    }
}

struct Session {
    nonce: [u8; NONCE_LEN],
    /// The highest counter accepted in this session.
    last: u64,
}

/// An authenticated request the gate let through: the session and counter its answer is
/// tagged with.
#[derive(Debug, Clone, Copy)]
pub struct Admitted {
    nonce: [u8; NONCE_LEN],
    counter: u64,
}

impl Admitted {
    pub fn counter(&self) -> u64 {
        self.counter
    }
}

/// The device's pairing state: the key, the current session and a pending one. The frame
/// loop (`link.rs`) passes every request through it.
pub struct Gate<S, R> {
    store: S,
    rng: R,
    key: Option<Zeroizing<[u8; KEY_LEN]>>,
    current: Option<Session>,
    pending: Option<[u8; NONCE_LEN]>,
}

impl<S: PairingStore, R: RngCore + CryptoRng> Gate<S, R> {
    /// Loads the pairing key from `store`; `rng` draws the session nonces.
    pub fn new(mut store: S, rng: R) -> Self {
        let key = store.load();
        Gate {
            store,
            rng,
            key,
            current: None,
            pending: None,
        }
    }

    pub fn is_paired(&self) -> bool {
        self.key.is_some()
    }

    /// Why a key operation outside an envelope is refused.
    pub fn refusal(&self) -> DeviceError {
        if self.is_paired() {
            DeviceError::Unauthenticated
        } else {
            DeviceError::NotPaired
        }
    }

    /// Registers `key` (already unwrapped) on an unpaired device, durably.
    pub fn pair(&mut self, key: Zeroizing<[u8; KEY_LEN]>) -> Result<(), DeviceError> {
        if self.is_paired() {
            return Err(DeviceError::AlreadyPaired);
        }
        self.store.save(&key)?;
        self.key = Some(key);
        Ok(())
    }

    /// Draws the nonce of a new session. It becomes the current session when the first
    /// authentic request under it arrives; until then the current one stays valid.
    pub fn begin_session(&mut self) -> Result<[u8; NONCE_LEN], DeviceError> {
        if !self.is_paired() {
            return Err(DeviceError::NotPaired);
        }
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill_bytes(&mut nonce);
        self.pending = Some(nonce);
        Ok(nonce)
    }

    /// Whether there is a session (current or pending) to check envelopes against.
    pub fn has_session(&self) -> bool {
        self.current.is_some() || self.pending.is_some()
    }

    /// What a restart forgets: the sessions (the key stays).
    pub fn end_sessions(&mut self) {
        self.current = None;
        self.pending = None;
    }

    /// Checks an `Authenticated` envelope: its tag under the current session, or else under
    /// the pending one (which then becomes current), and then its counter. The tag is checked
    /// first, so only an authentic frame can be called `Replayed`.
    pub fn admit(
        &mut self,
        counter: u64,
        tag: &[u8],
        request: &[u8],
    ) -> Result<Admitted, DeviceError> {
        let key = self.key.as_ref().ok_or(DeviceError::NotPaired)?;
        if let Some(session) = self.current.as_mut() {
            if verify_request(key, &session.nonce, counter, request, tag) {
                if counter <= session.last {
                    return Err(DeviceError::Replayed);
                }
                session.last = counter;
                return Ok(Admitted {
                    nonce: session.nonce,
                    counter,
                });
            }
        }
        if let Some(nonce) = self.pending {
            if verify_request(key, &nonce, counter, request, tag) {
                // Counters start at 1 in every session.
                if counter == 0 {
                    return Err(DeviceError::Replayed);
                }
                self.pending = None;
                self.current = Some(Session {
                    nonce,
                    last: counter,
                });
                return Ok(Admitted { nonce, counter });
            }
        }
        Err(DeviceError::Unauthenticated)
    }

    /// The tag of the answer to an admitted request.
    pub fn tag_response(
        &self,
        admitted: &Admitted,
        response: &[u8],
    ) -> Result<[u8; TAG_LEN], DeviceError> {
        let key = self.key.as_ref().ok_or(DeviceError::Internal)?;
        Ok(response_tag(
            key,
            &admitted.nonce,
            admitted.counter,
            response,
        ))
    }
}

#[cfg(feature = "alloc")]
pub use host::{open_response, AnswerError, SealedRequest};

/// The host's half: wrapping a request for a session, checking the answer.
#[cfg(feature = "alloc")]
mod host {
    use super::*;
    use alloc::vec::Vec;
    use keyward_shared::wire::{OwnedResponse, Request};

    /// A request wrapped for one session and counter, ready to send as
    /// `Request::Authenticated` ([`SealedRequest::request`]).
    pub struct SealedRequest {
        pub counter: u64,
        tag: [u8; TAG_LEN],
        /// The inner request's postcard bytes: they may hold plaintext or key material.
        bytes: Zeroizing<Vec<u8>>,
    }

    impl SealedRequest {
        /// Encodes `inner` and tags it for `counter` in the session `nonce`.
        pub fn new(
            key: &[u8; KEY_LEN],
            nonce: &[u8; NONCE_LEN],
            counter: u64,
            inner: &Request<'_>,
        ) -> Result<Self, postcard::Error> {
            let bytes = Zeroizing::new(postcard::to_allocvec(inner)?);
            let tag = request_tag(key, nonce, counter, &bytes);
            Ok(SealedRequest {
                counter,
                tag,
                bytes,
            })
        }

        /// The `Authenticated` request to send.
        pub fn request(&self) -> Request<'_> {
            Request::Authenticated {
                counter: self.counter,
                tag: &self.tag,
                request: &self.bytes,
            }
        }
    }

    /// Why an answer to an authenticated request was not taken.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum AnswerError {
        /// It names another counter, or its tag does not verify: not the paired device's
        /// answer to this request.
        Forged,
        /// Authentic, but the inner bytes are not a response (or are another envelope).
        Malformed,
    }

    /// Checks the fields of a `Response::Authenticated` against the request it answers and
    /// decodes the inner response.
    pub fn open_response(
        key: &[u8; KEY_LEN],
        nonce: &[u8; NONCE_LEN],
        sent: &SealedRequest,
        counter: u64,
        tag: &[u8],
        response: &[u8],
    ) -> Result<OwnedResponse, AnswerError> {
        if counter != sent.counter || !verify_response(key, nonce, counter, response, tag) {
            return Err(AnswerError::Forged);
        }
        match postcard::from_bytes::<OwnedResponse>(response) {
            Ok(OwnedResponse::Authenticated { .. }) | Err(_) => Err(AnswerError::Malformed),
            Ok(inner) => Ok(inner),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    const KEY: [u8; KEY_LEN] = [7; KEY_LEN];

    fn paired() -> Gate<Volatile, OsRng> {
        let mut gate = Gate::new(Volatile, OsRng);
        gate.pair(Zeroizing::new(KEY)).unwrap();
        gate
    }

    /// Tags change with every input, requests and responses never share a tag, and a
    /// truncated or altered tag is refused.
    #[test]
    fn tags_bind_key_nonce_counter_and_bytes() {
        let n = [1u8; NONCE_LEN];
        let t = request_tag(&KEY, &n, 5, b"req");
        assert!(verify_request(&KEY, &n, 5, b"req", &t));
        assert!(!verify_request(&[8; KEY_LEN], &n, 5, b"req", &t));
        assert!(!verify_request(&KEY, &[2; NONCE_LEN], 5, b"req", &t));
        assert!(!verify_request(&KEY, &n, 6, b"req", &t));
        assert!(!verify_request(&KEY, &n, 5, b"reQ", &t));
        assert!(!verify_request(&KEY, &n, 5, b"req", &t[..31]));
        assert!(!verify_request(&KEY, &n, 5, b"req", &[]));
        assert!(!verify_response(&KEY, &n, 5, b"req", &t));
        assert_ne!(t, response_tag(&KEY, &n, 5, b"req"));
    }

    /// The wrapped key opens only with the identity key it was wrapped to, unaltered.
    #[test]
    fn wrapped_keys_open_only_on_their_device() {
        let secret = [0x11u8; 32];
        let spki = crate::asym::public_key(Algorithm::EccP256, &secret).unwrap();
        let (eph, wrapped) = wrap_key(&mut OsRng, &spki, &KEY).unwrap();
        assert_eq!(*unwrap_key(&secret, &spki, &eph, &wrapped).unwrap(), KEY);
        let other = [0x22u8; 32];
        let other_spki = crate::asym::public_key(Algorithm::EccP256, &other).unwrap();
        assert_eq!(
            unwrap_key(&other, &other_spki, &eph, &wrapped).unwrap_err(),
            DeviceError::AuthenticationFailed
        );
        let mut bad = wrapped;
        bad[3] ^= 1;
        assert!(unwrap_key(&secret, &spki, &eph, &bad).is_err());
        assert!(unwrap_key(&secret, &spki, &eph[..64], &wrapped).is_err());
        assert!(unwrap_key(&secret, &spki, &[4; EPHEMERAL_LEN], &wrapped).is_err());
    }

    #[test]
    fn an_unpaired_gate_refuses_sessions_and_envelopes() {
        let mut gate = Gate::new(Volatile, OsRng);
        assert_eq!(gate.refusal(), DeviceError::NotPaired);
        assert_eq!(gate.begin_session().unwrap_err(), DeviceError::NotPaired);
        let tag = request_tag(&KEY, &[0; NONCE_LEN], 1, b"x");
        assert_eq!(
            gate.admit(1, &tag, b"x").unwrap_err(),
            DeviceError::NotPaired
        );
        gate.pair(Zeroizing::new(KEY)).unwrap();
        assert_eq!(gate.refusal(), DeviceError::Unauthenticated);
        assert_eq!(
            gate.pair(Zeroizing::new([9; KEY_LEN])).unwrap_err(),
            DeviceError::AlreadyPaired
        );
    }

    #[test]
    fn counters_only_grow_and_sessions_do_not_mix() {
        let mut gate = paired();
        let old = gate.begin_session().unwrap();
        let tag = |nonce, counter| request_tag(&KEY, &nonce, counter, b"req");
        assert!(gate.admit(1, &tag(old, 1), b"req").is_ok());
        assert!(gate.admit(5, &tag(old, 5), b"req").is_ok());
        assert_eq!(
            gate.admit(5, &tag(old, 5), b"req").unwrap_err(),
            DeviceError::Replayed
        );
        assert_eq!(
            gate.admit(3, &tag(old, 3), b"req").unwrap_err(),
            DeviceError::Replayed
        );
        // A pending session leaves the current one working until it is used...
        let new = gate.begin_session().unwrap();
        assert!(gate.admit(6, &tag(old, 6), b"req").is_ok());
        // ...and then replaces it: the old session's frames no longer verify.
        assert!(gate.admit(1, &tag(new, 1), b"req").is_ok());
        assert_eq!(
            gate.admit(7, &tag(old, 7), b"req").unwrap_err(),
            DeviceError::Unauthenticated
        );
        // A restart forgets both.
        gate.end_sessions();
        assert_eq!(
            gate.admit(2, &tag(new, 2), b"req").unwrap_err(),
            DeviceError::Unauthenticated
        );
        // Counter 0 never opens a session.
        let third = gate.begin_session().unwrap();
        assert_eq!(
            gate.admit(0, &tag(third, 0), b"req").unwrap_err(),
            DeviceError::Replayed
        );
    }

    #[test]
    fn the_host_takes_only_the_answer_to_its_request() {
        use keyward_shared::wire::{OwnedResponse, Request};
        let mut gate = paired();
        let nonce = gate.begin_session().unwrap();
        let sent = SealedRequest::new(&KEY, &nonce, 1, &Request::Random { len: 4 }).unwrap();
        let Request::Authenticated {
            counter,
            tag,
            request,
        } = sent.request()
        else {
            unreachable!()
        };
        let admitted = gate.admit(counter, tag, request).unwrap();
        let inner = postcard::to_allocvec(&OwnedResponse::Random(alloc::vec![1, 2, 3, 4])).unwrap();
        let answer_tag = gate.tag_response(&admitted, &inner).unwrap();
        assert_eq!(
            open_response(&KEY, &nonce, &sent, 1, &answer_tag, &inner),
            Ok(OwnedResponse::Random(alloc::vec![1, 2, 3, 4]))
        );
        assert_eq!(
            open_response(&KEY, &nonce, &sent, 2, &answer_tag, &inner),
            Err(AnswerError::Forged)
        );
        assert_eq!(
            open_response(&[0; KEY_LEN], &nonce, &sent, 1, &answer_tag, &inner),
            Err(AnswerError::Forged)
        );
        let mut altered = inner.clone();
        altered[2] ^= 1;
        assert_eq!(
            open_response(&KEY, &nonce, &sent, 1, &answer_tag, &altered),
            Err(AnswerError::Forged)
        );
        // A request tag is never accepted as the answer's.
        let request_tag = request_tag(&KEY, &nonce, 1, &inner);
        assert_eq!(
            open_response(&KEY, &nonce, &sent, 1, &request_tag, &inner),
            Err(AnswerError::Forged)
        );
    }
}

//! Property tests for the firmware's request handler (`KeyService::handle`), the code every
//! frame from the host ends up in. With shared/tests/frame_props.rs they are the fuzz targets
//! CI runs on every `cargo test --workspace`: no request may make the device panic, and the
//! answers keep their documented meaning on arbitrary inputs.

use keyward_firmware::{KeyService, OUTPUT_LEN};
use keyward_shared::frame::{
    decode_frame, encode_frame, encode_frame_vec, Envelope, MAX_FRAME, MAX_PAYLOAD,
};
use keyward_shared::wire::{
    DeviceError, OwnedResponse, Request, ResponseKind, MAX_RANDOM_LEN, PROTOCOL_VERSION,
};
use keyward_shared::Algorithm;
use proptest::prelude::*;
use proptest::sample::Index;
use rand_core::OsRng;
use std::sync::OnceLock;

const DEVICE_KEY: [u8; 32] = [0x5a; 32];

#[path = "../../shared/tests/common/requests.rs"]
mod requests;
use requests::*;

fn service() -> KeyService<OsRng> {
    KeyService::new(DEVICE_KEY, OsRng)
}

/// Runs a request through `handle` with a fresh output buffer of the documented size and
/// copies the answer out, as the host's embedded backend does.
fn call(svc: &mut KeyService<OsRng>, req: Request<'_>) -> OwnedResponse {
    let mut out = vec![0u8; OUTPUT_LEN];
    svc.handle(req, &mut out).into()
}

/// Keys sealed under `DEVICE_KEY`, made once: random `sealed` bytes never get past the
/// unsealing, so the strategies also hand out these (intact or damaged) to reach the
/// AEAD, signing and SM2 decryption code behind it.
struct Fixtures {
    keys: Vec<(Algorithm, Vec<u8>)>,
    sm2_public_key: Vec<u8>,
    /// An SM2 ciphertext (C1C3C2, ASN.1) to the SM2 key above.
    sm2_ciphertext: Vec<u8>,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let mut svc = service();
        let mut keys = Vec::new();
        for algorithm in [Algorithm::Aes256Gcm, Algorithm::Sm4Gcm] {
            match call(&mut svc, Request::GenerateKey { algorithm }) {
                OwnedResponse::Sealed(sealed) => keys.push((algorithm, sealed)),
                other => panic!("{other:?}"),
            }
        }
        let mut sm2_public_key = Vec::new();
        for algorithm in [Algorithm::EccP256, Algorithm::Sm2] {
            match call(&mut svc, Request::GenerateKeyPair { algorithm }) {
                OwnedResponse::KeyPair { sealed, public_key } => {
                    keys.push((algorithm, sealed));
                    sm2_public_key = public_key;
                }
                other => panic!("{other:?}"),
            }
        }
        let sm2_ciphertext = sm2_encrypt(&sm2_public_key, b"fixture plaintext");
        Fixtures {
            keys,
            sm2_public_key,
            sm2_ciphertext,
        }
    })
}

/// SM2 encryption as the host does it (the device only decrypts).
fn sm2_encrypt(public_key_der: &[u8], plaintext: &[u8]) -> Vec<u8> {
    use sm2::pkcs8::DecodePublicKey;
    let key = sm2::PublicKey::from_public_key_der(public_key_der).unwrap();
    sm2::pke::EncryptingKey::new(key)
        .encrypt_der(&mut Sm2Rng, plaintext)
        .unwrap()
}

/// The `sm2` crate takes a rand_core 0.10 RNG; this adapts the operating system's.
struct Sm2Rng;

impl sm2::elliptic_curve::rand_core::TryRng for Sm2Rng {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(rand_core::RngCore::next_u32(&mut OsRng))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(rand_core::RngCore::next_u64(&mut OsRng))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        rand_core::RngCore::fill_bytes(&mut OsRng, dst);
        Ok(())
    }
}

impl sm2::elliptic_curve::rand_core::TryCryptoRng for Sm2Rng {}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

/// One byte changed (xor with a non-zero mask) at an arbitrary position.
fn damage(mut v: Vec<u8>, pos: Index, mask: u8) -> Vec<u8> {
    if !v.is_empty() {
        let i = pos.index(v.len());
        v[i] ^= mask;
    }
    v
}

/// A sealed key for a request naming `algorithm`: random bytes, a valid key of that algorithm
/// (any valid key when the device makes none of it), a valid key of an arbitrary algorithm,
/// or a matching key with one byte damaged.
fn sealed_for(algorithm: Algorithm) -> impl Strategy<Value = Vec<u8>> {
    let matching = move |pick: Index| {
        let keys = &fixtures().keys;
        keys.iter()
            .find(|(a, _)| *a == algorithm)
            .unwrap_or_else(|| pick.get(keys))
            .1
            .clone()
    };
    prop_oneof![
        1 => bytes(96),
        4 => any::<Index>().prop_map(matching),
        1 => any::<Index>().prop_map(|pick| pick.get(&fixtures().keys).1.clone()),
        1 => (any::<Index>(), any::<Index>(), 1u8..=255)
            .prop_map(move |(pick, pos, mask)| damage(matching(pick), pos, mask)),
    ]
}

/// Mostly one of `likely` (the algorithms a request kind is meant for, so that most cases get
/// past the algorithm checks), sometimes any algorithm.
fn algorithm_for(likely: &'static [Algorithm]) -> impl Strategy<Value = Algorithm> {
    prop_oneof![3 => prop::sample::select(likely), 1 => algorithm()]
}

/// An algorithm from `algorithm_for(likely)` and a sealed key from `sealed_for` it.
fn with_sealed(likely: &'static [Algorithm]) -> impl Strategy<Value = (Algorithm, Vec<u8>)> {
    algorithm_for(likely).prop_flat_map(|a| (Just(a), sealed_for(a)))
}

const ASYMMETRIC: &[Algorithm] = &[Algorithm::EccP256, Algorithm::Sm2];

fn request() -> impl Strategy<Value = OwnedRequest> {
    let symmetric = &Algorithm::ALL[..];
    prop_oneof![
        prop_oneof![Just(PROTOCOL_VERSION), any::<u16>()].prop_map(OwnedRequest::Hello),
        algorithm().prop_map(OwnedRequest::GenerateKey),
        (
            algorithm_for(symmetric),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 16),
                prop::collection::vec(any::<u8>(), 32),
                bytes(64),
            ],
        )
            .prop_map(|(a, m)| OwnedRequest::ImportKey(a, m)),
        (with_sealed(symmetric), bytes(64), bytes(512))
            .prop_map(|((a, s), d, p)| OwnedRequest::Encrypt(a, s, d, p)),
        (
            with_sealed(symmetric),
            bytes(64),
            prop_oneof![prop::collection::vec(any::<u8>(), 12), bytes(24)],
            bytes(512),
        )
            .prop_map(|((a, s), d, n, c)| OwnedRequest::Decrypt(a, s, d, n, c)),
        prop_oneof![any::<u32>(), 0..=MAX_RANDOM_LEN as u32 + 64].prop_map(OwnedRequest::Random),
        algorithm_for(ASYMMETRIC).prop_map(OwnedRequest::GenerateKeyPair),
        (
            with_sealed(ASYMMETRIC),
            prop_oneof![prop::collection::vec(any::<u8>(), 32), bytes(512)],
            any::<bool>(),
        )
            .prop_map(|((a, s), m, d)| OwnedRequest::Sign(a, s, m, d)),
        (
            with_sealed(&[Algorithm::Sm2]),
            prop_oneof![
                bytes(512),
                (any::<Index>(), 1u8..=255).prop_map(|(pos, mask)| damage(
                    fixtures().sm2_ciphertext.clone(),
                    pos,
                    mask
                )),
                any::<Index>().prop_map(|cut| {
                    let ct = &fixtures().sm2_ciphertext;
                    ct[..cut.index(ct.len())].to_vec()
                }),
                Just(()).prop_map(|()| fixtures().sm2_ciphertext.clone()),
            ],
        )
            .prop_map(|((a, s), c)| OwnedRequest::AsymDecrypt(a, s, c)),
        bytes(128).prop_map(OwnedRequest::Attest),
    ]
}

/// Whether `resp` is an answer `req` may get at all.
fn answers(req: &Request<'_>, resp: &OwnedResponse) -> bool {
    matches!(
        (req, resp),
        (_, OwnedResponse::Error(_))
            | (Request::Hello { .. }, OwnedResponse::Hello(_))
            | (
                Request::GenerateKey { .. } | Request::ImportKey { .. },
                OwnedResponse::Sealed(_)
            )
            | (Request::Encrypt { .. }, OwnedResponse::Encrypted { .. })
            | (
                Request::Decrypt { .. } | Request::AsymDecrypt { .. },
                OwnedResponse::Plaintext(_)
            )
            | (Request::Random { .. }, OwnedResponse::Random(_))
            | (
                Request::GenerateKeyPair { .. },
                OwnedResponse::KeyPair { .. }
            )
            | (Request::Sign { .. }, OwnedResponse::Signature(_))
            | (Request::Attest { .. }, OwnedResponse::Attestation { .. })
    )
}

/// Request bytes with small values over-represented, led by a plausible variant index, so
/// that postcard accepts a fair share of them.
fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = any::<u16>().prop_map(|w| {
        let b = (w >> 8) as u8;
        if w & 1 == 0 {
            b % 16
        } else {
            b
        }
    });
    (0u8..12, prop::collection::vec(byte, 0..1024)).prop_map(|(variant, mut rest)| {
        rest.insert(0, variant);
        rest
    })
}

#[test]
fn fixtures_are_usable() {
    let f = fixtures();
    assert_eq!(f.keys.len(), 4);
    let mut svc = service();
    let (_, sm2_key) = f.keys.iter().find(|(a, _)| *a == Algorithm::Sm2).unwrap();
    assert_eq!(
        call(
            &mut svc,
            Request::AsymDecrypt {
                algorithm: Algorithm::Sm2,
                sealed: sm2_key,
                ciphertext: &f.sm2_ciphertext,
            }
        ),
        OwnedResponse::Plaintext(b"fixture plaintext".to_vec())
    );
    assert!(f.sm2_public_key.len() > 64);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The device's whole input path: any bytes postcard accepts as a request are answered,
    /// with an answer of the request's kind, and never panic the handler.
    #[test]
    fn any_decodable_bytes_are_answered(bytes in request_bytes()) {
        if let Ok(req) = postcard::from_bytes::<Request<'_>>(&bytes) {
            let resp = call(&mut service(), req.clone());
            prop_assert!(answers(&req, &resp), "{:?} -> {:?}", req, resp);
        }
    }

    /// `Random` and `Hello` are answered exactly as documented for every length and version.
    #[test]
    fn random_and_hello_follow_their_limits(
        len in prop_oneof![any::<u32>(), 0..=MAX_RANDOM_LEN as u32 + 64],
        protocol in prop_oneof![Just(PROTOCOL_VERSION), any::<u16>()],
    ) {
        let mut svc = service();
        let resp = call(&mut svc, Request::Random { len });
        if len == 0 || len as usize > MAX_RANDOM_LEN {
            prop_assert_eq!(resp, OwnedResponse::Error(DeviceError::BadLength));
        } else {
            prop_assert!(matches!(resp, OwnedResponse::Random(ref r) if r.len() == len as usize));
        }
        let resp = call(&mut svc, Request::Hello { protocol });
        if protocol == PROTOCOL_VERSION {
            prop_assert_eq!(resp, OwnedResponse::Hello(svc.info().into()));
        } else {
            prop_assert_eq!(resp, OwnedResponse::Error(DeviceError::UnsupportedProtocol));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Structured requests of every kind, with valid, foreign and damaged sealed keys, go the
    /// device's way (frame in, handle, frame out) without a panic, and the response frame the
    /// device builds in its fixed buffers (the borrowed response from its output buffer)
    /// decodes on the host to the same response.
    #[test]
    fn structured_requests_take_the_device_path(seq in any::<u32>(), req in request()) {
        let body = req.as_request();
        let mut frame = encode_frame_vec(seq, &body).unwrap();
        let n = frame.len() - 1;
        let decoded: Envelope<Request<'_>> = decode_frame(&mut frame[..n]).unwrap();
        prop_assert_eq!(&decoded.body, &body);
        let mut output = vec![0u8; OUTPUT_LEN];
        let resp = service().handle(decoded.body, &mut output);
        let owned = resp.to_owned_response();
        prop_assert!(answers(&body, &owned), "{:?} -> {:?}", body, owned);
        // The pairing the host checks replies against (`Request::expects`) is the device's.
        prop_assert!(
            owned.kind() == ResponseKind::Error || owned.kind() == body.expects(),
            "{:?} -> {:?}", body, owned
        );
        let mut scratch = vec![0u8; MAX_PAYLOAD + 4];
        let mut out = vec![0u8; MAX_FRAME];
        let m = encode_frame(seq, &resp, &mut scratch, &mut out).unwrap();
        let back: Envelope<OwnedResponse> = decode_frame(&mut out[..m - 1]).unwrap();
        prop_assert_eq!(back.seq, seq);
        prop_assert_eq!(back.body, owned);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// AEAD semantics of the device: what it encrypts under a key it generated decrypts to
    /// the same plaintext, and one flipped ciphertext bit is an authentication failure.
    #[test]
    fn symmetric_round_trip_and_tamper_detection(
        algorithm in prop::sample::select(&Algorithm::ALL[..]),
        plaintext in bytes(2048),
        aad in bytes(256),
        flip in any::<Index>(),
        bit in 0u8..8,
    ) {
        let mut svc = service();
        let sealed = match call(&mut svc, Request::GenerateKey { algorithm }) {
            OwnedResponse::Sealed(s) => s,
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        let (nonce, mut ciphertext) = match call(&mut svc, Request::Encrypt {
            algorithm,
            sealed: &sealed,
            aad: &aad,
            plaintext: &plaintext,
        }) {
            OwnedResponse::Encrypted { nonce, ciphertext } => (nonce, ciphertext),
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        prop_assert_eq!(ciphertext.len(), plaintext.len() + algorithm.tag_len());
        let resp = call(&mut svc, Request::Decrypt {
            algorithm,
            sealed: &sealed,
            aad: &aad,
            nonce: &nonce,
            ciphertext: &ciphertext,
        });
        prop_assert_eq!(resp, OwnedResponse::Plaintext(plaintext));
        let i = flip.index(ciphertext.len());
        ciphertext[i] ^= 1 << bit;
        let resp = call(&mut svc, Request::Decrypt {
            algorithm,
            sealed: &sealed,
            aad: &aad,
            nonce: &nonce,
            ciphertext: &ciphertext,
        });
        prop_assert_eq!(resp, OwnedResponse::Error(DeviceError::AuthenticationFailed));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// SM2 decryption parses host-supplied DER: a real ciphertext decrypts to its plaintext,
    /// and the same ciphertext with one flipped bit or cut short is refused, never misread.
    #[test]
    fn sm2_decrypt_round_trip_and_damage(
        plaintext in prop::collection::vec(any::<u8>(), 1..=256),
        flip in any::<Index>(),
        bit in 0u8..8,
        cut in any::<Index>(),
    ) {
        let f = fixtures();
        let (_, sealed) = f.keys.iter().find(|(a, _)| *a == Algorithm::Sm2).unwrap();
        let ciphertext = sm2_encrypt(&f.sm2_public_key, &plaintext);
        let mut svc = service();
        let decrypt = |svc: &mut KeyService<OsRng>, ciphertext: &[u8]| {
            call(svc, Request::AsymDecrypt { algorithm: Algorithm::Sm2, sealed, ciphertext })
        };
        prop_assert_eq!(decrypt(&mut svc, &ciphertext), OwnedResponse::Plaintext(plaintext));
        let mut flipped = ciphertext.clone();
        flipped[flip.index(ciphertext.len())] ^= 1 << bit;
        prop_assert_eq!(
            decrypt(&mut svc, &flipped),
            OwnedResponse::Error(DeviceError::AuthenticationFailed)
        );
        prop_assert_eq!(
            decrypt(&mut svc, &ciphertext[..cut.index(ciphertext.len())]),
            OwnedResponse::Error(DeviceError::AuthenticationFailed)
        );
    }
}

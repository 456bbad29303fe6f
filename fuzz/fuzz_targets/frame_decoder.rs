//! Host <-> firmware framing (shared/src/frame.rs) and the postcard messages inside
//! (shared/src/wire.rs), from both ends of the serial line:
//!
//! * the device's path: a `FrameReader` fed the raw byte stream, `open_frame` on each frame,
//!   `payload_seq` and `decode_payload::<Request>` on the payload;
//! * the host's path: `decode_frame::<OwnedResponse>` and `wire::reply` against every
//!   request kind;
//! * the payload decoders directly on the input, so the fuzzer need not get a CRC right to
//!   reach them.
//!
//! Nothing may panic. Whatever decodes must re-encode and decode to the same value, and a
//! frame built from it must come back through the reader unchanged.
#![no_main]

use keyward_shared::frame::{
    decode_frame, decode_payload, encode_frame, encode_frame_vec, open_frame, payload_seq,
    Envelope, Feed, FrameReader, MAX_FRAME, SCRATCH_LEN,
};
use keyward_shared::wire::{self, replies, DecryptPadding, OwnedResponse, Request, SignPadding};
use keyward_shared::Algorithm;
use libfuzzer_sys::fuzz_target;

/// One request of every kind, to ask `reply` about a decoded response.
fn every_request() -> [Request<'static>; 18] {
    [
        Request::Hello { protocol: 1 },
        Request::GenerateKey {
            algorithm: Algorithm::Aes256Gcm,
        },
        Request::ImportKey {
            algorithm: Algorithm::Sm4Gcm,
            material: &[1; 16],
        },
        Request::Encrypt {
            algorithm: Algorithm::Aes256Gcm,
            sealed: &[2],
            aad: &[],
            plaintext: &[3],
        },
        Request::Decrypt {
            algorithm: Algorithm::Aes256Gcm,
            sealed: &[2],
            aad: &[],
            nonce: &[0; 12],
            ciphertext: &[4; 16],
        },
        Request::Random { len: 32 },
        Request::GenerateKeyPair {
            algorithm: Algorithm::EccP256,
        },
        Request::Sign {
            algorithm: Algorithm::Sm2,
            sealed: &[5],
            message: b"m",
            is_digest: false,
        },
        Request::AsymDecrypt {
            algorithm: Algorithm::Rsa2048,
            sealed: &[6],
            ciphertext: &[7],
        },
        Request::Attest {
            challenge: &[8; 32],
        },
        Request::Pair {
            ephemeral: &[4; 65],
            wrapped_key: &[9; 48],
        },
        Request::BeginSession,
        Request::Authenticated {
            counter: 1,
            tag: &[10; 32],
            request: &[5, 32],
        },
        Request::GeneratePrime {
            algorithm: Algorithm::Rsa2048,
        },
        Request::AssembleKeyPair {
            algorithm: Algorithm::Rsa2048,
            first: &[11],
            second: &[12],
        },
        Request::SignRsa {
            algorithm: Algorithm::Rsa2048,
            padding: SignPadding::PssSha256,
            sealed: &[13],
            message: &[14; 32],
            is_digest: true,
        },
        Request::DecryptRsa {
            algorithm: Algorithm::Rsa2048,
            padding: DecryptPadding::OaepSha256,
            sealed: &[15],
            ciphertext: &[16; 256],
        },
        Request::ImportWrapped {
            algorithm: Algorithm::Aes256Gcm,
            padding: DecryptPadding::OaepSha1,
            wrapping: &[17],
            encrypted: &[18; 256],
        },
    ]
}

/// The host's use of a response: ask `reply` for the fields each request kind expects.
fn host_takes(resp: &OwnedResponse) {
    let _ = format!("{resp:?}");
    for req in every_request() {
        let _ = wire::reply::<replies::Hello>(&req, resp.clone());
        let _ = wire::reply::<replies::Sealed>(&req, resp.clone());
        let _ = wire::reply::<replies::Encrypted>(&req, resp.clone());
        let _ = wire::reply::<replies::Plaintext>(&req, resp.clone());
        let _ = wire::reply::<replies::Random>(&req, resp.clone());
        let _ = wire::reply::<replies::KeyPair>(&req, resp.clone());
        let _ = wire::reply::<replies::Signature>(&req, resp.clone());
        let _ = wire::reply::<replies::Attestation>(&req, resp.clone());
        let _ = wire::reply::<replies::Paired>(&req, resp.clone());
        let _ = wire::reply::<replies::Session>(&req, resp.clone());
        let _ = wire::reply::<replies::Authenticated>(&req, resp.clone());
        let _ = wire::reply::<replies::Imported>(&req, resp.clone());
    }
    // An enveloped answer's inner bytes, as the host decodes them once the tag verifies.
    if let OwnedResponse::Authenticated { response, .. } = resp {
        if let Ok(inner) = postcard::from_bytes::<OwnedResponse>(response) {
            let _ = format!("{inner:?}");
        }
    }
}

fn check_request(env: &Envelope<Request<'_>>) {
    let _ = format!("{:?}", env.body);
    let _ = (env.body.kind(), env.body.expects());
    let bytes = postcard::to_allocvec(env).expect("a decoded request encodes");
    let back: Envelope<Request<'_>> = decode_payload(&bytes).expect("re-encoded request decodes");
    assert_eq!(&back, env);
    // A frame built from it survives the reader and the decoder.
    if let Ok(frame) = encode_frame_vec(env.seq, &env.body) {
        assert_eq!(frame.iter().filter(|&&b| b == 0).count(), 1);
        let mut buf = vec![0u8; frame.len()];
        let mut reader = FrameReader::new(&mut buf);
        let mut got = None;
        for &b in &frame {
            if let Feed::Frame(n) = reader.feed(b) {
                got = Some(reader.frame(n).to_vec());
            }
        }
        let mut got = got.expect("the reader returns the frame");
        let back: Envelope<Request<'_>> = decode_frame(&mut got).expect("own frame decodes");
        assert_eq!(&back, env);
    }
}

fn check_response(env: &Envelope<OwnedResponse>) {
    host_takes(&env.body);
    let bytes = postcard::to_allocvec(env).expect("a decoded response encodes");
    let back: Envelope<OwnedResponse> =
        decode_payload(&bytes).expect("re-encoded response decodes");
    assert_eq!(&back, env);
    // The device's no-alloc encoder agrees with the host's.
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let mut out = vec![0u8; MAX_FRAME];
    if let Ok(n) = encode_frame(env.seq, &env.body, &mut scratch, &mut out) {
        assert_eq!(
            encode_frame_vec(env.seq, &env.body).ok().as_deref(),
            Some(&out[..n])
        );
        let back: Envelope<OwnedResponse> =
            decode_frame(&mut out[..n - 1]).expect("own frame decodes");
        assert_eq!(&back, env);
    }
}

fuzz_target!(|data: &[u8]| {
    // Payload decoders straight on the input (no COBS, no CRC in the way).
    let _ = payload_seq(data);
    if let Ok(env) = decode_payload::<Request<'_>>(data) {
        check_request(&env);
    }
    if let Ok(env) = decode_payload::<OwnedResponse>(data) {
        check_response(&env);
    }
    let _ = postcard::from_bytes::<Request<'_>>(data);
    if let Ok(resp) = postcard::from_bytes::<OwnedResponse>(data) {
        host_takes(&resp);
    }

    // The input as a serial byte stream, through a small reader (so overflow and resync are
    // reached) and a large one.
    for size in [64usize, 4096] {
        let mut buf = vec![0u8; size];
        let mut reader = FrameReader::new(&mut buf);
        for &byte in data {
            let Feed::Frame(n) = reader.feed(byte) else {
                continue;
            };
            assert!(n <= size);
            let frame = reader.frame(n);
            assert!(!frame.contains(&0));
            let mut host_copy = frame.to_vec();
            // Device side.
            if let Ok(payload) = open_frame(frame) {
                let _ = payload_seq(payload);
                if let Ok(env) = decode_payload::<Request<'_>>(payload) {
                    check_request(&env);
                }
            }
            // Host side.
            if let Ok(env) = decode_frame::<OwnedResponse>(&mut host_copy) {
                check_response(&env);
            }
        }
    }

    // The whole input as one frame without its delimiter, as the host's serial backend hands
    // it over.
    let mut whole = data.to_vec();
    let _ = decode_frame::<Request<'_>>(&mut whole);
    let mut whole = data.to_vec();
    let _ = decode_frame::<OwnedResponse>(&mut whole);
});

//! Property tests for the serial framing (`keyward_shared::frame`): the part of the device that
//! reads untrusted bytes off the line. Together with firmware/tests/handler_props.rs they are
//! the fuzz targets CI runs on every `cargo test --workspace`: no input may make them panic.

use keyward_shared::frame::{
    decode_frame, encode_frame, encode_frame_vec, Envelope, Feed, FrameReader, MAX_FRAME,
};
use keyward_shared::wire::{OwnedResponse, Request};
use keyward_shared::Algorithm;
use proptest::prelude::*;

#[path = "common/requests.rs"]
mod requests;
use requests::*;

/// A byte that is zero at least once in `one_in` (a power of two), else uniform. (Mapped
/// rather than `prop_oneof!`, which is some twenty times slower per element in debug builds.)
fn zero_biased_byte(one_in: u16) -> impl Strategy<Value = u8> {
    any::<u16>().prop_map(move |w| {
        if w & (one_in - 1) == 0 {
            0
        } else {
            (w >> 8) as u8
        }
    })
}

/// Byte vectors up to `max` long, with zeros over-represented (they are what COBS removes).
fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(zero_biased_byte(4), 0..=max)
}

fn request() -> impl Strategy<Value = OwnedRequest> {
    prop_oneof![
        any::<u16>().prop_map(OwnedRequest::Hello),
        algorithm().prop_map(OwnedRequest::GenerateKey),
        (algorithm(), bytes(64)).prop_map(|(a, m)| OwnedRequest::ImportKey(a, m)),
        (algorithm(), bytes(96), bytes(64), bytes(512))
            .prop_map(|(a, s, d, p)| OwnedRequest::Encrypt(a, s, d, p)),
        (algorithm(), bytes(96), bytes(64), bytes(16), bytes(512))
            .prop_map(|(a, s, d, n, c)| OwnedRequest::Decrypt(a, s, d, n, c)),
        any::<u32>().prop_map(OwnedRequest::Random),
        algorithm().prop_map(OwnedRequest::GenerateKeyPair),
        (algorithm(), bytes(96), bytes(512), any::<bool>())
            .prop_map(|(a, s, m, d)| OwnedRequest::Sign(a, s, m, d)),
        (algorithm(), bytes(96), bytes(512))
            .prop_map(|(a, s, c)| OwnedRequest::AsymDecrypt(a, s, c)),
        bytes(128).prop_map(OwnedRequest::Attest),
    ]
}

/// What `FrameReader` should report for `stream`, worked out independently: every
/// delimiter-terminated run of non-zero bytes is a frame if it fits `cap`, a drop if not.
fn expected_events(stream: &[u8], cap: usize) -> Vec<Result<Vec<u8>, ()>> {
    let mut runs: Vec<&[u8]> = stream.split(|b| *b == 0).collect();
    runs.pop(); // the bytes after the last delimiter are still pending
    runs.into_iter()
        .filter(|run| !run.is_empty())
        .map(|run| {
            if run.len() <= cap {
                Ok(run.to_vec())
            } else {
                Err(())
            }
        })
        .collect()
}

#[test]
fn every_algorithm_id_is_generated() {
    let ids: Vec<Algorithm> = (0..=u8::MAX).filter_map(Algorithm::from_u8).collect();
    assert_eq!(ids, ALGORITHMS);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The reader takes raw line bytes: any stream, into any buffer size, must neither panic
    /// nor yield anything but the delimited runs that fit, and the decoder must then answer
    /// every such frame with `Ok` or `Err`.
    #[test]
    fn reader_and_decoder_take_any_stream(
        stream in prop::collection::vec(zero_biased_byte(8), 0..4096),
        cap in prop_oneof![0usize..64, 64usize..1024, Just(MAX_FRAME)],
    ) {
        let mut buf = vec![0u8; cap];
        let mut reader = FrameReader::new(&mut buf);
        let mut events = Vec::new();
        for &b in &stream {
            match reader.feed(b) {
                Feed::Pending => {}
                Feed::Dropped => events.push(Err(())),
                Feed::Frame(n) => {
                    let frame = reader.frame(n);
                    events.push(Ok(frame.to_vec()));
                    let _ = decode_frame::<Request<'_>>(frame);
                    // Decoding works in place: decode the untouched bytes as a response too.
                    let mut copy = events.last().unwrap().clone().unwrap();
                    let _ = decode_frame::<OwnedResponse>(&mut copy);
                }
            }
        }
        prop_assert_eq!(events, expected_events(&stream, cap));
    }

    /// `decode_frame` is called on whatever the reader hands it, and the host decodes
    /// responses the same way: arbitrary bytes (zeros included) must never panic it.
    #[test]
    fn decode_frame_takes_any_bytes(junk in bytes(2048)) {
        let mut a = junk.clone();
        let _ = decode_frame::<Request<'_>>(&mut a);
        let mut b = junk;
        let _ = decode_frame::<OwnedResponse>(&mut b);
    }

    /// The reader's resynchronisation promise: after any garbage and a delimiter, a frame
    /// from `encode_frame_vec` comes out whole and decodes to the same sequence number and body.
    #[test]
    fn frames_round_trip_after_garbage(
        seq in any::<u32>(),
        req in request(),
        garbage in bytes(256),
    ) {
        let body = req.as_request();
        let frame = encode_frame_vec(seq, &body).unwrap();
        prop_assert_eq!(frame.iter().position(|b| *b == 0), Some(frame.len() - 1));
        let mut stream = garbage;
        stream.push(0);
        stream.extend_from_slice(&frame);
        let mut buf = vec![0u8; MAX_FRAME];
        let mut reader = FrameReader::new(&mut buf);
        let mut last = None;
        for &b in &stream {
            last = Some(reader.feed(b));
        }
        prop_assert_eq!(last, Some(Feed::Frame(frame.len() - 1)));
        let back: Envelope<Request<'_>> = decode_frame(reader.frame(frame.len() - 1)).unwrap();
        prop_assert_eq!(back.seq, seq);
        prop_assert_eq!(back.body, body);
    }

    /// The device encodes into fixed buffers: any buffer sizes give `Ok` with the same bytes
    /// as `encode_frame_vec`, or an error, never a panic or a truncated frame.
    #[test]
    fn encode_frame_into_any_buffers(
        seq in any::<u32>(),
        req in request(),
        scratch_len in 0usize..1200,
        out_len in 0usize..1300,
    ) {
        let body = req.as_request();
        let expected = encode_frame_vec(seq, &body).unwrap();
        let mut scratch = vec![0u8; scratch_len];
        let mut out = vec![0u8; out_len];
        if let Ok(n) = encode_frame(seq, &body, &mut scratch, &mut out) {
            prop_assert_eq!(&out[..n], &expected[..]);
        }
    }

    /// CRC-32 catches every single-bit error: a flipped bit anywhere in an encoded frame must
    /// not panic the decoder nor decode to a message (the body could differ from what was sent).
    #[test]
    fn single_bit_flips_are_rejected(
        seq in any::<u32>(),
        req in request(),
        pos in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let body = req.as_request();
        let mut frame = encode_frame_vec(seq, &body).unwrap();
        let n = frame.len() - 1; // the delimiter is not part of what is decoded
        frame[pos.index(n)] ^= 1 << bit;
        let decoded = decode_frame::<Request<'_>>(&mut frame[..n]);
        prop_assert!(decoded.is_err(), "a flipped frame decoded: {:?}", decoded);
    }
}

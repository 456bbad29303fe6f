//! Serial framing between the host and a Keyward HSM.
//!
//! A frame is `COBS(postcard(Envelope) || CRC-32(postcard bytes), little-endian)` followed by
//! one `0x00` delimiter. COBS leaves no zero inside the frame, so a receiver resynchronises
//! after garbage or a reset by discarding bytes up to the next zero; the CRC (CRC-32/ISO-HDLC)
//! rejects corrupted frames; the sequence number pairs a response with its request so a late
//! answer to an earlier request is never taken for the current one. See docs/wire-protocol.md.
//!
//! Everything here works on caller-provided buffers: no allocation on the device's path.

use serde::{Deserialize, Serialize};

/// Largest postcard payload (the biggest request carries `wire::MAX_DATA_LEN` bytes of data
/// plus a sealed key and associated data).
pub const MAX_PAYLOAD: usize = 72 * 1024;
/// Largest encoded frame, delimiter included.
pub const MAX_FRAME: usize = cobs::max_encoding_length(MAX_PAYLOAD + CRC_LEN) + 1;
/// The scratch buffer [`encode_frame`] needs for the largest message: payload and CRC.
pub const SCRATCH_LEN: usize = MAX_PAYLOAD + CRC_LEN;
const CRC_LEN: usize = 4;
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// What travels in a frame: a sequence number and a request or response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub seq: u32,
    pub body: T,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The message does not fit the buffers (or `MAX_PAYLOAD`).
    TooLarge,
    /// Not valid COBS, or shorter than a CRC.
    Malformed,
    /// The CRC does not match: corrupted on the line.
    Crc,
    /// The CRC matched but the payload is not a message this side understands.
    Decode,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FrameError::TooLarge => "frame too large",
            FrameError::Malformed => "malformed frame",
            FrameError::Crc => "frame CRC mismatch",
            FrameError::Decode => "undecodable message",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FrameError {}

/// Encodes one frame into `out` (delimiter included) using `scratch` for the postcard bytes.
/// Returns the frame length.
pub fn encode_frame<T: Serialize>(
    seq: u32,
    body: &T,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<usize, FrameError> {
    let n = encode_payload(seq, body, scratch)?;
    finish_frame(&scratch[..n], out)
}

/// The first half of [`encode_frame`]: writes `postcard(Envelope) || CRC-32` into `scratch`
/// and returns its length. Split off so a sender whose message borrows from its `out` buffer
/// (the device's authenticated answers) can finish the frame once that borrow ends.
pub fn encode_payload<T: Serialize>(
    seq: u32,
    body: &T,
    scratch: &mut [u8],
) -> Result<usize, FrameError> {
    let envelope = Envelope { seq, body };
    let n = postcard::to_slice(&envelope, scratch)
        .map_err(|_| FrameError::TooLarge)?
        .len();
    if n > MAX_PAYLOAD || scratch.len() < n + CRC_LEN {
        return Err(FrameError::TooLarge);
    }
    let crc = CRC32.checksum(&scratch[..n]);
    scratch[n..n + CRC_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(n + CRC_LEN)
}

/// The second half of [`encode_frame`]: COBS-encodes what [`encode_payload`] wrote and adds
/// the delimiter; returns the frame length.
pub fn finish_frame(payload_and_crc: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
    let m = cobs::try_encode(payload_and_crc, out).map_err(|_| FrameError::TooLarge)?;
    *out.get_mut(m).ok_or(FrameError::TooLarge)? = 0;
    Ok(m + 1)
}

/// Encodes one frame into a new vector.
#[cfg(feature = "alloc")]
pub fn encode_frame_vec<T: Serialize>(
    seq: u32,
    body: &T,
) -> Result<alloc::vec::Vec<u8>, FrameError> {
    let payload =
        postcard::to_allocvec(&Envelope { seq, body }).map_err(|_| FrameError::TooLarge)?;
    if payload.len() > MAX_PAYLOAD {
        return Err(FrameError::TooLarge);
    }
    let mut scratch = alloc::vec![0u8; payload.len() + CRC_LEN];
    let mut out = alloc::vec![0u8; cobs::max_encoding_length(scratch.len()) + 1];
    let n = encode_frame(seq, body, &mut scratch, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// Decodes a frame (without its delimiter) in place; the message may borrow from `frame`.
pub fn decode_frame<'a, T: Deserialize<'a>>(
    frame: &'a mut [u8],
) -> Result<Envelope<T>, FrameError> {
    decode_payload(open_frame(frame)?)
}

/// Undoes a frame's COBS in place and checks its CRC; returns the postcard payload (inside
/// `frame`). The first half of [`decode_frame`], for a receiver that wants the payload's
/// sequence number when the message itself is not understood ([`payload_seq`]).
pub fn open_frame(frame: &mut [u8]) -> Result<&mut [u8], FrameError> {
    let n = cobs::decode_in_place(frame).map_err(|_| FrameError::Malformed)?;
    if n < CRC_LEN {
        return Err(FrameError::Malformed);
    }
    let (payload, crc) = frame[..n].split_at_mut(n - CRC_LEN);
    let expected = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if CRC32.checksum(payload) != expected {
        return Err(FrameError::Crc);
    }
    Ok(payload)
}

/// Decodes the payload [`open_frame`] returned; the message may borrow from it.
pub fn decode_payload<'a, T: Deserialize<'a>>(
    payload: &'a [u8],
) -> Result<Envelope<T>, FrameError> {
    postcard::from_bytes(payload).map_err(|_| FrameError::Decode)
}

/// The sequence number in front of a CRC-checked payload, whatever message follows it.
pub fn payload_seq(payload: &[u8]) -> Option<u32> {
    postcard::take_from_bytes::<u32>(payload)
        .ok()
        .map(|(seq, _)| seq)
}

/// What one received byte did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Inside a frame.
    Pending,
    /// A frame of this many bytes (delimiter excluded) is in `frame()`.
    Frame(usize),
    /// A frame longer than the buffer ended and was thrown away.
    Dropped,
}

/// Collects bytes from a serial line into frames, in a fixed caller-provided buffer. An
/// over-long frame is discarded up to its delimiter, which is how the reader resynchronises.
pub struct FrameReader<'b> {
    buf: &'b mut [u8],
    len: usize,
    overflowed: bool,
}

impl<'b> FrameReader<'b> {
    pub fn new(buf: &'b mut [u8]) -> Self {
        FrameReader {
            buf,
            len: 0,
            overflowed: false,
        }
    }

    pub fn feed(&mut self, byte: u8) -> Feed {
        if byte == 0 {
            let len = core::mem::take(&mut self.len);
            if core::mem::take(&mut self.overflowed) {
                return Feed::Dropped;
            }
            return if len == 0 {
                Feed::Pending
            } else {
                Feed::Frame(len)
            };
        }
        if self.len == self.buf.len() {
            self.overflowed = true;
            return Feed::Pending;
        }
        if !self.overflowed {
            self.buf[self.len] = byte;
            self.len += 1;
        }
        Feed::Pending
    }

    /// The last complete frame's bytes (valid until the next `feed`).
    pub fn frame(&mut self, len: usize) -> &mut [u8] {
        &mut self.buf[..len]
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::wire::{DeviceError, OwnedResponse, Request, Response};
    use alloc::vec::Vec;

    fn hex(b: &[u8]) -> alloc::string::String {
        b.iter().map(|x| alloc::format!("{x:02x}")).collect()
    }

    /// Each request encodes to its golden frame and decodes back to itself.
    fn golden_requests(requests: &[(u32, Request<'_>, &str)]) {
        for (seq, req, golden) in requests {
            let mut frame = encode_frame_vec(*seq, req).unwrap();
            assert_eq!(hex(&frame), *golden, "{req:?}");
            let n = frame.len() - 1;
            assert_eq!(
                &decode_frame::<Request<'_>>(&mut frame[..n]).unwrap().body,
                req
            );
        }
    }

    /// Each response encodes to its golden frame and decodes on the host's side to its owned
    /// form, with its sequence number.
    fn golden_responses(responses: &[(u32, Response<'_>, &str)]) {
        for (seq, resp, golden) in responses {
            let mut frame = encode_frame_vec(*seq, resp).unwrap();
            assert_eq!(hex(&frame), *golden, "{resp:?}");
            let n = frame.len() - 1;
            let back = decode_frame::<OwnedResponse>(&mut frame[..n]).unwrap();
            assert_eq!((back.seq, back.body), (*seq, resp.to_owned_response()));
        }
    }

    /// These bytes are documented in docs/wire-protocol.md; a change here is a protocol change.
    #[test]
    fn golden_frames() {
        let hello = encode_frame_vec(1, &Request::Hello { protocol: 1 }).unwrap();
        assert_eq!(hex(&hello), "02010601b383848900");
        let random = encode_frame_vec(7, &Request::Random { len: 32 }).unwrap();
        assert_eq!(hex(&random), "080705201a1b17bc00");
        let err = encode_frame_vec(7, &Response::Error(DeviceError::BadLength)).unwrap();
        assert_eq!(hex(&err), "08070504cbff148000");
    }

    /// The pairing messages (appended variants: requests 10-12, responses 9-11, device errors
    /// 7-10). Computed independently with Python's `zlib.crc32` and a hand-written COBS
    /// encoder; documented in docs/wire-protocol.md. Each response also decodes back on the
    /// host's side.
    #[test]
    fn golden_frames_of_pairing() {
        let requests: [(u32, Request<'_>, &str); 3] = [
            (
                3,
                Request::Pair {
                    ephemeral: &[0x04],
                    wrapped_key: &[0xaa, 0xbb],
                },
                "0c030a010402aabb6bb2c2b400",
            ),
            (2, Request::BeginSession, "07020bf5a93de400"),
            (
                4,
                Request::Authenticated {
                    counter: 300,
                    tag: &[0x11, 0x11],
                    // postcard(Request::Random { len: 32 })
                    request: &[0x05, 0x20],
                },
                "0f040cac02021111020520d2f758db00",
            ),
        ];
        golden_requests(&requests);
        let responses: [(u32, Response<'_>, &str); 7] = [
            (3, Response::Paired, "07030998f9281300"),
            (
                2,
                Response::Session { nonce: &[0x5a; 4] },
                "0c020a045a5a5a5a6502995000",
            ),
            (
                4,
                Response::Authenticated {
                    counter: 300,
                    tag: &[0x22, 0x22],
                    // postcard(Response::Error(BadLength))
                    response: &[0x05, 0x04],
                },
                "0f040bac02022222020504d3eb258700",
            ),
            (
                5,
                Response::Error(DeviceError::NotPaired),
                "080505071f7a991a00",
            ),
            (
                5,
                Response::Error(DeviceError::Unauthenticated),
                "080505088e67268a00",
            ),
            (
                5,
                Response::Error(DeviceError::Replayed),
                "08050509185721fd00",
            ),
            (
                5,
                Response::Error(DeviceError::AlreadyPaired),
                "0805050aa206286400",
            ),
        ];
        golden_responses(&responses);
    }

    /// The RSA and BYOK messages (issue 18; appended variants: requests 13-17, response 12,
    /// device error 11). Computed independently by a Python script (postcard by hand,
    /// `zlib.crc32`, a hand-written COBS encoder) whose output is pasted here; documented in
    /// docs/wire-protocol.md.
    #[test]
    fn golden_frames_of_rsa_and_byok() {
        use crate::wire::{DecryptPadding, SignPadding};
        use crate::Algorithm;
        let requests: [(u32, Request<'_>, &str); 5] = [
            (
                6,
                Request::GeneratePrime {
                    algorithm: Algorithm::Rsa2048,
                },
                "08060d02c1ba6ca000",
            ),
            (
                7,
                Request::AssembleKeyPair {
                    algorithm: Algorithm::Rsa2048,
                    first: &[0xa1, 0xa2],
                    second: &[0xb1],
                },
                "0d070e0202a1a201b1731a868200",
            ),
            (
                8,
                Request::SignRsa {
                    algorithm: Algorithm::Rsa2048,
                    padding: SignPadding::PssSha256,
                    sealed: &[0x01],
                    message: &[0x6d],
                    is_digest: false,
                },
                "09080f02010101016d059e577f8c00",
            ),
            (
                9,
                Request::DecryptRsa {
                    algorithm: Algorithm::Rsa2048,
                    padding: DecryptPadding::OaepSha256,
                    sealed: &[0x01],
                    ciphertext: &[0xc0, 0xc1],
                },
                "0e09100202010102c0c12f9c874d00",
            ),
            (
                10,
                Request::ImportWrapped {
                    algorithm: Algorithm::Aes256Gcm,
                    padding: DecryptPadding::Pkcs1v15,
                    wrapping: &[0x01],
                    encrypted: &[0xe0],
                },
                "030a110109010101e0b08a243500",
            ),
        ];
        golden_requests(&requests);
        let responses: [(u32, Response<'_>, &str); 2] = [
            (
                10,
                Response::Imported {
                    sealed: &[0x5e],
                    check_value: &[0xcc, 0xcc],
                },
                "0c0a0c015e02ccccddd375ae00",
            ),
            (
                6,
                Response::Error(DeviceError::TryAgain),
                "0806050b6d88691100",
            ),
        ];
        golden_responses(&responses);
        // The largest RSA messages fit a frame many times over: a decryption with a sealed
        // RSA key (670 bytes) and a 256-byte ciphertext, a key pair with its 294-byte SPKI.
        let big = Request::DecryptRsa {
            algorithm: Algorithm::Rsa2048,
            padding: DecryptPadding::Pkcs1v15,
            sealed: &[1; 670],
            ciphertext: &[0x55; 256],
        };
        let frame = encode_frame_vec(11, &big).unwrap();
        assert_eq!(frame.len(), 943);
        assert!(frame.len() <= MAX_FRAME);
        let pair = Response::KeyPair {
            sealed: &[1; 670],
            public_key: &[2; 294],
        };
        assert!(encode_frame_vec(12, &pair).unwrap().len() <= MAX_FRAME);
    }

    #[test]
    fn round_trip_borrows_from_the_frame() {
        let req = Request::Encrypt {
            algorithm: crate::Algorithm::Aes256Gcm,
            sealed: &[0, 1, 2, 0, 0],
            aad: b"aad\0",
            plaintext: &[0u8; 300],
        };
        let mut frame = encode_frame_vec(42, &req).unwrap();
        assert_eq!(
            frame.iter().filter(|b| **b == 0).count(),
            1,
            "only the delimiter is zero"
        );
        let n = frame.len() - 1;
        let back: Envelope<Request<'_>> = decode_frame(&mut frame[..n]).unwrap();
        assert_eq!(back.seq, 42);
        assert_eq!(back.body, req);
    }

    /// A CRC-valid frame whose message this side does not know still gives up its `seq`,
    /// so the device can answer it; a frame that fails its CRC does not get that far.
    #[test]
    fn unknown_message_keeps_its_sequence_number() {
        let mut frame = encode_frame_vec(6, &200u32).unwrap();
        let n = frame.len() - 1;
        let payload = open_frame(&mut frame[..n]).unwrap();
        assert_eq!(
            decode_payload::<Request<'_>>(payload).unwrap_err(),
            FrameError::Decode
        );
        assert_eq!(payload_seq(payload), Some(6));
        assert_eq!(payload_seq(&[]), None);
        let mut bad = encode_frame_vec(6, &200u32).unwrap();
        bad[1] ^= 0x40;
        assert_eq!(open_frame(&mut bad[..n]).unwrap_err(), FrameError::Crc);
    }

    #[test]
    fn corruption_is_detected() {
        let frame = encode_frame_vec(9, &Request::Random { len: 16 }).unwrap();
        let n = frame.len() - 1;
        for i in 0..n {
            for bit in 0..8 {
                let mut f = frame.clone();
                f[i] ^= 1 << bit;
                if f[i] == 0 {
                    continue; // a new delimiter: the reader splits there instead
                }
                let r = decode_frame::<Request<'_>>(&mut f[..n]);
                assert!(r.is_err(), "flip at byte {i} bit {bit} accepted");
            }
        }
    }

    #[test]
    fn no_input_makes_the_decoder_panic() {
        // A small deterministic generator: every length up to 300, many contents.
        let mut x: u32 = 0x1234_5678;
        for len in 0..300usize {
            for _ in 0..20 {
                let mut junk: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                let _ = decode_frame::<Request<'_>>(&mut junk);
                let _ = decode_frame::<OwnedResponse>(&mut junk);
            }
        }
    }

    #[test]
    fn reader_resynchronises_after_garbage_and_overflow() {
        let good = encode_frame_vec(3, &Request::Hello { protocol: 1 }).unwrap();
        let mut buf = [0u8; 16];
        let mut reader = FrameReader::new(&mut buf);
        let mut stream: Vec<u8> = Vec::new();
        stream.extend_from_slice(&[0x55; 40]); // garbage longer than the buffer
        stream.push(0);
        stream.extend_from_slice(&[1, 2, 3]); // short garbage
        stream.push(0);
        stream.extend_from_slice(&good);
        let mut frames = Vec::new();
        let mut dropped = 0;
        for b in stream {
            match reader.feed(b) {
                Feed::Frame(n) => {
                    let mut f = reader.frame(n).to_vec();
                    frames.push(decode_frame::<Request<'_>>(&mut f).map(|e| e.seq).ok());
                }
                Feed::Dropped => dropped += 1,
                Feed::Pending => {}
            }
        }
        assert_eq!(dropped, 1);
        assert_eq!(frames, [None, Some(3)]);
    }
}

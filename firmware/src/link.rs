//! The device's side of the serial link: the one frame loop the freestanding device build
//! (firmware/device) and the simulator (`keyward-fw-sim`) both run, so the two cannot drift.
//!
//! Bytes come off the line into a [`FrameReader`]; every frame is decoded in place, answered
//! by the [`Handler`] (the key service) into the output buffer, encoded, and written back as
//! one frame. All four buffers are the caller's ([`Buffers`]), so the loop never allocates.
//!
//! **Every non-empty frame gets exactly one answer, and the loop keeps serving:**
//!
//! | received | answer |
//! |---|---|
//! | a request | its response, with the request's `seq` |
//! | a frame whose CRC matches but whose message is not understood | `Error(UnsupportedProtocol)` with the frame's `seq` |
//! | a frame that fails its COBS or CRC check | `Error(BadFrame)` with `seq` 0 |
//! | a frame longer than the receive buffer | `Error(BadLength)` with `seq` 0 |
//! | an empty frame (two delimiters in a row) | nothing: the host sends one before every request |
//!
//! After any of them the reader starts afresh at the next `0x00` delimiter, which is how it
//! resynchronises after line noise or a reset. Answers the device cannot attribute carry
//! `seq` 0, a number the host never gives a request, so the host skips them and retries
//! after its timeout; they tell someone watching the line that the device is alive but
//! receiving damaged frames.

use crate::KeyService;
use keyward_shared::frame::{
    decode_payload, encode_frame, open_frame, payload_seq, Envelope, Feed, FrameReader,
};
use keyward_shared::wire::{DeviceError, Request, Response};
use rand_core::{CryptoRng, RngCore};

/// The sequence number of an answer to a frame the device could not attribute.
pub const UNATTRIBUTED_SEQ: u32 = 0;

/// How many bytes the loop asks the port for at a time.
const READ_CHUNK: usize = 512;

/// The serial line as the loop sees it: the device's UART, the simulator's pseudo-terminal.
pub trait Port {
    type Error;
    /// Waits for bytes from the host and reads some of them into `buf`. `Ok(0)` means the
    /// line is closed for good, and [`FrameLoop::serve`] returns.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error>;
    /// Sends one whole frame, delimiter included.
    fn write_frame(&mut self, frame: &[u8]) -> Result<(), Self::Error>;
}

/// Answers one request into an output buffer; the response borrows its bytes from `out`.
pub trait Handler {
    fn handle<'o>(&mut self, req: Request<'_>, out: &'o mut [u8]) -> Response<'o>;
}

impl<R: RngCore + CryptoRng> Handler for KeyService<R> {
    fn handle<'o>(&mut self, req: Request<'_>, out: &'o mut [u8]) -> Response<'o> {
        KeyService::handle(self, req, out)
    }
}

/// The loop's working memory, all of it supplied by the caller. Shorter buffers than the
/// sizes named here only make large messages fail (`BadLength`, `Internal`), never panic.
pub struct Buffers<'b> {
    /// The received frame, decoded in place (a request borrows from it): `frame::MAX_FRAME`.
    pub frame_in: &'b mut [u8],
    /// The key service's output (a response borrows from it): `service::OUTPUT_LEN`.
    pub output: &'b mut [u8],
    /// The answer's postcard bytes and CRC: `frame::SCRATCH_LEN`.
    pub scratch: &'b mut [u8],
    /// The answer frame: `frame::MAX_FRAME`.
    pub frame_out: &'b mut [u8],
}

/// The frame loop: a handler and the buffers it answers in.
pub struct FrameLoop<'b, H> {
    handler: H,
    reader: FrameReader<'b>,
    output: &'b mut [u8],
    scratch: &'b mut [u8],
    frame_out: &'b mut [u8],
}

impl<'b, H: Handler> FrameLoop<'b, H> {
    pub fn new(handler: H, buffers: Buffers<'b>) -> Self {
        FrameLoop {
            handler,
            reader: FrameReader::new(buffers.frame_in),
            output: buffers.output,
            scratch: buffers.scratch,
            frame_out: buffers.frame_out,
        }
    }

    /// Reads the port until it closes, answering every frame (see the module documentation).
    /// Returns the port's first error, or `Ok` when it reports end of input.
    pub fn serve<P: Port>(&mut self, port: &mut P) -> Result<(), P::Error> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            let n = port.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            for &byte in &chunk[..n] {
                if let Some(frame) = self.feed(byte) {
                    port.write_frame(frame)?;
                }
            }
        }
    }

    /// Takes one byte off the line. When it ends a frame, returns the answer frame to send
    /// (delimiter included), which stays valid until the next call.
    pub fn feed(&mut self, byte: u8) -> Option<&[u8]> {
        let (seq, response) = match self.reader.feed(byte) {
            Feed::Pending => return None,
            Feed::Dropped => (UNATTRIBUTED_SEQ, Response::Error(DeviceError::BadLength)),
            Feed::Frame(len) => answer(&mut self.handler, self.reader.frame(len), self.output),
        };
        // Every response fits frame buffers of the documented sizes; with shorter ones, or
        // should that ever not hold, the host hears `Internal` instead of nothing.
        let n = encode_frame(seq, &response, self.scratch, self.frame_out)
            .or_else(|_| {
                let internal = Response::Error(DeviceError::Internal);
                encode_frame(seq, &internal, self.scratch, self.frame_out)
            })
            .ok()?;
        Some(&self.frame_out[..n])
    }
}

/// The sequence number and response for one received frame (delimiter excluded).
fn answer<'o, H: Handler>(
    handler: &mut H,
    frame: &mut [u8],
    output: &'o mut [u8],
) -> (u32, Response<'o>) {
    let Ok(payload) = open_frame(frame) else {
        return (UNATTRIBUTED_SEQ, Response::Error(DeviceError::BadFrame));
    };
    match decode_payload::<Request<'_>>(payload) {
        Ok(Envelope { seq, body }) => (seq, handler.handle(body, output)),
        // The CRC matched, so the sequence number in front is the host's: answer it.
        Err(_) => (
            payload_seq(payload).unwrap_or(UNATTRIBUTED_SEQ),
            Response::Error(DeviceError::UnsupportedProtocol),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OUTPUT_LEN;
    use alloc::vec;
    use alloc::vec::Vec;
    use keyward_shared::frame::{decode_frame, encode_frame_vec, MAX_FRAME, SCRATCH_LEN};
    use keyward_shared::wire::OwnedResponse;
    use rand_core::OsRng;

    /// A port that plays back `input` in reads of at most `chunk` bytes, then reports end of
    /// input, and keeps every frame written to it.
    struct Script {
        input: Vec<u8>,
        at: usize,
        chunk: usize,
        written: Vec<Vec<u8>>,
    }

    impl Port for Script {
        type Error = core::convert::Infallible;
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let n = self.chunk.min(buf.len()).min(self.input.len() - self.at);
            buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
        fn write_frame(&mut self, frame: &[u8]) -> Result<(), Self::Error> {
            self.written.push(frame.to_vec());
            Ok(())
        }
    }

    /// Runs `input` through a frame loop with a receive buffer of `frame_in` bytes, read
    /// `chunk` bytes at a time; returns the frames written.
    fn serve(input: &[u8], frame_in: usize, chunk: usize) -> Vec<Vec<u8>> {
        let (mut a, mut b, mut c, mut d) = (
            vec![0u8; frame_in],
            vec![0u8; OUTPUT_LEN],
            vec![0u8; SCRATCH_LEN],
            vec![0u8; MAX_FRAME],
        );
        let buffers = Buffers {
            frame_in: &mut a,
            output: &mut b,
            scratch: &mut c,
            frame_out: &mut d,
        };
        let mut frames = FrameLoop::new(KeyService::new([3u8; 32], OsRng), buffers);
        let mut port = Script {
            input: input.to_vec(),
            at: 0,
            chunk,
            written: Vec::new(),
        };
        let Ok(()) = frames.serve(&mut port);
        port.written
    }

    fn decoded(frames: Vec<Vec<u8>>) -> Vec<(u32, OwnedResponse)> {
        frames
            .into_iter()
            .map(|mut f| {
                let n = f.len() - 1;
                assert_eq!(f[n], 0, "an answer ends with its delimiter");
                let env = decode_frame::<OwnedResponse>(&mut f[..n]).expect("valid frame");
                (env.seq, env.body)
            })
            .collect()
    }

    const HELLO: Request<'static> = Request::Hello { protocol: 1 };

    /// The loop's answer is the documented frame, byte for byte (docs/wire-protocol.md).
    #[test]
    fn answers_are_the_golden_frames() {
        let input = encode_frame_vec(7, &Request::Random { len: 0 }).unwrap();
        let out = serve(&input, MAX_FRAME, READ_CHUNK);
        assert_eq!(
            out,
            [vec![0x08, 0x07, 0x05, 0x04, 0xcb, 0xff, 0x14, 0x80, 0x00]]
        );
    }

    /// Each kind of bad frame gets its documented answer, empty frames get none, and the
    /// loop goes on to answer the request after them, however the bytes are chunked.
    #[test]
    fn bad_frames_are_answered_and_the_loop_resynchronises() {
        let mut input = vec![0, 0];
        input.extend(encode_frame_vec(1, &HELLO).unwrap());
        // Garbage glued onto a frame: one frame that fails its CRC.
        input.extend([0x55; 10]);
        input.extend(encode_frame_vec(2, &HELLO).unwrap());
        // A single flipped bit.
        let mut flipped = encode_frame_vec(3, &HELLO).unwrap();
        flipped[2] ^= 0x10;
        input.extend(flipped);
        // Not COBS: the first block claims more bytes than the frame has.
        input.extend([0x09, 0x01, 0x00]);
        // Longer than the 64-byte receive buffer below.
        input.extend([0x07; 100]);
        input.push(0);
        // CRC-valid, but not a request.
        input.extend(encode_frame_vec(4, &200u32).unwrap());
        input.extend([0, 0, 0]);
        input.extend(encode_frame_vec(5, &HELLO).unwrap());

        let bad_frame = OwnedResponse::Error(DeviceError::BadFrame);
        for chunk in [1, 3, READ_CHUNK] {
            let kinds = decoded(serve(&input, 64, chunk));
            assert_eq!(kinds.len(), 7, "one answer per non-empty frame");
            assert!(matches!(kinds[0], (1, OwnedResponse::Hello(_))));
            assert_eq!(kinds[1], (0, bad_frame.clone()));
            assert_eq!(kinds[2], (0, bad_frame.clone()));
            assert_eq!(kinds[3], (0, bad_frame.clone()));
            assert_eq!(kinds[4], (0, OwnedResponse::Error(DeviceError::BadLength)));
            assert_eq!(
                kinds[5],
                (4, OwnedResponse::Error(DeviceError::UnsupportedProtocol))
            );
            assert!(matches!(kinds[6], (5, OwnedResponse::Hello(_))));
        }
    }

    /// A request's answer is what `KeyService::handle` gives, framed with the same `seq`.
    #[test]
    fn requests_are_answered_by_the_handler() {
        let mut input = encode_frame_vec(
            41,
            &Request::GenerateKey {
                algorithm: keyward_shared::Algorithm::Aes256Gcm,
            },
        )
        .unwrap();
        input.extend(encode_frame_vec(42, &Request::Random { len: 300 }).unwrap());
        let out = decoded(serve(&input, MAX_FRAME, READ_CHUNK));
        assert!(matches!(&out[0], (41, OwnedResponse::Sealed(s)) if s.len() == 2 + 12 + 32 + 16));
        assert!(matches!(&out[1], (42, OwnedResponse::Random(r)) if r.len() == 300));
    }

    /// Output buffers too short for an answer give `Internal` with the request's `seq`,
    /// not silence and not a panic.
    #[test]
    fn an_answer_too_large_for_the_buffers_is_an_internal_error() {
        let (mut a, mut b, mut c, mut d) = (
            vec![0u8; MAX_FRAME],
            vec![0u8; OUTPUT_LEN],
            vec![0u8; 64],
            vec![0u8; 80],
        );
        let mut frames = FrameLoop::new(
            KeyService::new([3u8; 32], OsRng),
            Buffers {
                frame_in: &mut a,
                output: &mut b,
                scratch: &mut c,
                frame_out: &mut d,
            },
        );
        let input = encode_frame_vec(9, &Request::Random { len: 1000 }).unwrap();
        let answer = input
            .iter()
            .find_map(|&byte| frames.feed(byte).map(<[u8]>::to_vec));
        let mut answer = answer.expect("an answer");
        let n = answer.len() - 1;
        let env = decode_frame::<OwnedResponse>(&mut answer[..n]).unwrap();
        assert_eq!(
            (env.seq, env.body),
            (9, OwnedResponse::Error(DeviceError::Internal))
        );
    }
}

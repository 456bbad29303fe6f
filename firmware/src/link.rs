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
//!
//! **Every request passes the pairing gate** ([`Gate`], pairing.rs) before the key service
//! sees it:
//!
//! | request | answer |
//! |---|---|
//! | `Hello`, `Attest` | the key service's |
//! | `Pair` | `Paired` if the device was unpaired and the key unwraps; else `AlreadyPaired`, ... |
//! | `BeginSession` | `Session` with a fresh nonce; `NotPaired` on an unpaired device |
//! | `Authenticated` whose tag and counter the gate admits | `Authenticated` around the key service's answer to the inner request |
//! | `Authenticated` on a paired device with no session (just restarted) | `Session` with a fresh nonce; the request does not run |
//! | `Authenticated` it does not admit | `NotPaired`, `Unauthenticated` or `Replayed`, not enveloped |
//! | any key operation on its own | `NotPaired` (unpaired) or `Unauthenticated` (paired) |

use crate::pairing::{Admitted, Gate, PairingStore, KEY_LEN, NONCE_LEN};
use crate::KeyService;
use keyward_shared::frame::{
    decode_payload, encode_frame, encode_payload, finish_frame, open_frame, payload_seq, Envelope,
    Feed, FrameError, FrameReader,
};
use keyward_shared::wire::{DeviceError, Request, RequestKind, Response};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

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
    /// Whether the device restarted while sending the last frame, so the loop must forget
    /// what a restart forgets (the pairing sessions). Only the simulator's `--reset-every`
    /// fault says so; on a board a restart starts the program afresh.
    fn take_restart(&mut self) -> bool {
        false
    }
}

/// Answers one request into an output buffer; the response borrows its bytes from `out`.
pub trait Handler {
    fn handle<'o>(&mut self, req: Request<'_>, out: &'o mut [u8]) -> Response<'o>;
    /// Unwraps the pairing key of a `Pair` request with the device's identity key.
    fn unwrap_pairing_key(
        &mut self,
        ephemeral: &[u8],
        wrapped_key: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, DeviceError>;
}

impl<R: RngCore + CryptoRng> Handler for KeyService<R> {
    fn handle<'o>(&mut self, req: Request<'_>, out: &'o mut [u8]) -> Response<'o> {
        KeyService::handle(self, req, out)
    }
    fn unwrap_pairing_key(
        &mut self,
        ephemeral: &[u8],
        wrapped_key: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, DeviceError> {
        KeyService::unwrap_pairing_key(self, ephemeral, wrapped_key)
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

/// The frame loop: a handler, the pairing gate in front of it and the buffers it answers in.
pub struct FrameLoop<'b, H, S, R> {
    handler: H,
    gate: Gate<S, R>,
    reader: FrameReader<'b>,
    output: &'b mut [u8],
    scratch: &'b mut [u8],
    frame_out: &'b mut [u8],
}

impl<'b, H: Handler, S: PairingStore, R: RngCore + CryptoRng> FrameLoop<'b, H, S, R> {
    pub fn new(handler: H, gate: Gate<S, R>, buffers: Buffers<'b>) -> Self {
        FrameLoop {
            handler,
            gate,
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
                    if port.take_restart() {
                        self.gate.end_sessions();
                    }
                }
            }
        }
    }

    /// Takes one byte off the line. When it ends a frame, returns the answer frame to send
    /// (delimiter included), which stays valid until the next call.
    pub fn feed(&mut self, byte: u8) -> Option<&[u8]> {
        let (seq, answer) = match self.reader.feed(byte) {
            Feed::Pending => return None,
            Feed::Dropped => (
                UNATTRIBUTED_SEQ,
                Answer::Plain(Response::Error(DeviceError::BadLength)),
            ),
            Feed::Frame(len) => answer(
                &mut self.handler,
                &mut self.gate,
                self.reader.frame(len),
                self.output,
            ),
        };
        let encoded = match answer {
            Answer::Plain(response) => encode_frame(seq, &response, self.scratch, self.frame_out),
            Answer::Enveloped(admitted, inner) => envelope(
                &self.gate,
                seq,
                &admitted,
                &inner,
                self.scratch,
                self.frame_out,
            ),
        };
        // Every response fits frame buffers of the documented sizes; with shorter ones, or
        // should that ever not hold, the host hears `Internal` instead of nothing.
        let n = encoded
            .or_else(|_| {
                let internal = Response::Error(DeviceError::Internal);
                encode_frame(seq, &internal, self.scratch, self.frame_out)
            })
            .ok()?;
        Some(&self.frame_out[..n])
    }
}

/// What one received frame is answered with.
enum Answer<'o> {
    /// A response sent as it is.
    Plain(Response<'o>),
    /// The key service's answer to an admitted `Authenticated` request: sent inside
    /// `Response::Authenticated`, tagged for the request's session and counter.
    Enveloped(Admitted, Response<'o>),
}

/// The sequence number and answer for one received frame (delimiter excluded).
fn answer<'o, H: Handler, S: PairingStore, R: RngCore + CryptoRng>(
    handler: &mut H,
    gate: &mut Gate<S, R>,
    frame: &mut [u8],
    output: &'o mut [u8],
) -> (u32, Answer<'o>) {
    let Ok(payload) = open_frame(frame) else {
        return (
            UNATTRIBUTED_SEQ,
            Answer::Plain(Response::Error(DeviceError::BadFrame)),
        );
    };
    match decode_payload::<Request<'_>>(payload) {
        Ok(Envelope { seq, body }) => (seq, serve(handler, gate, body, output)),
        // The CRC matched, so the sequence number in front is the host's: answer it.
        Err(_) => (
            payload_seq(payload).unwrap_or(UNATTRIBUTED_SEQ),
            Answer::Plain(Response::Error(DeviceError::UnsupportedProtocol)),
        ),
    }
}

/// The pairing gate (see the module documentation), then the key service.
fn serve<'o, H: Handler, S: PairingStore, R: RngCore + CryptoRng>(
    handler: &mut H,
    gate: &mut Gate<S, R>,
    req: Request<'_>,
    output: &'o mut [u8],
) -> Answer<'o> {
    let plain =
        |r: Result<Response<'o>, DeviceError>| Answer::Plain(r.unwrap_or_else(Response::Error));
    match req {
        Request::Pair {
            ephemeral,
            wrapped_key,
        } => plain(if gate.is_paired() {
            Err(DeviceError::AlreadyPaired)
        } else {
            handler
                .unwrap_pairing_key(ephemeral, wrapped_key)
                .and_then(|key| gate.pair(key))
                .map(|()| Response::Paired)
        }),
        Request::BeginSession => plain(begin_session(gate, output)),
        // Restarted (or never asked for a session): nothing to check the envelope against.
        // Its answer is a new session, so the host's retry can go straight on under it.
        Request::Authenticated { .. } if gate.is_paired() && !gate.has_session() => {
            plain(begin_session(gate, output))
        }
        Request::Authenticated {
            counter,
            tag,
            request,
        } => match gate.admit(counter, tag, request) {
            Ok(admitted) => Answer::Enveloped(admitted, inner(handler, request, output)),
            Err(e) => Answer::Plain(Response::Error(e)),
        },
        req if req.kind().needs_pairing() => Answer::Plain(Response::Error(gate.refusal())),
        req => Answer::Plain(handler.handle(req, output)),
    }
}

/// A new (pending) session, its nonce written into `output`.
fn begin_session<'o, S: PairingStore, R: RngCore + CryptoRng>(
    gate: &mut Gate<S, R>,
    output: &'o mut [u8],
) -> Result<Response<'o>, DeviceError> {
    let nonce = gate.begin_session()?;
    let out = output.get_mut(..NONCE_LEN).ok_or(DeviceError::BadLength)?;
    out.copy_from_slice(&nonce);
    Ok(Response::Session { nonce: out })
}

/// The key service's answer to the request inside an admitted envelope: exactly one request,
/// and not another pairing request (those are answered only on their own).
fn inner<'o, H: Handler>(handler: &mut H, request: &[u8], output: &'o mut [u8]) -> Response<'o> {
    match postcard::take_from_bytes::<Request<'_>>(request) {
        Ok((req, [])) => match req.kind() {
            RequestKind::Pair | RequestKind::BeginSession | RequestKind::Authenticated => {
                Response::Error(DeviceError::UnsupportedProtocol)
            }
            _ => handler.handle(req, output),
        },
        _ => Response::Error(DeviceError::UnsupportedProtocol),
    }
}

/// Encodes `Response::Authenticated` around `inner`: the inner response's postcard bytes are
/// written into `frame_out` (free until the frame is finished), tagged, then enveloped into
/// `scratch`, and finally framed into `frame_out`. No other buffer is needed.
fn envelope<S: PairingStore, R: RngCore + CryptoRng>(
    gate: &Gate<S, R>,
    seq: u32,
    admitted: &Admitted,
    inner: &Response<'_>,
    scratch: &mut [u8],
    frame_out: &mut [u8],
) -> Result<usize, FrameError> {
    let len = postcard::to_slice(inner, frame_out)
        .map_err(|_| FrameError::TooLarge)?
        .len();
    let bytes = &frame_out[..len];
    let tag = gate
        .tag_response(admitted, bytes)
        .map_err(|_| FrameError::TooLarge)?;
    let body = Response::Authenticated {
        counter: admitted.counter(),
        tag: &tag,
        response: bytes,
    };
    let n = encode_payload(seq, &body, scratch)?;
    finish_frame(&scratch[..n], frame_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairing::{open_response, wrap_key, SealedRequest, Volatile};
    use crate::OUTPUT_LEN;
    use alloc::vec;
    use alloc::vec::Vec;
    use keyward_shared::frame::{decode_frame, encode_frame_vec, MAX_FRAME, SCRATCH_LEN};
    use keyward_shared::wire::OwnedResponse;
    use keyward_shared::Algorithm;
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
        let mut frames = FrameLoop::new(
            KeyService::new([3u8; 32], OsRng),
            Gate::new(Volatile, OsRng),
            buffers,
        );
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

    /// The loop's answers are the documented frames, byte for byte (docs/wire-protocol.md):
    /// a bare key operation on an unpaired device is `NotPaired`.
    #[test]
    fn answers_are_the_golden_frames() {
        let input = encode_frame_vec(5, &Request::Random { len: 0 }).unwrap();
        let out = serve(&input, MAX_FRAME, READ_CHUNK);
        assert_eq!(
            out,
            [vec![0x08, 0x05, 0x05, 0x07, 0x1f, 0x7a, 0x99, 0x1a, 0x00]]
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

    type TestLoop<'b> = FrameLoop<'b, KeyService<OsRng>, Volatile, OsRng>;

    /// Feeds one request frame to the loop byte by byte and decodes its answer.
    fn exchange(frames: &mut TestLoop<'_>, seq: u32, req: &Request<'_>) -> (u32, OwnedResponse) {
        let input = encode_frame_vec(seq, req).unwrap();
        let mut answer = input
            .iter()
            .find_map(|&byte| frames.feed(byte).map(<[u8]>::to_vec))
            .expect("an answer");
        let n = answer.len() - 1;
        let env = decode_frame::<OwnedResponse>(&mut answer[..n]).unwrap();
        (env.seq, env.body)
    }

    fn answer(frames: &mut TestLoop<'_>, seq: u32, req: &Request<'_>) -> OwnedResponse {
        let (got, resp) = exchange(frames, seq, req);
        assert_eq!(got, seq);
        resp
    }

    /// The whole pairing exchange through the frame loop: open requests, `Pair` with a key
    /// wrapped to the attested identity, sessions, enveloped answers, and every refusal.
    #[test]
    fn the_gate_serves_key_operations_only_to_the_paired_host() {
        let (mut a, mut b, mut c, mut d) = (
            vec![0u8; MAX_FRAME],
            vec![0u8; OUTPUT_LEN],
            vec![0u8; SCRATCH_LEN],
            vec![0u8; MAX_FRAME],
        );
        let mut frames: TestLoop<'_> = FrameLoop::new(
            KeyService::new([3u8; 32], OsRng),
            Gate::new(Volatile, OsRng),
            Buffers {
                frame_in: &mut a,
                output: &mut b,
                scratch: &mut c,
                frame_out: &mut d,
            },
        );
        let generate = Request::GenerateKey {
            algorithm: Algorithm::Aes256Gcm,
        };
        // Unpaired: Hello and Attest are open, key operations and sessions are not.
        assert!(matches!(
            answer(&mut frames, 1, &HELLO),
            OwnedResponse::Hello(_)
        ));
        let OwnedResponse::Attestation { public_key, .. } = answer(
            &mut frames,
            2,
            &Request::Attest {
                challenge: &[1; 32],
            },
        ) else {
            panic!("no attestation")
        };
        for req in [
            generate.clone(),
            Request::Random { len: 8 },
            Request::BeginSession,
        ] {
            assert_eq!(
                answer(&mut frames, 3, &req),
                OwnedResponse::Error(DeviceError::NotPaired),
                "{req:?}"
            );
        }
        // A key wrapped to another device does not pair this one.
        let stranger = crate::asym::public_key(Algorithm::EccP256, &[0x33; 32]).unwrap();
        let key = [0x5cu8; KEY_LEN];
        let (eph, wrapped) = wrap_key(&mut OsRng, &stranger, &key).unwrap();
        fn pair<'a>(ephemeral: &'a [u8], wrapped_key: &'a [u8]) -> Request<'a> {
            Request::Pair {
                ephemeral,
                wrapped_key,
            }
        }
        assert_eq!(
            answer(&mut frames, 4, &pair(&eph, &wrapped)),
            OwnedResponse::Error(DeviceError::AuthenticationFailed)
        );
        // Wrapped to this device's identity: paired, once.
        let (eph, wrapped) = wrap_key(&mut OsRng, &public_key, &key).unwrap();
        assert_eq!(
            answer(&mut frames, 5, &pair(&eph, &wrapped)),
            OwnedResponse::Paired
        );
        assert_eq!(
            answer(&mut frames, 6, &pair(&eph, &wrapped)),
            OwnedResponse::Error(DeviceError::AlreadyPaired)
        );
        // Paired: a bare key operation is unauthenticated.
        assert_eq!(
            answer(&mut frames, 7, &generate),
            OwnedResponse::Error(DeviceError::Unauthenticated)
        );
        let OwnedResponse::Session { nonce } = answer(&mut frames, 8, &Request::BeginSession)
        else {
            panic!("no session")
        };
        let nonce: [u8; NONCE_LEN] = nonce.try_into().unwrap();
        // Enveloped: answered in an envelope the host verifies.
        let sealed = SealedRequest::new(&key, &nonce, 1, &generate).unwrap();
        let OwnedResponse::Authenticated {
            counter,
            tag,
            response,
        } = answer(&mut frames, 9, &sealed.request())
        else {
            panic!("not enveloped")
        };
        let inner = open_response(&key, &nonce, &sealed, counter, &tag, &response).unwrap();
        assert!(matches!(inner, OwnedResponse::Sealed(s) if s.len() == 2 + 12 + 32 + 16));
        // The same envelope again (a replay, under another seq): refused, not run.
        assert_eq!(
            answer(&mut frames, 10, &sealed.request()),
            OwnedResponse::Error(DeviceError::Replayed)
        );
        // A wrong tag: unauthenticated.
        let forged = SealedRequest::new(&[0x5d; KEY_LEN], &nonce, 2, &generate).unwrap();
        assert_eq!(
            answer(&mut frames, 11, &forged.request()),
            OwnedResponse::Error(DeviceError::Unauthenticated)
        );
        // Pairing requests are answered only on their own, never from an envelope.
        let nested = SealedRequest::new(&key, &nonce, 3, &Request::BeginSession).unwrap();
        let OwnedResponse::Authenticated {
            counter,
            tag,
            response,
        } = answer(&mut frames, 12, &nested.request())
        else {
            panic!("not enveloped")
        };
        assert_eq!(
            open_response(&key, &nonce, &nested, counter, &tag, &response),
            Ok(OwnedResponse::Error(DeviceError::UnsupportedProtocol))
        );
        // After a restart the session is gone: its next frame does not run but is answered
        // with a new session, under which its frames no longer verify.
        frames.gate.end_sessions();
        let late = SealedRequest::new(&key, &nonce, 4, &generate).unwrap();
        let OwnedResponse::Session { nonce: fresh } = answer(&mut frames, 13, &late.request())
        else {
            panic!("no new session")
        };
        assert_ne!(fresh, nonce);
        assert_eq!(
            answer(&mut frames, 14, &late.request()),
            OwnedResponse::Error(DeviceError::Unauthenticated)
        );
        let fresh: [u8; NONCE_LEN] = fresh.try_into().unwrap();
        let retry = SealedRequest::new(&key, &fresh, 1, &generate).unwrap();
        assert!(matches!(
            answer(&mut frames, 15, &retry.request()),
            OwnedResponse::Authenticated { .. }
        ));
    }

    /// A request's answer is what `KeyService::handle` gives, enveloped, with the same `seq`.
    #[test]
    fn requests_are_answered_by_the_handler() {
        let (mut a, mut b, mut c, mut d) = (
            vec![0u8; MAX_FRAME],
            vec![0u8; OUTPUT_LEN],
            vec![0u8; SCRATCH_LEN],
            vec![0u8; MAX_FRAME],
        );
        let key = [9u8; KEY_LEN];
        let mut gate = Gate::new(Volatile, OsRng);
        gate.pair(Zeroizing::new(key)).unwrap();
        let mut frames: TestLoop<'_> = FrameLoop::new(
            KeyService::new([3u8; 32], OsRng),
            gate,
            Buffers {
                frame_in: &mut a,
                output: &mut b,
                scratch: &mut c,
                frame_out: &mut d,
            },
        );
        let OwnedResponse::Session { nonce } = answer(&mut frames, 40, &Request::BeginSession)
        else {
            panic!("no session")
        };
        let nonce: [u8; NONCE_LEN] = nonce.try_into().unwrap();
        for (seq, counter, req) in [
            (
                41,
                1,
                Request::GenerateKey {
                    algorithm: Algorithm::Aes256Gcm,
                },
            ),
            (42, 2, Request::Random { len: 300 }),
        ] {
            let sealed = SealedRequest::new(&key, &nonce, counter, &req).unwrap();
            let OwnedResponse::Authenticated {
                counter,
                tag,
                response,
            } = answer(&mut frames, seq, &sealed.request())
            else {
                panic!("not enveloped")
            };
            match open_response(&key, &nonce, &sealed, counter, &tag, &response).unwrap() {
                OwnedResponse::Sealed(s) => assert_eq!(s.len(), 2 + 12 + 32 + 16),
                OwnedResponse::Random(r) => assert_eq!(r.len(), 300),
                other => panic!("{other:?}"),
            }
        }
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
        let mut frames: TestLoop<'_> = FrameLoop::new(
            KeyService::new([3u8; 32], OsRng),
            Gate::new(Volatile, OsRng),
            Buffers {
                frame_in: &mut a,
                output: &mut b,
                scratch: &mut c,
                frame_out: &mut d,
            },
        );
        let challenge = [7u8; 64];
        assert_eq!(
            exchange(
                &mut frames,
                9,
                &Request::Attest {
                    challenge: &challenge
                }
            ),
            (9, OwnedResponse::Error(DeviceError::Internal))
        );
    }
}

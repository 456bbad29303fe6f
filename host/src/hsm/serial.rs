//! The `serial` backend: a Keyward firmware device (or the simulator's pseudo-terminal) on a
//! serial line. One request is in flight per link (the mutex is the queue); each request gets a
//! fresh sequence number and the link waits for the frame that echoes it, ignoring garbage and
//! late answers. Every request is idempotent for the host (a retried GenerateKey just yields
//! another sealed key; the lost one was never stored), so a timeout is retried.

use super::device::{DeviceHsm, Transport};
use crate::config::SerialConfig;
use crate::error::{Error, Result};
use keyward_shared::frame::{
    decode_frame, encode_frame_vec, Envelope, Feed, FrameReader, MAX_FRAME,
};
use keyward_shared::wire::{
    replies, reply, OwnedResponse as Response, ReplyError, Request, PROTOCOL_VERSION,
};
use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const ATTEMPTS: usize = 3;

pub struct SerialLink {
    inner: Mutex<Link>,
}

struct Link {
    port: Box<dyn serialport::SerialPort>,
    seq: u32,
    buf: Vec<u8>,
    timeout: Duration,
}

impl SerialLink {
    /// Opens the device, negotiates the protocol (Hello) and verifies the device's attested
    /// identity (pinned by configuration, or by the store on first use).
    pub fn open(cfg: &SerialConfig) -> Result<DeviceHsm<SerialLink>> {
        let port = serialport::new(cfg.path.to_string_lossy(), cfg.baud)
            .timeout(Duration::from_millis(50))
            .open()
            .map_err(|e| Error::Config(format!("serial device {}: {e}", cfg.path.display())))?;
        let link = SerialLink {
            inner: Mutex::new(Link {
                port,
                seq: 0,
                buf: vec![0u8; MAX_FRAME],
                timeout: Duration::from_millis(cfg.timeout_ms.max(10)),
            }),
        };
        let identity = link.attest()?;
        if let Some(pin) = &cfg.device_public_key {
            use base64::Engine;
            let pinned = base64::engine::general_purpose::STANDARD
                .decode(pin.trim())
                .map_err(|e| Error::Config(format!("hsm.device_public_key: {e}")))?;
            if pinned != identity {
                return Err(Error::Config(format!(
                    "serial device {} is not the pinned device",
                    cfg.path.display()
                )));
            }
        }
        Ok(DeviceHsm::new("serial", link).with_identity(identity))
    }

    /// Challenges the device to sign its identity with its P-256 identity key and verifies
    /// the signature; returns the identity public key.
    fn attest(&self) -> Result<Vec<u8>> {
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::DecodePublicKey;
        let mut challenge = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut challenge);
        // Hello negotiates the protocol version and names the device.
        let hello = Request::Hello {
            protocol: PROTOCOL_VERSION,
        };
        let info = match reply::<replies::Hello>(&hello, self.exchange(hello.clone())?) {
            Ok(info) if info.protocol == PROTOCOL_VERSION => info,
            Ok(info) => {
                return Err(Error::Config(format!(
                    "serial device speaks protocol {}, not {PROTOCOL_VERSION}",
                    info.protocol
                )))
            }
            Err(ReplyError::Device(e)) => {
                return Err(Error::Config(format!("serial device refused Hello: {e}")))
            }
            Err(e) => return Err(Error::Config(format!("serial device: {e}"))),
        };
        let attest = Request::Attest {
            challenge: &challenge,
        };
        let (serial, public_key, signature) =
            reply::<replies::Attestation>(&attest, self.exchange(attest.clone())?)
                .map_err(|e| Error::Config(format!("serial device attestation: {e}")))?;
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(&public_key)
            .map_err(|e| Error::Config(format!("device identity key: {e}")))?;
        let sig = p256::ecdsa::Signature::from_der(&signature)
            .map_err(|e| Error::Config(format!("device attestation signature: {e}")))?;
        let message = keyward_shared::wire::attestation_message(
            &challenge,
            &info.model,
            &info.firmware_version,
            &serial,
        );
        key.verify(&message, &sig).map_err(|_| {
            Error::Config("the device's attestation signature does not verify".into())
        })?;
        tracing::info!(
            %serial,
            model = %info.model,
            firmware = %info.firmware_version,
            "serial HSM attested its identity"
        );
        Ok(public_key)
    }
}

impl Transport for SerialLink {
    fn exchange(&self, req: Request<'_>) -> Result<Response> {
        let mut link = self
            .inner
            .lock()
            .map_err(|_| Error::Internal("serial link lock poisoned".into()))?;
        let mut last = Error::Hsm("serial device did not answer".into());
        for _ in 0..ATTEMPTS {
            link.seq = link.seq.wrapping_add(1).max(1);
            let seq = link.seq;
            let frame = encode_frame_vec(seq, &req)
                .map_err(|e| Error::Hsm(format!("request does not fit a frame: {e}")))?;
            match link.round_trip(seq, &frame) {
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    tracing::warn!(seq, error = %e, "serial HSM request failed; retrying");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

impl Link {
    /// Writes one frame and reads until the answer with `seq` arrives or the timeout passes.
    fn round_trip(&mut self, seq: u32, frame: &[u8]) -> Result<Response> {
        // A leading delimiter ends whatever partial frame the device may hold (line noise, a
        // request cut by a reset), so this request is not merged into it and lost.
        self.port
            .write_all(&[0])
            .and_then(|_| self.port.write_all(frame))
            .and_then(|_| self.port.flush())
            .map_err(|e| Error::Hsm(format!("serial write: {e}")))?;
        let deadline = Instant::now() + self.timeout;
        let mut reader = FrameReader::new(&mut self.buf);
        let mut chunk = [0u8; 512];
        while Instant::now() < deadline {
            let n = match self.port.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Hsm(format!("serial read: {e}"))),
            };
            for &b in &chunk[..n] {
                if let Feed::Frame(len) = reader.feed(b) {
                    // Garbage, corrupted frames, late answers to earlier requests and the
                    // device's seq-0 answers to frames it could not read are skipped; only
                    // the echo of this request's sequence number counts.
                    if let Ok(Envelope { seq: s, body }) =
                        decode_frame::<Response>(reader.frame(len))
                    {
                        if s == seq {
                            return Ok(body);
                        }
                    }
                }
            }
        }
        Err(Error::Hsm(format!(
            "no answer to request {seq} within {:?}",
            self.timeout
        )))
    }
}

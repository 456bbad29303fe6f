//! The `serial` backend: a Keyward firmware device (or the simulator's pseudo-terminal) on a
//! serial line. One request is in flight per link (the mutex is the queue); each request gets a
//! fresh sequence number and the link waits for the frame that echoes it, ignoring garbage and
//! late answers. Every request is idempotent for the host (a retried GenerateKey just yields
//! another sealed key; the lost one was never stored), so a timeout is retried.
//!
//! **Pairing** (keyward_firmware::pairing, docs/security.md): the device serves key operations
//! only to the host whose pairing key it holds. At open the link attests the device, then
//! pairs it if it is unpaired (a fresh key, written to the pairing key file before it is
//! registered, wrapped to the attested identity key) and proves with an authenticated `Hello`
//! that both ends hold the same key; a device paired with another key stops start-up. Key
//! operations then travel in `Authenticated` envelopes of a session, each with the next
//! counter, and only an answer whose tag verifies for that session and counter is taken.
//!
//! Retries and restarts: a retry is a new envelope with the next counter, never the same
//! frame again, so the device never has to tell a retry from a replay (it may well have run
//! the lost request; running it again is harmless, as above). A device that restarted has
//! lost the session and answers the next envelope with a new one (`Session`), under which
//! the link sends the request again at once: a restart costs the one timeout of the answer
//! it cut, no more. A device that refuses an envelope as `Unauthenticated` or `Replayed`
//! (another host's `BeginSession` replaced the one this link had not used yet) gets a new
//! session and the request again; refused under a brand-new session twice, the link gives
//! up with the "paired with another host" error.

use super::device::{DeviceHsm, Transport};
use crate::config::SerialConfig;
use crate::error::{Error, Result};
use keyward_firmware::pairing::{self, SealedRequest, KEY_LEN, NONCE_LEN};
use keyward_shared::frame::{
    decode_frame, encode_frame_vec, Envelope, Feed, FrameReader, MAX_FRAME,
};
use keyward_shared::wire::{
    replies, reply, DeviceError, OwnedResponse as Response, ReplyError, Request, PROTOCOL_VERSION,
};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

const ATTEMPTS: usize = 3;
/// How many times one request may be refused under a session begun for it before the link
/// concludes that the device holds another pairing key.
const FRESH_REFUSALS: usize = 2;

pub struct SerialLink {
    inner: Mutex<Link>,
}

struct Link {
    port: Box<dyn serialport::SerialPort>,
    seq: u32,
    buf: Vec<u8>,
    timeout: Duration,
    /// Set once the device is paired with this host (at open).
    pairing: Option<Pairing>,
}

struct Pairing {
    key: Zeroizing<[u8; KEY_LEN]>,
    /// The key file, named in errors.
    file: PathBuf,
    session: Option<Session>,
    /// Whether the device has shown that it holds this key (the authenticated `Hello` at open).
    proven: bool,
}

struct Session {
    nonce: [u8; NONCE_LEN],
    /// The last counter used in this session; the next request gets the one after.
    counter: u64,
}

/// What became of one authenticated attempt.
enum Step {
    /// The paired device's verified answer (or a plain refusal of the request itself).
    Answer(Response),
    /// The device had no session and opened this one; the request did not run.
    NewSession([u8; NONCE_LEN]),
    /// `Unauthenticated` or `Replayed`: the session is gone.
    Refused,
    /// No answer, or none the link can take: retry.
    Lost(Error),
}

fn no_longer_paired() -> Error {
    Error::Hsm(
        "the serial device is no longer paired (was its pairing reset?); restart keyward to \
         pair it again"
            .into(),
    )
}

/// The start-up error for a device that holds another pairing key than this host's.
fn paired_elsewhere(file: &Path, missing: bool) -> Error {
    let why = if missing {
        format!("this host's pairing key file {} is missing", file.display())
    } else {
        format!(
            "this host's pairing key file {} does not hold the key registered on the device",
            file.display()
        )
    };
    Error::Config(format!(
        "the serial device is paired with another host (or {why}): it serves key operations \
         only to the host it was paired with. Restore the pairing key file of the host that \
         paired it, or reset the device's pairing (keyward-fw-sim: remove pairing.key from its \
         state directory; sealed keys stay usable) and start again (docs/security.md)"
    ))
}

impl SerialLink {
    /// Opens the device, negotiates the protocol (Hello), verifies the device's attested
    /// identity (pinned by configuration, and by the store: `store_identity`), and pairs with
    /// it using the key in `pairing_key_file` (creating both on an unpaired device).
    pub fn open(
        cfg: &SerialConfig,
        pairing_key_file: &Path,
        store_identity: Option<&[u8]>,
    ) -> Result<DeviceHsm<SerialLink>> {
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
                pairing: None,
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
        // Checked here as well as when the store is opened (integrity.rs), so that this host
        // never registers its pairing key on a device the data directory does not belong to.
        if store_identity.is_some_and(|pinned| pinned != identity) {
            return Err(Error::Config(
                "this data directory belongs to another HSM device (its attested identity \
                 differs); connect the original device"
                    .into(),
            ));
        }
        link.pair(&identity, pairing_key_file)?;
        Ok(DeviceHsm::new("serial", link).with_identity(identity))
    }

    fn link(&self) -> Result<std::sync::MutexGuard<'_, Link>> {
        self.inner
            .lock()
            .map_err(|_| Error::Internal("serial link lock poisoned".into()))
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
        let info = match reply::<replies::Hello>(&hello, self.link()?.plain(&hello)?) {
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
            reply::<replies::Attestation>(&attest, self.link()?.plain(&attest)?)
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

    /// Pairs the link: with the key in `file` if the device holds it; by registering that key,
    /// or a new one, if the device is unpaired. Ends with an authenticated `Hello`, which
    /// proves that the device holds this host's key.
    fn pair(&self, identity: &[u8], file: &Path) -> Result<()> {
        let stored = load_key_file(file)?;
        let begin = Request::BeginSession;
        let device_paired = match self.link()?.plain(&begin)? {
            Response::Session { .. } => true,
            Response::Error(DeviceError::NotPaired) => false,
            Response::Error(e) => {
                return Err(Error::Config(format!(
                    "the serial device refused a session ({e}): its firmware predates pairing; \
                     update it"
                )))
            }
            other => {
                return Err(Error::Config(format!(
                    "serial device answered BeginSession with {}",
                    other.kind()
                )))
            }
        };
        let (key, created) = match (stored, device_paired) {
            (Some(key), true) => (key, false),
            (None, true) => return Err(paired_elsewhere(file, true)),
            (Some(key), false) => {
                tracing::warn!(
                    file = %file.display(),
                    "the serial device reports itself unpaired (was its pairing reset?): \
                     registering this host's pairing key again"
                );
                (key, false)
            }
            (None, false) => {
                // Provisioning. The file is written (and synced) before the device stores
                // the key, so a crash in between never leaves a device paired with a key
                // nobody has.
                let mut key = Zeroizing::new([0u8; KEY_LEN]);
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key[..]);
                super::embedded::write_new_secret_file(file, &key[..]).map_err(|e| {
                    Error::Config(format!(
                        "cannot create the pairing key file {}: {e}",
                        file.display()
                    ))
                })?;
                tracing::info!(
                    file = %file.display(),
                    "pairing the serial device with this host"
                );
                (key, true)
            }
        };
        let result = self.register_and_prove(identity, key, file, device_paired);
        if result.is_err() && created {
            // Nothing is paired with this key: leave no file that claims otherwise.
            let _ = std::fs::remove_file(file);
        }
        result
    }

    fn register_and_prove(
        &self,
        identity: &[u8],
        key: Zeroizing<[u8; KEY_LEN]>,
        file: &Path,
        device_paired: bool,
    ) -> Result<()> {
        let mut link = self.link()?;
        if !device_paired {
            let (ephemeral, wrapped_key) = pairing::wrap_key(&mut rand_core::OsRng, identity, &key)
                .map_err(|e| {
                    Error::Config(format!("cannot wrap the pairing key to the device: {e}"))
                })?;
            let pair = Request::Pair {
                ephemeral: &ephemeral,
                wrapped_key: &wrapped_key,
            };
            match link.plain(&pair)? {
                Response::Paired => {}
                // A retried Pair whose first attempt went through, or another host that
                // paired in between: the proof below tells which.
                Response::Error(DeviceError::AlreadyPaired) => {}
                Response::Error(e) => {
                    return Err(Error::Config(format!(
                        "the serial device refused to pair: {e}"
                    )))
                }
                other => {
                    return Err(Error::Config(format!(
                        "serial device answered Pair with {}",
                        other.kind()
                    )))
                }
            }
        }
        link.pairing = Some(Pairing {
            key,
            file: file.to_owned(),
            session: None,
            proven: false,
        });
        let hello = Request::Hello {
            protocol: PROTOCOL_VERSION,
        };
        let proof = link.authenticated(&hello);
        match proof.map(|resp| reply::<replies::Hello>(&hello, resp)) {
            Ok(Ok(_)) => {
                if let Some(p) = link.pairing.as_mut() {
                    p.proven = true;
                }
                tracing::info!(file = %file.display(), "serial HSM paired with this host");
                Ok(())
            }
            Ok(Err(e)) => {
                link.pairing = None;
                Err(Error::Config(format!("serial device pairing check: {e}")))
            }
            Err(e) => {
                link.pairing = None;
                Err(e)
            }
        }
    }
}

/// Reads the pairing key file: `None` if it does not exist. It must hold 32 bytes and be
/// readable by its owner only.
fn load_key_file(path: &Path) -> Result<Option<Zeroizing<[u8; KEY_LEN]>>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot read the pairing key file {}: {e}",
                path.display()
            )))
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(Error::Config(format!(
                "the pairing key file {} is accessible to other users (mode {:o}): it must be \
                 readable by the daemon's user only (chmod 600)",
                path.display(),
                mode & 0o777
            )));
        }
    }
    let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
        Error::Config(format!(
            "the pairing key file {} must hold exactly {KEY_LEN} bytes",
            path.display()
        ))
    })?;
    Ok(Some(Zeroizing::new(key)))
}

impl Transport for SerialLink {
    fn exchange(&self, req: Request<'_>) -> Result<Response> {
        let mut link = self.link()?;
        if req.kind().needs_pairing() {
            link.authenticated(&req)
        } else {
            link.plain(&req)
        }
    }
}

impl Link {
    /// Sends `req` as it is and returns the device's answer, retrying after timeouts.
    fn plain(&mut self, req: &Request<'_>) -> Result<Response> {
        let mut last = Error::Hsm("serial device did not answer".into());
        for _ in 0..ATTEMPTS {
            let seq = self.next_seq();
            let frame = encode_frame_vec(seq, req)
                .map_err(|e| Error::Hsm(format!("request does not fit a frame: {e}")))?;
            match self.round_trip(seq, &frame) {
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    tracing::warn!(seq, error = %e, "serial HSM request failed; retrying");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Sends `req` in an `Authenticated` envelope of the current session (beginning one if
    /// needed) and returns the inner answer, once its tag verifies. See the module
    /// documentation for retries, restarts and refusals.
    fn authenticated(&mut self, req: &Request<'_>) -> Result<Response> {
        let mut last = Error::Hsm("serial device did not answer".into());
        let (mut attempts, mut fresh_refusals, mut new_sessions) = (0, 0, 0);
        while attempts < ATTEMPTS {
            let fresh = self.ensure_session()?;
            match self.attempt(req)? {
                Step::Answer(resp) => return Ok(resp),
                Step::NewSession(nonce) => {
                    self.set_session(nonce);
                    // A device that keeps restarting uses up the attempts too.
                    new_sessions += 1;
                    if new_sessions > 1 {
                        attempts += 1;
                    }
                }
                Step::Refused => {
                    self.end_session();
                    if fresh {
                        fresh_refusals += 1;
                        if fresh_refusals >= FRESH_REFUSALS {
                            return Err(self.refused_error());
                        }
                    }
                }
                Step::Lost(e) => {
                    last = e;
                    attempts += 1;
                }
            }
        }
        Err(last)
    }

    /// Why requests are refused even under sessions begun for them: at open, the device
    /// holds another key; once the key is proven, someone else on the line keeps replacing
    /// the sessions (or re-paired the device after a reset).
    fn refused_error(&self) -> Error {
        match &self.pairing {
            Some(p) if p.proven => Error::Hsm(
                "the serial device refuses this host's requests even under new sessions: \
                 another program on the serial line may be replacing them, or the device's \
                 pairing was reset and it was paired again"
                    .into(),
            ),
            Some(p) => paired_elsewhere(&p.file, false),
            None => Error::Hsm("the serial link is not paired".into()),
        }
    }

    /// Begins a session if there is none; returns whether it did.
    fn ensure_session(&mut self) -> Result<bool> {
        let pairing = self
            .pairing
            .as_ref()
            .ok_or_else(|| Error::Hsm("the serial link is not paired".into()))?;
        if pairing.session.is_some() {
            return Ok(false);
        }
        let nonce = self.begin_session()?;
        self.set_session(nonce);
        Ok(true)
    }

    fn set_session(&mut self, nonce: [u8; NONCE_LEN]) {
        if let Some(p) = self.pairing.as_mut() {
            p.session = Some(Session { nonce, counter: 0 });
        }
    }

    /// One envelope with the session's next counter, and what became of it.
    fn attempt(&mut self, req: &Request<'_>) -> Result<Step> {
        let Some(Pairing {
            key,
            session: Some(session),
            ..
        }) = self.pairing.as_mut()
        else {
            return Err(Error::Internal("serial session vanished".into()));
        };
        session.counter += 1;
        let nonce = session.nonce;
        let sealed = SealedRequest::new(key, &nonce, session.counter, req)
            .map_err(|e| Error::Hsm(format!("request does not encode: {e}")))?;
        let key = key.clone();
        let seq = self.next_seq();
        let frame = encode_frame_vec(seq, &sealed.request())
            .map_err(|e| Error::Hsm(format!("request does not fit a frame: {e}")))?;
        let answer = match self.round_trip(seq, &frame) {
            Ok(answer) => answer,
            Err(e) => {
                // Retried under the same session with the next counter. Should the silence
                // have been a restart, the retry's answer is a new session.
                tracing::warn!(seq, error = %e, "serial HSM request failed; retrying");
                return Ok(Step::Lost(e));
            }
        };
        Ok(match answer {
            Response::Authenticated {
                counter,
                tag,
                response,
            } => match pairing::open_response(&key, &nonce, &sealed, counter, &tag, &response) {
                Ok(inner) => Step::Answer(inner),
                Err(e) => {
                    // Not the paired device's answer to this request: like a lost answer.
                    tracing::warn!(seq, error = ?e, "serial HSM answer failed authentication");
                    Step::Lost(Error::Hsm(
                        "the serial device's answer failed authentication".into(),
                    ))
                }
            },
            // The device has no session (it restarted): this is a new one, and the request
            // did not run.
            Response::Session { nonce } => {
                Step::NewSession(nonce.as_slice().try_into().map_err(|_| {
                    Error::Hsm("serial device sent a malformed session nonce".into())
                })?)
            }
            // The device lost our session, or never saw it used (another BeginSession
            // replaced it): begin a new one.
            Response::Error(DeviceError::Unauthenticated | DeviceError::Replayed) => Step::Refused,
            Response::Error(DeviceError::NotPaired) => return Err(no_longer_paired()),
            // Any other refusal (a request too long for the device, an older firmware) is the
            // device's answer; the request's own answers come only enveloped.
            Response::Error(e) => Step::Answer(Response::Error(e)),
            other => {
                tracing::warn!(
                    seq,
                    kind = %other.kind(),
                    "serial HSM answered an authenticated request without authentication"
                );
                Step::Lost(Error::Hsm(format!(
                    "the serial device answered an authenticated request with {}",
                    other.kind()
                )))
            }
        })
    }

    /// Asks the device for a new session nonce.
    fn begin_session(&mut self) -> Result<[u8; NONCE_LEN]> {
        match self.plain(&Request::BeginSession)? {
            Response::Session { nonce } => nonce.as_slice().try_into().map_err(|_| {
                Error::Hsm(format!(
                    "serial device sent a session nonce of {} bytes",
                    nonce.len()
                ))
            }),
            Response::Error(DeviceError::NotPaired) => Err(no_longer_paired()),
            Response::Error(e) => Err(Error::Hsm(format!(
                "the serial device refused a session: {e}"
            ))),
            other => Err(Error::Hsm(format!(
                "serial device answered BeginSession with {}",
                other.kind()
            ))),
        }
    }

    fn end_session(&mut self) {
        if let Some(p) = self.pairing.as_mut() {
            p.session = None;
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

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

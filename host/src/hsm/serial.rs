//! The `serial` backend: a Keyward firmware device (or the simulator's pseudo-terminal) on a
//! serial line. Several requests are in flight per link (`[hsm] max_in_flight`, default 8;
//! the pipeline is in `serial/pipe.rs`): each gets a fresh sequence number, is queued under
//! the link's send lock and written in that order (under load, several in one write), and
//! waits for the frame that echoes its number, which a reader thread hands over; garbage, corrupted frames and late answers reach nobody. The device
//! reads and answers frames in the order they arrive. Every request is idempotent for the
//! host (a retried GenerateKey just yields another sealed key; the lost one was never
//! stored), so a timeout is retried, and only the request that timed out is.
//!
//! **Pairing** (keyward_firmware::pairing, docs/security.md): the device serves key operations
//! only to the host whose pairing key it holds. At open the link attests the device, then
//! pairs it if it is unpaired (a fresh key, written to the pairing key file before it is
//! registered, wrapped to the attested identity key) and proves with an authenticated `Hello`
//! that both ends hold the same key; a device paired with another key stops start-up. Key
//! operations then travel in `Authenticated` envelopes of a session, each with the next
//! counter, and only an answer whose tag verifies for that session and counter is taken.
//! Counters are drawn under the send lock, so envelopes reach the device in counter order,
//! which is what it requires (each above the last it accepted); a lost envelope leaves a gap,
//! which it accepts.
//!
//! Retries and restarts: a retry is a new envelope with the next counter, never the same
//! frame again, so the device never has to tell a retry from a replay (it may well have run
//! the lost request; running it again is harmless, as above). A device that restarted has
//! lost the session and answers the next envelope with a new one (`Session`), under which
//! the link sends the request again at once: a restart costs the one timeout of the answer
//! it cut, no more. The envelopes behind that one in the pipeline, sent under the lost
//! session, are refused (`Unauthenticated`): they are sent again under the new session,
//! which they do not end, since the refusal concerns a session the link has already left.
//! The link always takes the session of the `Session` answer that came off the line last:
//! the device answers in order, so that is the device's newest. A device that refuses an
//! envelope of the current session as `Unauthenticated` or `Replayed` (another host's
//! `BeginSession` replaced the one this link had not used yet) gets a new session and the
//! request again; a request refused twice under sessions that had not yet been used, the
//! link gives up with the "paired with another host" error.

mod pipe;
#[cfg(test)]
mod tests;

use super::device::{DeviceHsm, Transport};
use crate::config::SerialConfig;
use crate::error::{Error, Result};
use keyward_firmware::pairing::{self, SealedRequest, KEY_LEN, NONCE_LEN};
use keyward_shared::frame::encode_frame_vec;
use keyward_shared::wire::{
    replies, reply, DeviceError, OwnedResponse as Response, ReplyError, Request, PROTOCOL_VERSION,
};
use pipe::{Observer, Pipe, Ticket, Tx};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zeroize::Zeroizing;

const ATTEMPTS: usize = 3;
/// How many times one request may be refused under a session not used before it, before the
/// link concludes that the device holds another pairing key.
const FRESH_REFUSALS: usize = 2;
/// How many refusals of envelopes sent under a session already replaced (restarts while they
/// were in flight) one request takes before each further one costs an attempt.
const STALE_REFUSALS: usize = 3;
/// The observer tag of a request sent as it is (envelopes carry their session's generation).
const PLAIN: u64 = u64::MAX;

pub struct SerialLink {
    pipe: Pipe<Arc<Sessions>>,
    sessions: Arc<Sessions>,
}

/// The link's pairing state: changed by senders (counters, new sessions) and by the reader
/// thread (sessions the device opened or lost, in the order its answers say so).
struct Sessions {
    /// Set once the device is paired with this host (at open).
    pairing: Mutex<Option<Pairing>>,
}

struct Pairing {
    key: Zeroizing<[u8; KEY_LEN]>,
    /// The key file, named in errors.
    file: PathBuf,
    session: Option<Session>,
    /// Counts session changes (opened, ended): an envelope is sent with the generation of
    /// its session, so that its refusal ends that session only if it is still the current.
    generation: u64,
    /// Whether the device has shown that it holds this key (the authenticated `Hello` at open).
    proven: bool,
}

struct Session {
    nonce: [u8; NONCE_LEN],
    /// The last counter used in this session; the next request gets the one after.
    counter: u64,
    /// Whether the device has answered an envelope of this session (so it took the session).
    used: bool,
}

/// What the reader thread tells an envelope's waiter about a refusal.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Not a refusal (or not of an envelope).
    None,
    /// The current session was refused before the device had taken any envelope of it: the
    /// device does not know it (or another host's session replaced it). The session is ended.
    Fresh,
    /// The current session, used before, was refused: the device lost it. The session is ended.
    Lost,
    /// The envelope's session had already been replaced: nothing to end.
    Stale,
}

/// One envelope on the line, and what its answer is checked against.
struct Sent {
    ticket: Ticket<Arc<Sessions>>,
    key: Zeroizing<[u8; KEY_LEN]>,
    nonce: [u8; NONCE_LEN],
    sealed: SealedRequest,
}

/// What became of one authenticated attempt.
enum Step {
    /// The paired device's verified answer (or a plain refusal of the request itself).
    Answer(Response),
    /// The device had no session and opened one (the reader took it); the request did not run.
    NewSession,
    /// `Unauthenticated` or `Replayed`, and how the reader judged it.
    Refused(Refusal),
    /// No answer, or none the link can take: retry.
    Lost(Error),
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Pairing>> {
        // Every change under this lock is a single assignment or increment: a panicking
        // holder cannot leave it half-changed.
        self.pairing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Observer for Arc<Sessions> {
    type Mark = Refusal;

    /// Follows the device's session in the order of its answers: a `Session` answer (to
    /// `BeginSession`, or to an envelope after a restart) is the device's newest session; a
    /// refusal of an envelope of the current session ends it; an enveloped answer shows the
    /// device took the session. Tags are checked by the waiter: this only decides which
    /// session the next envelopes use and how a refusal counts, never what is accepted.
    fn observe(&self, generation: u64, body: &Response) -> Refusal {
        let mut guard = self.lock();
        let Some(p) = guard.as_mut() else {
            return Refusal::None;
        };
        match body {
            Response::Session { nonce } => {
                if let Ok(nonce) = <[u8; NONCE_LEN]>::try_from(nonce.as_slice()) {
                    p.generation += 1;
                    p.session = Some(Session {
                        nonce,
                        counter: 0,
                        used: false,
                    });
                }
                Refusal::None
            }
            Response::Error(DeviceError::Unauthenticated | DeviceError::Replayed)
                if generation != PLAIN =>
            {
                match &p.session {
                    Some(session) if generation == p.generation => {
                        let refusal = if session.used {
                            Refusal::Lost
                        } else {
                            Refusal::Fresh
                        };
                        p.session = None;
                        p.generation += 1;
                        refusal
                    }
                    _ => Refusal::Stale,
                }
            }
            Response::Authenticated { .. } if generation == p.generation => {
                if let Some(session) = p.session.as_mut() {
                    session.used = true;
                }
                Refusal::None
            }
            _ => Refusal::None,
        }
    }
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
        // The reader thread reads from its own descriptor; the 50 ms read timeout above is
        // how often it looks whether the link was dropped.
        let input = port
            .try_clone()
            .map_err(|e| Error::Config(format!("serial device {}: {e}", cfg.path.display())))?;
        let link = SerialLink::over(
            Box::new(input),
            Box::new(port),
            Duration::from_millis(cfg.timeout_ms.max(10)),
            cfg.max_in_flight,
        )?;
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

    /// A link over a line read from `input` and written to `output`, not yet attested or
    /// paired, with `window` requests in flight at most.
    fn over(
        input: Box<dyn std::io::Read + Send>,
        output: Box<dyn std::io::Write + Send>,
        timeout: Duration,
        window: usize,
    ) -> Result<SerialLink> {
        let sessions = Arc::new(Sessions {
            pairing: Mutex::new(None),
        });
        Ok(SerialLink {
            pipe: Pipe::new(input, output, timeout, window, sessions.clone())?,
            sessions,
        })
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
        let info = match reply::<replies::Hello>(&hello, self.plain(&hello)?) {
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
            reply::<replies::Attestation>(&attest, self.plain(&attest)?)
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
        let device_paired = match self.plain(&begin)? {
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
        if !device_paired {
            let (ephemeral, wrapped_key) = pairing::wrap_key(&mut rand_core::OsRng, identity, &key)
                .map_err(|e| {
                    Error::Config(format!("cannot wrap the pairing key to the device: {e}"))
                })?;
            let pair = Request::Pair {
                ephemeral: &ephemeral,
                wrapped_key: &wrapped_key,
            };
            match self.plain(&pair)? {
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
        *self.sessions.lock() = Some(Pairing {
            key,
            file: file.to_owned(),
            session: None,
            generation: 0,
            proven: false,
        });
        let hello = Request::Hello {
            protocol: PROTOCOL_VERSION,
        };
        let proof = self.authenticated(&hello);
        let mut pairing = self.sessions.lock();
        match proof.map(|resp| reply::<replies::Hello>(&hello, resp)) {
            Ok(Ok(_)) => {
                if let Some(p) = pairing.as_mut() {
                    p.proven = true;
                }
                tracing::info!(file = %file.display(), "serial HSM paired with this host");
                Ok(())
            }
            Ok(Err(e)) => {
                *pairing = None;
                Err(Error::Config(format!("serial device pairing check: {e}")))
            }
            Err(e) => {
                *pairing = None;
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
        if req.kind().needs_pairing() {
            self.authenticated(&req)
        } else {
            self.plain(&req)
        }
    }
}

impl SerialLink {
    /// Sends `req` as it is and returns the device's answer, retrying after timeouts.
    fn plain(&self, req: &Request<'_>) -> Result<Response> {
        self.plain_on(None, req)
    }

    /// `plain`, on the send lock `held` if given: the link's other requests then wait until
    /// the answer is in (for `BeginSession`, whose answer they all need).
    fn plain_on(&self, mut held: Option<&mut Tx>, req: &Request<'_>) -> Result<Response> {
        let mut last = Error::Hsm("serial device did not answer".into());
        for _ in 0..ATTEMPTS {
            let frame = |seq| {
                encode_frame_vec(seq, req)
                    .map_err(|e| Error::Hsm(format!("request does not fit a frame: {e}")))
            };
            let ticket = match held.as_deref_mut() {
                Some(tx) => self.pipe.send(tx, PLAIN, frame)?,
                None => self.pipe.send(&mut *self.pipe.lock()?, PLAIN, frame)?,
            };
            self.pipe.flush();
            match self.pipe.wait(ticket) {
                Ok(answer) => return Ok(answer.body),
                Err(e) => {
                    tracing::warn!(error = %e, "serial HSM request failed; retrying");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Sends `req` in an `Authenticated` envelope of the current session (beginning one if
    /// needed) and returns the inner answer, once its tag verifies. See the module
    /// documentation for retries, restarts and refusals.
    fn authenticated(&self, req: &Request<'_>) -> Result<Response> {
        let mut last = Error::Hsm("serial device did not answer".into());
        let (mut attempts, mut fresh_refusals, mut new_sessions, mut stale) = (0, 0, 0, 0);
        while attempts < ATTEMPTS {
            let sent = self.send_sealed(req)?;
            match self.outcome(sent)? {
                Step::Answer(resp) => return Ok(resp),
                Step::NewSession => {
                    // A device that keeps restarting uses up the attempts too.
                    new_sessions += 1;
                    if new_sessions > 1 {
                        attempts += 1;
                    }
                }
                Step::Refused(Refusal::Fresh) => {
                    fresh_refusals += 1;
                    if fresh_refusals >= FRESH_REFUSALS {
                        return Err(self.refused_error());
                    }
                }
                // The device lost the session: the next envelope gets a new one.
                Step::Refused(Refusal::Lost) => {}
                // Sent under a session that another answer replaced before this one came: a
                // restart in the middle of the pipeline, sent again at once. A few restarts
                // in a row are a device in trouble, and use up the attempts too.
                Step::Refused(_) => {
                    stale += 1;
                    if stale > STALE_REFUSALS {
                        attempts += 1;
                        last = Error::Hsm(
                            "the serial device refused the request under every session".into(),
                        );
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
        match &*self.sessions.lock() {
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

    /// Seals `req` with the session's next counter and sends it, beginning a session first
    /// if there is none. Counter and write under the send lock: envelopes reach the device in
    /// counter order.
    fn send_sealed(&self, req: &Request<'_>) -> Result<Sent> {
        let mut tx = self.pipe.lock()?;
        for _ in 0..ATTEMPTS {
            let next = {
                let mut pairing = self.sessions.lock();
                let p = pairing
                    .as_mut()
                    .ok_or_else(|| Error::Hsm("the serial link is not paired".into()))?;
                p.session.as_mut().map(|session| {
                    session.counter += 1;
                    (p.key.clone(), session.nonce, session.counter, p.generation)
                })
            };
            let Some((key, nonce, counter, generation)) = next else {
                // The reader takes the session from the answer, in line order.
                self.begin_session(&mut tx)?;
                continue;
            };
            let sealed = SealedRequest::new(&key, &nonce, counter, req)
                .map_err(|e| Error::Hsm(format!("request does not encode: {e}")))?;
            let ticket = self.pipe.send(&mut tx, generation, |seq| {
                encode_frame_vec(seq, &sealed.request())
                    .map_err(|e| Error::Hsm(format!("request does not fit a frame: {e}")))
            })?;
            // Others may queue their envelopes while this one is written, and go with it.
            drop(tx);
            self.pipe.flush();
            return Ok(Sent {
                ticket,
                key,
                nonce,
                sealed,
            });
        }
        Err(Error::Hsm(
            "the serial device's sessions end as soon as they begin".into(),
        ))
    }

    /// Waits for the answer to one envelope and says what became of it.
    fn outcome(&self, sent: Sent) -> Result<Step> {
        let Sent {
            ticket,
            key,
            nonce,
            sealed,
        } = sent;
        let seq = ticket.seq;
        let answer = match self.pipe.wait(ticket) {
            Ok(answer) => answer,
            Err(e) => {
                // Retried under the same session with the next counter. Should the silence
                // have been a restart, the retry's answer is a new session.
                tracing::warn!(seq, error = %e, "serial HSM request failed; retrying");
                return Ok(Step::Lost(e));
            }
        };
        Ok(match answer.body {
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
            // The device has no session (it restarted): this is a new one, which the reader
            // took, and the request did not run.
            Response::Session { nonce } if nonce.len() == NONCE_LEN => Step::NewSession,
            Response::Session { .. } => {
                return Err(Error::Hsm(
                    "serial device sent a malformed session nonce".into(),
                ))
            }
            // The device lost our session, or never saw it used (another BeginSession
            // replaced it): the reader ended it if it was the current one.
            Response::Error(DeviceError::Unauthenticated | DeviceError::Replayed) => {
                Step::Refused(answer.mark)
            }
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

    /// Asks the device for a new session, holding the send lock until the answer is in (the
    /// reader thread takes the session from it).
    fn begin_session(&self, tx: &mut Tx) -> Result<()> {
        match self.plain_on(Some(tx), &Request::BeginSession)? {
            Response::Session { nonce } if nonce.len() == NONCE_LEN => Ok(()),
            Response::Session { nonce } => Err(Error::Hsm(format!(
                "serial device sent a session nonce of {} bytes",
                nonce.len()
            ))),
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
}

//! End-to-end tests of `keyward-fw-sim` over its pseudo-terminal.
#![cfg(feature = "sim")]

use keyward_firmware::pairing::{self, SealedRequest, KEY_LEN, NONCE_LEN};
use keyward_shared::frame::{
    decode_frame, encode_frame_vec, Envelope, Feed, FrameReader, MAX_FRAME,
};
use keyward_shared::wire::{DeviceError, OwnedResponse, Request};
use keyward_shared::Algorithm;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Sim {
    child: Child,
    device: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn state_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fw-sim-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn start(dir: &Path, extra: &[&str]) -> Sim {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyward-fw-sim"))
        .arg("--state-dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn keyward-fw-sim");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let device = line
        .strip_prefix("keyward-fw-sim: device ")
        .and_then(|s| s.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Sim { child, device }
}

struct Port {
    file: File,
    buf: Vec<u8>,
    pending: Vec<u8>,
}

impl Port {
    fn open(device: &str) -> Port {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(device)
            .expect("open pty slave");
        // SAFETY: valid fd and a termios filled in by tcgetattr.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(file.as_raw_fd(), &mut t), 0);
            libc::cfmakeraw(&mut t);
            assert_eq!(libc::tcsetattr(file.as_raw_fd(), libc::TCSANOW, &t), 0);
        }
        Port {
            file,
            buf: vec![0; MAX_FRAME],
            pending: Vec::new(),
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.file.write_all(bytes).unwrap();
    }

    fn send(&mut self, seq: u32, req: &Request<'_>) {
        self.send_raw(&encode_frame_vec(seq, req).unwrap());
    }

    /// Waits up to `timeout` for one frame; returns its bytes (delimiter excluded).
    fn recv_frame(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut reader = FrameReader::new(&mut self.buf);
        loop {
            while !self.pending.is_empty() {
                let b = self.pending.remove(0);
                if let Feed::Frame(n) = reader.feed(b) {
                    return Some(reader.frame(n).to_vec());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let mut pfd = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as libc::c_int) };
            if rc <= 0 {
                continue;
            }
            let mut chunk = [0u8; 4096];
            let n = self.file.read(&mut chunk).unwrap();
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }

    fn recv(&mut self, timeout: Duration) -> Option<Envelope<OwnedResponse>> {
        let mut frame = self.recv_frame(timeout)?;
        Some(decode_frame::<OwnedResponse>(&mut frame).expect("valid response frame"))
    }

    /// Sends `req` and returns the answer. Frames that do not decode (the half of an answer
    /// a reset cut) are skipped; any other answer must carry `seq`.
    fn call(&mut self, seq: u32, req: &Request<'_>) -> OwnedResponse {
        self.send(seq, req);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut frame = self.recv_frame(left).expect("no answer");
            if let Ok(env) = decode_frame::<OwnedResponse>(&mut frame) {
                assert_eq!(env.seq, seq);
                return env.body;
            }
        }
    }
}

const HELLO: Request<'static> = Request::Hello { protocol: 1 };

/// The device's attested identity public key (the host verifies the signature; these tests
/// only need the key to wrap the pairing key to).
fn identity(port: &mut Port, seq: u32) -> Vec<u8> {
    match port.call(
        seq,
        &Request::Attest {
            challenge: &[7; 32],
        },
    ) {
        OwnedResponse::Attestation { public_key, .. } => public_key,
        other => panic!("Attest: {other:?}"),
    }
}

/// `Pair` with `key` wrapped to the device's identity, as the host sends it.
fn pair(port: &mut Port, seq: u32, key: &[u8; KEY_LEN]) -> OwnedResponse {
    let identity = identity(port, seq);
    let (ephemeral, wrapped_key) =
        pairing::wrap_key(&mut rand_core::OsRng, &identity, key).unwrap();
    port.call(
        seq + 1,
        &Request::Pair {
            ephemeral: &ephemeral,
            wrapped_key: &wrapped_key,
        },
    )
}

/// The host's side of a session: the pairing key, the session nonce and the last counter.
struct Host {
    key: [u8; KEY_LEN],
    nonce: [u8; NONCE_LEN],
    counter: u64,
}

impl Host {
    fn begin(port: &mut Port, seq: u32, key: [u8; KEY_LEN]) -> Host {
        match port.call(seq, &Request::BeginSession) {
            OwnedResponse::Session { nonce } => Host {
                key,
                nonce: nonce.try_into().unwrap(),
                counter: 0,
            },
            other => panic!("BeginSession: {other:?}"),
        }
    }

    /// `req` in an envelope with the next counter.
    fn seal(&mut self, req: &Request<'_>) -> SealedRequest {
        self.counter += 1;
        SealedRequest::new(&self.key, &self.nonce, self.counter, req).unwrap()
    }

    /// Sends `sealed` and opens the enveloped answer (which must verify).
    fn send(&self, port: &mut Port, seq: u32, sealed: &SealedRequest) -> OwnedResponse {
        match port.call(seq, &sealed.request()) {
            OwnedResponse::Authenticated {
                counter,
                tag,
                response,
            } => pairing::open_response(&self.key, &self.nonce, sealed, counter, &tag, &response)
                .expect("an answer from the paired device"),
            other => panic!("not enveloped: {other:?}"),
        }
    }

    fn call(&mut self, port: &mut Port, seq: u32, req: &Request<'_>) -> OwnedResponse {
        let sealed = self.seal(req);
        self.send(port, seq, &sealed)
    }
}

fn sealed_key(port: &mut Port, host: &mut Host, seq: u32) -> Vec<u8> {
    match host.call(
        port,
        seq,
        &Request::GenerateKey {
            algorithm: Algorithm::Aes256Gcm,
        },
    ) {
        OwnedResponse::Sealed(s) => s,
        other => panic!("GenerateKey: {other:?}"),
    }
}

fn encrypt_request<'a>(sealed: &'a [u8], pt: &'a [u8]) -> Request<'a> {
    Request::Encrypt {
        algorithm: Algorithm::Aes256Gcm,
        sealed,
        aad: b"ctx",
        plaintext: pt,
    }
}

fn decrypt_request<'a>(sealed: &'a [u8], nonce: &'a [u8], ct: &'a [u8]) -> Request<'a> {
    Request::Decrypt {
        algorithm: Algorithm::Aes256Gcm,
        sealed,
        aad: b"ctx",
        nonce,
        ciphertext: ct,
    }
}

fn encrypt(
    port: &mut Port,
    host: &mut Host,
    seq: u32,
    sealed: &[u8],
    pt: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    match host.call(port, seq, &encrypt_request(sealed, pt)) {
        OwnedResponse::Encrypted { nonce, ciphertext } => (nonce, ciphertext),
        other => panic!("Encrypt: {other:?}"),
    }
}

fn decrypt(
    port: &mut Port,
    host: &mut Host,
    seq: u32,
    sealed: &[u8],
    nonce: &[u8],
    ct: &[u8],
) -> OwnedResponse {
    host.call(port, seq, &decrypt_request(sealed, nonce, ct))
}

const PAIRING_KEY: [u8; KEY_LEN] = [0x6b; KEY_LEN];

/// The next answer is `Error(error)` for a frame the device could not attribute (seq 0).
fn assert_unattributed(port: &mut Port, error: DeviceError) {
    let env = port
        .recv(Duration::from_secs(5))
        .expect("an answer to the bad frame");
    assert_eq!((env.seq, env.body), (0, OwnedResponse::Error(error)));
}

#[test]
fn hello_keys_resync_and_persistence() {
    let dir = state_dir("basic");
    let sim = start(&dir, &[]);
    let secret = dir.join("device.secret");
    assert_eq!(std::fs::read(&secret).unwrap().len(), 32);
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let mut port = Port::open(&sim.device);
    match port.call(1, &HELLO) {
        OwnedResponse::Hello(info) => assert_eq!(info.protocol, 1),
        other => panic!("Hello: {other:?}"),
    }

    assert_eq!(pair(&mut port, 20, &PAIRING_KEY), OwnedResponse::Paired);
    let mut host = Host::begin(&mut port, 22, PAIRING_KEY);
    let sealed = sealed_key(&mut port, &mut host, 2);
    // Zero bytes and a large payload exercise COBS and the raw tty (no byte translation).
    let pt: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let (nonce, ct) = encrypt(&mut port, &mut host, 3, &sealed, &pt);
    assert_eq!(
        decrypt(&mut port, &mut host, 4, &sealed, &nonce, &ct),
        OwnedResponse::Plaintext(pt.clone())
    );

    // Every bad frame is answered (docs/wire-protocol.md, "Link behaviour") and the device
    // resynchronises at the next delimiter. 50 bytes of garbage (no zero, including \r, \n,
    // ^C, ^D) glue onto the next frame, which then fails its CRC: `Error(BadFrame)` with
    // seq 0, since its seq cannot be trusted; the following frame is answered.
    let mut garbage: Vec<u8> = (0..50u8).map(|i| i.wrapping_mul(37) | 1).collect();
    garbage.extend_from_slice(b"\r\n\x03\x04");
    port.send_raw(&garbage);
    port.send(50, &HELLO);
    assert_unattributed(&mut port, DeviceError::BadFrame);
    match port.call(5, &HELLO) {
        OwnedResponse::Hello(info) => assert_eq!(info.protocol, 1),
        other => panic!("Hello after garbage: {other:?}"),
    }
    // Garbage followed by a delimiter is a bad frame of its own: the next frame is intact.
    garbage.push(0);
    port.send_raw(&garbage);
    assert_unattributed(&mut port, DeviceError::BadFrame);
    assert!(matches!(port.call(51, &HELLO), OwnedResponse::Hello(_)));
    // Empty frames (the delimiter the host sends before each request) get no answer.
    port.send_raw(&[0, 0, 0]);
    assert!(matches!(port.call(52, &HELLO), OwnedResponse::Hello(_)));

    // A CRC-valid frame carrying an unknown message: UnsupportedProtocol, same seq.
    port.send_raw(&encode_frame_vec(6, &200u32).unwrap());
    let env = port
        .recv(Duration::from_secs(5))
        .expect("answer to unknown");
    assert_eq!(env.seq, 6);
    assert_eq!(
        env.body,
        OwnedResponse::Error(DeviceError::UnsupportedProtocol)
    );

    // A corrupted frame: BadFrame with seq 0; the next one is answered.
    let mut bad = encode_frame_vec(7, &HELLO).unwrap();
    bad[1] ^= 0x40;
    port.send_raw(&bad);
    assert_unattributed(&mut port, DeviceError::BadFrame);
    assert!(matches!(port.call(8, &HELLO), OwnedResponse::Hello(_)));

    // A frame longer than the device's receive buffer: BadLength with seq 0.
    let mut long = vec![0x55u8; MAX_FRAME + 10];
    long.push(0);
    port.send_raw(&long);
    assert_unattributed(&mut port, DeviceError::BadLength);
    assert!(matches!(port.call(10, &HELLO), OwnedResponse::Hello(_)));

    // Reopening the line works (the sim keeps the slave open, no hangup).
    drop(port);
    let mut port = Port::open(&sim.device);
    assert!(matches!(port.call(11, &HELLO), OwnedResponse::Hello(_)));
    drop(port);
    drop(sim);

    // A restart with the same state dir keeps the device key and the pairing: old sealed
    // keys still work for the paired host, in a new session.
    let sim = start(&dir, &[]);
    let mut port = Port::open(&sim.device);
    let mut host = Host::begin(&mut port, 1, PAIRING_KEY);
    assert_eq!(
        decrypt(&mut port, &mut host, 2, &sealed, &nonce, &ct),
        OwnedResponse::Plaintext(pt)
    );
}

/// Every key operation a host can ask for, with a sealed key of the device.
fn key_operations<'a>(sealed: &'a [u8], nonce: &'a [u8], ct: &'a [u8]) -> Vec<Request<'a>> {
    vec![
        Request::GenerateKey {
            algorithm: Algorithm::Aes256Gcm,
        },
        Request::ImportKey {
            algorithm: Algorithm::Aes256Gcm,
            material: &[1; 32],
        },
        encrypt_request(sealed, b"x"),
        decrypt_request(sealed, nonce, ct),
        Request::Random { len: 32 },
        Request::GenerateKeyPair {
            algorithm: Algorithm::EccP256,
        },
        Request::Sign {
            algorithm: Algorithm::EccP256,
            sealed,
            message: b"m",
            is_digest: false,
        },
        Request::AsymDecrypt {
            algorithm: Algorithm::Sm2,
            sealed,
            ciphertext: ct,
        },
    ]
}

/// Issue 12 item 6: a device nobody has paired with serves no key operation, to anyone, and
/// opens no session; Hello and Attest stay open.
#[test]
fn an_unpaired_device_refuses_key_operations() {
    let dir = state_dir("unpaired");
    let sim = start(&dir, &[]);
    let mut port = Port::open(&sim.device);
    assert!(matches!(port.call(1, &HELLO), OwnedResponse::Hello(_)));
    identity(&mut port, 2);
    let (sealed, nonce, ct) = ([1u8; 62], [2u8; 12], [3u8; 40]);
    for (i, req) in key_operations(&sealed, &nonce, &ct).iter().enumerate() {
        assert_eq!(
            port.call(10 + i as u32, req),
            OwnedResponse::Error(DeviceError::NotPaired),
            "{req:?}"
        );
    }
    assert_eq!(
        port.call(30, &Request::BeginSession),
        OwnedResponse::Error(DeviceError::NotPaired)
    );
    // An envelope tagged under a made-up session is no way in either.
    let sealed = SealedRequest::new(&[0; KEY_LEN], &[0; NONCE_LEN], 1, &HELLO).unwrap();
    assert_eq!(
        port.call(31, &sealed.request()),
        OwnedResponse::Error(DeviceError::NotPaired)
    );
    assert!(!dir.join("pairing.key").exists());
}

/// Pairing happens once: the key is stored (0600) in the state directory and survives a
/// restart; a second `Pair`, or a key wrapped to another device, is refused; once paired, bare
/// key operations are refused as unauthenticated.
#[test]
fn pairing_is_once_and_survives_restarts() {
    let dir = state_dir("pairing");
    let sim = start(&dir, &[]);
    let mut port = Port::open(&sim.device);
    // Wrapped to another device's identity: the device cannot unwrap it and stays unpaired.
    let stranger = keyward_firmware::asym::public_key(Algorithm::EccP256, &[0x44; 32]).unwrap();
    let (ephemeral, wrapped_key) =
        pairing::wrap_key(&mut rand_core::OsRng, &stranger, &PAIRING_KEY).unwrap();
    assert_eq!(
        port.call(
            1,
            &Request::Pair {
                ephemeral: &ephemeral,
                wrapped_key: &wrapped_key
            }
        ),
        OwnedResponse::Error(DeviceError::AuthenticationFailed)
    );
    assert_eq!(pair(&mut port, 2, &PAIRING_KEY), OwnedResponse::Paired);
    let file = dir.join("pairing.key");
    assert_eq!(std::fs::read(&file).unwrap(), PAIRING_KEY);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Someone else cannot take the device over by pairing again.
    assert_eq!(
        pair(&mut port, 4, &[0x11; KEY_LEN]),
        OwnedResponse::Error(DeviceError::AlreadyPaired)
    );
    drop(port);
    drop(sim);

    let sim = start(&dir, &[]);
    let mut port = Port::open(&sim.device);
    assert_eq!(
        pair(&mut port, 1, &[0x11; KEY_LEN]),
        OwnedResponse::Error(DeviceError::AlreadyPaired)
    );
    let mut host = Host::begin(&mut port, 3, PAIRING_KEY);
    let sealed = sealed_key(&mut port, &mut host, 4);
    let (nonce, ct) = encrypt(&mut port, &mut host, 5, &sealed, b"after a restart");
    for (i, req) in key_operations(&sealed, &nonce, &ct).iter().enumerate() {
        assert_eq!(
            port.call(10 + i as u32, req),
            OwnedResponse::Error(DeviceError::Unauthenticated),
            "{req:?}"
        );
    }
    assert_eq!(
        decrypt(&mut port, &mut host, 30, &sealed, &nonce, &ct),
        OwnedResponse::Plaintext(b"after a restart".to_vec())
    );
}

/// The frames a line-tapper could record or make: the paired host's own authenticated
/// frame sent again byte for byte (same session, same counter), the same frame with a wrong
/// tag, with the request altered under the right tag, and frames of a session that has
/// been replaced. All refused; none runs.
#[test]
fn replayed_forged_and_stale_frames_are_refused() {
    let dir = state_dir("replay");
    let sim = start(&dir, &[]);
    let mut port = Port::open(&sim.device);
    assert_eq!(pair(&mut port, 1, &PAIRING_KEY), OwnedResponse::Paired);
    let mut host = Host::begin(&mut port, 3, PAIRING_KEY);
    let sealed_key = sealed_key(&mut port, &mut host, 4);
    let (nonce, ct) = encrypt(&mut port, &mut host, 5, &sealed_key, b"recorded");

    // The host's Decrypt, as it went over the line.
    let decrypt = host.seal(&decrypt_request(&sealed_key, &nonce, &ct));
    let recorded = encode_frame_vec(6, &decrypt.request()).unwrap();
    port.send_raw(&recorded);
    let env = port.recv(Duration::from_secs(5)).unwrap();
    assert!(matches!(env.body, OwnedResponse::Authenticated { .. }));
    // Replayed byte for byte, and under a new sequence number: refused.
    port.send_raw(&recorded);
    let env = port.recv(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (env.seq, env.body),
        (6, OwnedResponse::Error(DeviceError::Replayed))
    );
    assert_eq!(
        port.call(7, &decrypt.request()),
        OwnedResponse::Error(DeviceError::Replayed)
    );
    // A lower counter than the last one accepted: refused too.
    let older = SealedRequest::new(
        &PAIRING_KEY,
        &host.nonce,
        1,
        &decrypt_request(&sealed_key, &nonce, &ct),
    )
    .unwrap();
    assert_eq!(
        port.call(8, &older.request()),
        OwnedResponse::Error(DeviceError::Replayed)
    );

    // A wrong tag (a key that is not the pairing key), and the right tag on an altered
    // request (another ciphertext under the same counter): unauthenticated.
    let mut forger = Host {
        key: [0x6c; KEY_LEN],
        nonce: host.nonce,
        counter: host.counter,
    };
    let forged = forger.seal(&decrypt_request(&sealed_key, &nonce, &ct));
    assert_eq!(
        port.call(9, &forged.request()),
        OwnedResponse::Error(DeviceError::Unauthenticated)
    );
    let genuine = host.seal(&Request::Random { len: 16 });
    let Request::Authenticated { counter, tag, .. } = genuine.request() else {
        unreachable!()
    };
    let altered = postcard::to_allocvec(&decrypt_request(&sealed_key, &nonce, &ct)).unwrap();
    assert_eq!(
        port.call(
            10,
            &Request::Authenticated {
                counter,
                tag,
                request: &altered
            }
        ),
        OwnedResponse::Error(DeviceError::Unauthenticated)
    );
    // The genuine one still works (its counter was never used).
    assert!(matches!(
        host.send(&mut port, 11, &genuine),
        OwnedResponse::Random(r) if r.len() == 16
    ));

    // Someone else's BeginSession does not end the host's session...
    assert!(matches!(
        port.call(12, &Request::BeginSession),
        OwnedResponse::Session { .. }
    ));
    assert!(matches!(
        host.call(&mut port, 13, &Request::Random { len: 8 }),
        OwnedResponse::Random(_)
    ));
    // ...but once the host itself moves to a new session, frames of the old one are dead,
    // whatever their counter.
    let mut old = Host {
        key: PAIRING_KEY,
        nonce: host.nonce,
        counter: host.counter + 100,
    };
    let mut host = Host::begin(&mut port, 14, PAIRING_KEY);
    assert!(matches!(
        host.call(&mut port, 15, &Request::Random { len: 8 }),
        OwnedResponse::Random(_)
    ));
    let stale = old.seal(&decrypt_request(&sealed_key, &nonce, &ct));
    assert_eq!(
        port.call(16, &stale.request()),
        OwnedResponse::Error(DeviceError::Unauthenticated)
    );
    assert_eq!(
        port.call(17, &decrypt.request()),
        OwnedResponse::Error(DeviceError::Unauthenticated)
    );
}

/// A device that resets (the simulator's `--reset-every`) forgets its sessions, as a board
/// forgets its RAM: the session's next frame does not run but gets a new session, under
/// which the old session's frames are refused and new ones work.
#[test]
fn a_reset_ends_the_session() {
    let dir = state_dir("reset-session");
    let sim = start(&dir, &["--reset-every", "4"]);
    let mut port = Port::open(&sim.device);
    // Answers 1-3: Attest, Pair, BeginSession.
    assert_eq!(pair(&mut port, 1, &PAIRING_KEY), OwnedResponse::Paired);
    let mut host = Host::begin(&mut port, 3, PAIRING_KEY);
    // Answer 4 is cut by the reset: no complete answer arrives.
    let lost = host.seal(&Request::Random { len: 8 });
    port.send(4, &lost.request());
    assert!(port.recv(Duration::from_millis(500)).is_none());
    let next = host.seal(&Request::Random { len: 8 });
    let OwnedResponse::Session { nonce } = port.call(5, &next.request()) else {
        panic!("no new session after the reset")
    };
    assert_eq!(
        port.call(6, &next.request()),
        OwnedResponse::Error(DeviceError::Unauthenticated)
    );
    let mut host = Host {
        key: PAIRING_KEY,
        nonce: nonce.try_into().unwrap(),
        counter: 0,
    };
    assert!(matches!(
        host.call(&mut port, 7, &Request::Random { len: 8 }),
        OwnedResponse::Random(_)
    ));
}

#[test]
fn drop_every_skips_requests() {
    let dir = state_dir("drop");
    let sim = start(&dir, &["--drop-every", "2"]);
    let mut port = Port::open(&sim.device);
    assert!(matches!(port.call(1, &HELLO), OwnedResponse::Hello(_)));
    port.send(2, &HELLO);
    assert!(
        port.recv(Duration::from_millis(500)).is_none(),
        "second request must be dropped"
    );
    // The retry is the third request: answered.
    assert!(matches!(port.call(2, &HELLO), OwnedResponse::Hello(_)));
}

#[test]
fn corrupt_every_breaks_the_crc() {
    let dir = state_dir("corrupt");
    let sim = start(&dir, &["--corrupt-every", "2"]);
    let mut port = Port::open(&sim.device);
    assert!(matches!(port.call(1, &HELLO), OwnedResponse::Hello(_)));
    port.send(2, &HELLO);
    let mut frame = port
        .recv_frame(Duration::from_secs(5))
        .expect("a (corrupted) frame");
    assert!(decode_frame::<OwnedResponse>(&mut frame).is_err());
    assert!(matches!(port.call(3, &HELLO), OwnedResponse::Hello(_)));
}

/// Issue 18: RSA-2048 through the simulator, timed (docs/benchmarks.md). Generates 20 keys in
/// `GeneratePrime` steps, then signs and decrypts 20 times each, and runs the same operations
/// in-process on the key service for the link's share. Prints the figures; run with
/// `cargo test --release -p keyward-firmware --features sim --test sim -- --ignored --nocapture rsa_timings`.
#[test]
#[ignore = "a measurement, not a check: run by hand for docs/benchmarks.md"]
fn rsa_timings_on_the_simulator() {
    use keyward_shared::wire::{DecryptPadding, SignPadding};
    use rsa::pkcs8::DecodePublicKey;
    let dir = state_dir("rsa-timings");
    let sim = start(&dir, &[]);
    let mut port = Port::open(&sim.device);
    assert_eq!(pair(&mut port, 1, &PAIRING_KEY), OwnedResponse::Paired);
    let mut host = Host::begin(&mut port, 3, PAIRING_KEY);
    let mut seq = 10;
    let mut call = |host: &mut Host, port: &mut Port, req: &Request<'_>| {
        seq += 1;
        host.call(port, seq, req)
    };
    fn stats(name: &str, mut v: Vec<Duration>) {
        v.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{name}: n={} median {:.2} ms, worst {:.2} ms, best {:.2} ms",
            v.len(),
            ms(v[v.len() / 2]),
            ms(v[v.len() - 1]),
            ms(v[0])
        );
    }
    let (mut keygen, mut steps_per_key, mut step_times) = (vec![], vec![], vec![]);
    let mut key = None;
    for _ in 0..20 {
        let started = Instant::now();
        let mut primes = vec![];
        let mut steps = 0;
        while primes.len() < 2 {
            steps += 1;
            let t = Instant::now();
            let resp = call(
                &mut host,
                &mut port,
                &Request::GeneratePrime {
                    algorithm: Algorithm::Rsa2048,
                },
            );
            step_times.push(t.elapsed());
            match resp {
                OwnedResponse::Sealed(p) => primes.push(p),
                OwnedResponse::Error(DeviceError::TryAgain) => {}
                other => panic!("{other:?}"),
            }
        }
        let pair = call(
            &mut host,
            &mut port,
            &Request::AssembleKeyPair {
                algorithm: Algorithm::Rsa2048,
                first: &primes[0],
                second: &primes[1],
            },
        );
        keygen.push(started.elapsed());
        steps_per_key.push(steps);
        match pair {
            OwnedResponse::KeyPair { sealed, public_key } => key = Some((sealed, public_key)),
            other => panic!("{other:?}"),
        }
    }
    stats("RSA-2048 key generation (simulator)", keygen);
    stats("one GeneratePrime step (simulator)", step_times);
    steps_per_key.sort();
    println!(
        "steps per key: median {}, worst {}",
        steps_per_key[10], steps_per_key[19]
    );
    let (sealed, spki) = key.unwrap();
    let pk = rsa::RsaPublicKey::from_public_key_der(&spki).unwrap();
    let ct = pk
        .encrypt(
            &mut rand_core::OsRng,
            rsa::Oaep::new::<sha2::Sha256>(),
            &[7u8; 32],
        )
        .unwrap();
    let sign = Request::SignRsa {
        algorithm: Algorithm::Rsa2048,
        padding: SignPadding::PssSha256,
        sealed: &sealed,
        message: b"timed",
        is_digest: false,
    };
    let decrypt = Request::DecryptRsa {
        algorithm: Algorithm::Rsa2048,
        padding: DecryptPadding::OaepSha256,
        sealed: &sealed,
        ciphertext: &ct,
    };
    let mut svc = keyward_firmware::KeyService::new([0x33; 32], rand_core::OsRng);
    let mut out = vec![0u8; keyward_firmware::OUTPUT_LEN];
    for (name, req) in [("sign PSS", &sign), ("decrypt OAEP-SHA-256", &decrypt)] {
        let mut link = vec![];
        for _ in 0..20 {
            let t = Instant::now();
            let resp = call(&mut host, &mut port, req);
            link.push(t.elapsed());
            assert!(!matches!(resp, OwnedResponse::Error(_)), "{resp:?}");
        }
        stats(&format!("{name} (simulator, over the link)"), link);
        // In-process: the same operation on a key sealed by this service's own device key.
        let local_key = match svc.handle(
            Request::GenerateKeyPair {
                algorithm: Algorithm::Rsa2048,
            },
            &mut out,
        ) {
            keyward_shared::wire::Response::KeyPair { sealed, public_key } => {
                (sealed.to_vec(), public_key.to_vec())
            }
            other => panic!("{other:?}"),
        };
        let local_pk = rsa::RsaPublicKey::from_public_key_der(&local_key.1).unwrap();
        let local_ct = local_pk
            .encrypt(
                &mut rand_core::OsRng,
                rsa::Oaep::new::<sha2::Sha256>(),
                &[7u8; 32],
            )
            .unwrap();
        let local_req = match req {
            Request::SignRsa { .. } => Request::SignRsa {
                algorithm: Algorithm::Rsa2048,
                padding: SignPadding::PssSha256,
                sealed: &local_key.0,
                message: b"timed",
                is_digest: false,
            },
            _ => Request::DecryptRsa {
                algorithm: Algorithm::Rsa2048,
                padding: DecryptPadding::OaepSha256,
                sealed: &local_key.0,
                ciphertext: &local_ct,
            },
        };
        let mut local = vec![];
        for _ in 0..20 {
            let t = Instant::now();
            let resp = svc.handle(local_req.clone(), &mut out);
            local.push(t.elapsed());
            assert!(!matches!(resp, keyward_shared::wire::Response::Error(_)));
        }
        stats(&format!("{name} (in-process key service)"), local);
    }
}

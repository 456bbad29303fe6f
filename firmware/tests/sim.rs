//! End-to-end tests of `keyward-fw-sim` over its pseudo-terminal.
#![cfg(feature = "sim")]

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

    fn call(&mut self, seq: u32, req: &Request<'_>) -> OwnedResponse {
        self.send(seq, req);
        let env = self.recv(Duration::from_secs(5)).expect("no answer");
        assert_eq!(env.seq, seq);
        env.body
    }
}

const HELLO: Request<'static> = Request::Hello { protocol: 1 };

fn sealed_key(port: &mut Port, seq: u32) -> Vec<u8> {
    match port.call(
        seq,
        &Request::GenerateKey {
            algorithm: Algorithm::Aes256Gcm,
        },
    ) {
        OwnedResponse::Sealed(s) => s,
        other => panic!("GenerateKey: {other:?}"),
    }
}

fn encrypt(port: &mut Port, seq: u32, sealed: &[u8], pt: &[u8]) -> (Vec<u8>, Vec<u8>) {
    match port.call(
        seq,
        &Request::Encrypt {
            algorithm: Algorithm::Aes256Gcm,
            sealed,
            aad: b"ctx",
            plaintext: pt,
        },
    ) {
        OwnedResponse::Encrypted { nonce, ciphertext } => (nonce, ciphertext),
        other => panic!("Encrypt: {other:?}"),
    }
}

fn decrypt(port: &mut Port, seq: u32, sealed: &[u8], nonce: &[u8], ct: &[u8]) -> OwnedResponse {
    port.call(
        seq,
        &Request::Decrypt {
            algorithm: Algorithm::Aes256Gcm,
            sealed,
            aad: b"ctx",
            nonce,
            ciphertext: ct,
        },
    )
}

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

    let sealed = sealed_key(&mut port, 2);
    // Zero bytes and a large payload exercise COBS and the raw tty (no byte translation).
    let pt: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let (nonce, ct) = encrypt(&mut port, 3, &sealed, &pt);
    assert_eq!(
        decrypt(&mut port, 4, &sealed, &nonce, &ct),
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

    // A restart with the same state dir keeps the device key: old sealed keys still work.
    let sim = start(&dir, &[]);
    let mut port = Port::open(&sim.device);
    assert_eq!(
        decrypt(&mut port, 1, &sealed, &nonce, &ct),
        OwnedResponse::Plaintext(pt)
    );
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

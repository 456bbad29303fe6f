//! `keyward-fw-sim`: the firmware key service behind a pseudo-terminal, speaking the serial
//! framing of `keyward_shared::frame`, so the host's serial backend can be tested without a
//! device. It runs the device's own frame loop (`keyward_firmware::link`); only the port
//! differs, and the fault injection lives there.
//!
//! Usage: `keyward-fw-sim --state-dir DIR [--drop-every N] [--corrupt-every N]
//! [--stall-every N] [--reset-every N]`
//!
//! Prints one line, `keyward-fw-sim: device <slave path>`, then serves until killed.
//!
//! The state directory holds what a device keeps across restarts: its device secret
//! (`device.secret`) and, once a host has paired with it, the pairing key (`pairing.key`),
//! both 0600. Removing `pairing.key` is the simulator's factory reset of the pairing: the
//! device key, and so every sealed key, stays.

use keyward_firmware::pairing::{PairingStore, KEY_LEN};
use keyward_firmware::{Buffers, FrameLoop, Gate, Handler, KeyService, Port, OUTPUT_LEN};
use keyward_shared::frame::{open_frame, payload_seq, MAX_FRAME, SCRATCH_LEN};
use keyward_shared::wire::{DeviceError, Request, Response};
use rand_core::OsRng;
use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use zeroize::Zeroizing;

const SECRET_FILE: &str = "device.secret";
const PAIRING_FILE: &str = "pairing.key";

struct Args {
    state_dir: PathBuf,
    drop_every: Option<u64>,
    corrupt_every: Option<u64>,
    stall_every: Option<u64>,
    reset_every: Option<u64>,
}

const USAGE: &str = "usage: keyward-fw-sim --state-dir DIR [--drop-every N] [--corrupt-every N] \
                     [--stall-every N] [--reset-every N]";

/// How long a stalled request makes the host wait (longer than its timeout).
const STALL: std::time::Duration = std::time::Duration::from_millis(1500);

fn parse_args() -> Result<Args, String> {
    let mut state_dir = None;
    let mut drop_every = None;
    let mut corrupt_every = None;
    let mut stall_every = None;
    let mut reset_every = None;
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy().into_owned();
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--state-dir" => state_dir = Some(PathBuf::from(value()?)),
            "--drop-every" | "--corrupt-every" | "--stall-every" | "--reset-every" => {
                let v = value()?;
                let n = v
                    .to_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{arg}: expected a positive integer"))?;
                match arg.as_str() {
                    "--drop-every" => drop_every = Some(n),
                    "--corrupt-every" => corrupt_every = Some(n),
                    "--stall-every" => stall_every = Some(n),
                    _ => reset_every = Some(n),
                }
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Args {
        state_dir: state_dir.ok_or_else(|| format!("--state-dir is required\n{USAGE}"))?,
        drop_every,
        corrupt_every,
        stall_every,
        reset_every,
    })
}

/// Loads the device secret from `dir`, creating the directory and the secret (mode 0600) on
/// first start.
fn load_or_create_secret(dir: &Path) -> io::Result<Zeroizing<[u8; 32]>> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let path = dir.join(SECRET_FILE);
    match File::open(&path) {
        Ok(mut f) => {
            let mut bytes = Zeroizing::new(Vec::new());
            f.read_to_end(&mut bytes)?;
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: expected 32 bytes, found {}",
                        path.display(),
                        bytes.len()
                    ),
                )
            })?;
            if f.metadata()?.permissions().mode() & 0o077 != 0 {
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(Zeroizing::new(key))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = KeyService::<OsRng>::generate_device_key(&mut OsRng);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(key.as_ref())?;
            f.sync_all()?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// The simulator's flash for the pairing key: `pairing.key` in the state directory.
struct PairingFile {
    path: PathBuf,
}

impl PairingStore for PairingFile {
    fn load(&mut self) -> Option<Zeroizing<[u8; KEY_LEN]>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                // A device that cannot read its pairing key must not fall back to serving
                // anyone: stop, as a board with a broken flash would.
                eprintln!("keyward-fw-sim: {}: {e}", self.path.display());
                std::process::exit(1);
            }
        };
        match <[u8; KEY_LEN]>::try_from(bytes.as_slice()) {
            Ok(key) => Some(Zeroizing::new(key)),
            Err(_) => {
                eprintln!(
                    "keyward-fw-sim: {}: expected {KEY_LEN} bytes, found {}",
                    self.path.display(),
                    bytes.len()
                );
                std::process::exit(1);
            }
        }
    }

    fn save(&mut self, key: &[u8; KEY_LEN]) -> Result<(), DeviceError> {
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&self.path)?;
            f.write_all(key)?;
            f.sync_all()?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| {
            eprintln!("keyward-fw-sim: storing the pairing key: {e}");
            DeviceError::Internal
        })
    }
}

fn set_raw(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: `fd` is an open descriptor; `termios` is plain data filled in by tcgetattr.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd.as_raw_fd(), &mut t) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Opens a pseudo-terminal pair, both ends in raw mode. Returns (master, slave, slave path).
fn open_pty() -> io::Result<(OwnedFd, OwnedFd, String)> {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: out-pointers are valid; name/termios/winsize may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openpty succeeded, so both descriptors are open and owned by us alone.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut name = [0 as libc::c_char; 256];
    // SAFETY: `name` is a writable buffer of the given length.
    if unsafe { libc::ttyname_r(slave.as_raw_fd(), name.as_mut_ptr(), name.len()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ttyname_r succeeded and wrote a NUL-terminated string into `name`.
    let path = unsafe { CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    set_raw(&master)?;
    set_raw(&slave)?;
    Ok((master, slave, path))
}

/// Flips one bit inside a frame (never the delimiter, never creating a zero byte).
fn corrupt(frame: &mut [u8]) {
    if frame.len() < 2 {
        return;
    }
    let i = (frame.len() - 1) / 2;
    frame[i] ^= if frame[i] == 1 { 2 } else { 1 };
}

/// The sequence number an answer frame carries, for the log.
fn seq_of(frame: &[u8]) -> Option<u32> {
    let mut copy = frame.strip_suffix(&[0]).unwrap_or(frame).to_vec();
    open_frame(&mut copy)
        .ok()
        .and_then(|payload| payload_seq(payload))
}

/// Fires on every `n`th tick (never when `n` is `None`).
struct Every {
    n: Option<u64>,
    count: u64,
}

impl Every {
    fn new(n: Option<u64>) -> Self {
        Every { n, count: 0 }
    }

    fn tick(&mut self) -> bool {
        let Some(n) = self.n else { return false };
        self.count += 1;
        if self.count == n {
            self.count = 0;
            return true;
        }
        false
    }
}

/// How many bytes the simulator takes off the pseudo-terminal per read: a host with several
/// requests in flight has several frames waiting, and one read (and, below, one write of all
/// their answers) per batch instead of per frame is what keeps the simulator from being the
/// slowest part of the link. A board reads its UART as bytes come; this is the simulator's
/// own economy, not the device's.
const SIM_READ: usize = 64 * 1024;

/// The pseudo-terminal as the device's serial line, with the fault injection applied to the
/// answers on their way out. The frame loop answers every request, so for the host a dropped
/// or stalled answer is the same as a lost or slow request: it times out and retries.
///
/// Answers are collected in `out` and written together just before the simulator waits for
/// more input (and before a stall), so the answers to one batch of requests leave in one
/// write, in the order the frame loop produced them.
struct SimPort {
    line: File,
    /// Bytes read off the line that the frame loop has not taken yet: `input[at..len]`.
    input: Box<[u8]>,
    at: usize,
    len: usize,
    out: Vec<u8>,
    /// Counts answers; the `n`th is not sent.
    drop: Every,
    /// Counts answers sent; the `n`th is sent only after `STALL`.
    stall: Every,
    /// Counts answers sent; the `n`th gets one bit flipped.
    corrupt: Every,
    /// Counts answers sent; the `n`th is cut in half by a "reset", after which the rebooted
    /// device starts its output with a delimiter (and has forgotten its sessions).
    reset: Every,
    rebooted: bool,
    /// Set by a reset until the frame loop has heard of it.
    restarted: bool,
}

impl Port for SimPort {
    type Error = io::Error;

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.len {
            // Everything read so far is answered: send the answers, then wait for more.
            self.flush();
            (self.at, self.len) = (0, 0);
            self.len = loop {
                match self.line.read(&mut self.input) {
                    Ok(0) => {
                        // Should not happen while we hold the slave open; avoid a busy loop.
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            };
        }
        let n = buf.len().min(self.len - self.at);
        buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }

    fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        // Only worked out for the log lines of the faults.
        let seq = || seq_of(frame).map_or_else(|| "?".to_owned(), |s| s.to_string());
        if self.drop.tick() {
            eprintln!(
                "keyward-fw-sim: dropping the answer to seq {} (fault injection)",
                seq()
            );
            return Ok(());
        }
        if self.stall.tick() {
            eprintln!(
                "keyward-fw-sim: stalling the answer to seq {} (fault injection)",
                seq()
            );
            // The answers before this one are not held up with it.
            self.flush();
            std::thread::sleep(STALL);
        }
        let start = self.out.len();
        self.out.extend_from_slice(frame);
        if self.corrupt.tick() {
            eprintln!(
                "keyward-fw-sim: corrupting the answer to seq {} (fault injection)",
                seq()
            );
            corrupt(&mut self.out[start..]);
        }
        if self.reset.tick() {
            eprintln!(
                "keyward-fw-sim: reset while answering seq {} (fault injection)",
                seq()
            );
            self.out.truncate(start + frame.len() / 2);
            self.rebooted = true;
            self.restarted = true;
        } else if std::mem::take(&mut self.rebooted) {
            self.out.insert(start, 0);
        }
        Ok(())
    }

    fn take_restart(&mut self) -> bool {
        std::mem::take(&mut self.restarted)
    }
}

impl SimPort {
    /// Writes the answers collected so far.
    fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        // A failed write is lost answers: the host retries, so keep serving.
        if let Err(e) = self
            .line
            .write_all(&self.out)
            .and_then(|()| self.line.flush())
        {
            eprintln!("keyward-fw-sim: write failed: {e}");
        }
        self.out.clear();
    }
}

/// Answers a panic in the key service with `Error(Internal)` instead of ending the
/// simulator, so the host under test sees an answer and the panic message is on stderr.
struct CatchPanics<H>(H);

impl<H: Handler> Handler for CatchPanics<H> {
    fn handle<'o>(&mut self, req: Request<'_>, out: &'o mut [u8]) -> Response<'o> {
        let inner = &mut self.0;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || inner.handle(req, out)))
            .unwrap_or(Response::Error(DeviceError::Internal))
    }

    fn unwrap_pairing_key(
        &mut self,
        ephemeral: &[u8],
        wrapped_key: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, DeviceError> {
        let inner = &mut self.0;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            inner.unwrap_pairing_key(ephemeral, wrapped_key)
        }))
        .unwrap_or(Err(DeviceError::Internal))
    }
}

fn run(args: Args) -> io::Result<()> {
    let secret = load_or_create_secret(&args.state_dir)?;
    let (master, slave, path) = open_pty()?;
    let service = CatchPanics(KeyService::new(*secret, OsRng));
    drop(secret);
    let gate = Gate::new(
        PairingFile {
            path: args.state_dir.join(PAIRING_FILE),
        },
        OsRng,
    );
    let mut port = SimPort {
        line: File::from(master),
        input: vec![0u8; SIM_READ].into_boxed_slice(),
        at: 0,
        len: 0,
        out: Vec::new(),
        drop: Every::new(args.drop_every),
        stall: Every::new(args.stall_every),
        corrupt: Every::new(args.corrupt_every),
        reset: Every::new(args.reset_every),
        rebooted: false,
        restarted: false,
    };
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "keyward-fw-sim: device {path}")?;
    stdout.flush()?;
    drop(stdout);
    // Keep our own slave descriptor open so the line never hangs up between host sessions.
    let _slave = slave;
    // The output buffer holds plaintexts: wiped when the simulator ends.
    let mut output = Zeroizing::new(vec![0u8; OUTPUT_LEN]);
    let (mut frame_in, mut scratch, mut frame_out) = (
        vec![0u8; MAX_FRAME],
        vec![0u8; SCRATCH_LEN],
        vec![0u8; MAX_FRAME],
    );
    let buffers = Buffers {
        frame_in: &mut frame_in,
        output: &mut output,
        scratch: &mut scratch,
        frame_out: &mut frame_out,
    };
    FrameLoop::new(service, gate, buffers).serve(&mut port)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyward-fw-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The pipelined link against the firmware's own frame loop and pairing gate, run in a thread
//! behind a socket pair, with faults placed on exact answers: a test can hold the first
//! answers back until several requests are on the line (which only a pipelining host gets
//! past), then drop, corrupt, delay or cut chosen answers and count what the host sent again.

use super::*;
use crate::hsm::Hsm;
use keyward_firmware::pairing::Volatile;
use keyward_firmware::{Buffers, FrameLoop, Gate, KeyService, Port, OUTPUT_LEN};
use keyward_shared::frame::{MAX_FRAME, SCRATCH_LEN};
use keyward_shared::Algorithm;
use rand_core::OsRng;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::MutexGuard;

/// Faults on answers, numbered from 1 since [`Device::arm`].
#[derive(Default)]
struct Faults {
    answered: u64,
    /// Answers 1..=hold are held back until answer `hold` is produced, then sent together:
    /// the device has then received `hold` requests that were all in flight at once.
    hold: u64,
    held: Vec<Vec<u8>>,
    drop: Vec<u64>,
    corrupt: Vec<u64>,
    /// Line noise (bytes that make no valid frame) just before these answers.
    noise: Vec<u64>,
    /// Sent only after the host's timeout has passed, from another thread.
    late: Vec<u64>,
    /// Cut in half by a restart, which forgets the pairing sessions.
    restart: Vec<u64>,
    rebooted: bool,
    restarted: bool,
}

struct TestPort {
    input: UnixStream,
    output: Arc<Mutex<UnixStream>>,
    faults: Arc<Mutex<Faults>>,
    late_after: Duration,
    late_sent: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Port for TestPort {
    type Error = std::io::Error;

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }

    fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let mut f = lock(&self.faults);
        f.answered += 1;
        let n = f.answered;
        let mut out = frame.to_vec();
        if f.corrupt.contains(&n) {
            // One bit inside the frame, never making or breaking a delimiter.
            let i = (out.len() - 1) / 2;
            out[i] ^= if out[i] == 1 { 2 } else { 1 };
        }
        if f.restart.contains(&n) {
            out.truncate(out.len() / 2);
            f.rebooted = true;
            f.restarted = true;
        } else if std::mem::take(&mut f.rebooted) {
            out.insert(0, 0);
        }
        if f.noise.contains(&n) {
            let mut noisy = vec![0x13, 0x37, 0xff, 0, 0x42, 0x99, 0x01, 0];
            noisy.extend_from_slice(&out);
            out = noisy;
        }
        let send = !f.drop.contains(&n);
        if send && f.late.contains(&n) {
            let (output, after, sent) =
                (self.output.clone(), self.late_after, self.late_sent.clone());
            std::thread::spawn(move || {
                std::thread::sleep(after);
                let _ = lock(&output).write_all(&out);
                sent.store(true, Ordering::SeqCst);
            });
        } else if n <= f.hold {
            if send {
                f.held.push(out);
            }
            if n == f.hold {
                let mut line = lock(&self.output);
                for frame in std::mem::take(&mut f.held) {
                    line.write_all(&frame)?;
                }
            }
        } else if send {
            lock(&self.output).write_all(&out)?;
        }
        Ok(())
    }

    fn take_restart(&mut self) -> bool {
        std::mem::take(&mut lock(&self.faults).restarted)
    }
}

/// A paired link to a device running in a thread.
struct Device {
    hsm: DeviceHsm<SerialLink>,
    faults: Arc<Mutex<Faults>>,
    late_sent: Arc<AtomicBool>,
    sealed: Vec<u8>,
    _dir: tempfile::TempDir,
}

const ALG: Algorithm = Algorithm::Aes256Gcm;

impl Device {
    fn start(window: usize, timeout: Duration) -> Device {
        let (host, device) = UnixStream::pair().unwrap();
        // How often the reader thread looks whether the link was dropped.
        host.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let late_sent = Arc::new(AtomicBool::new(false));
        let mut port = TestPort {
            output: Arc::new(Mutex::new(device.try_clone().unwrap())),
            input: device,
            faults: faults.clone(),
            late_after: timeout * 3 / 2,
            late_sent: late_sent.clone(),
        };
        std::thread::spawn(move || {
            let secret = KeyService::<OsRng>::generate_device_key(&mut OsRng);
            let service = KeyService::new(*secret, OsRng);
            let gate = Gate::new(Volatile, OsRng);
            let (mut frame_in, mut output, mut scratch, mut frame_out) = (
                vec![0u8; MAX_FRAME],
                vec![0u8; OUTPUT_LEN],
                vec![0u8; SCRATCH_LEN],
                vec![0u8; MAX_FRAME],
            );
            let buffers = Buffers {
                frame_in: &mut frame_in,
                output: &mut output,
                scratch: &mut scratch,
                frame_out: &mut frame_out,
            };
            // Ends when the host's side of the socket is closed.
            let _ = FrameLoop::new(service, gate, buffers).serve(&mut port);
        });
        let link = SerialLink::over(
            Box::new(host.try_clone().unwrap()),
            Box::new(host),
            timeout,
            window,
        )
        .unwrap();
        let identity = link.attest().unwrap();
        let dir = tempfile::tempdir().unwrap();
        link.pair(&identity, &dir.path().join("pairing.key"))
            .unwrap();
        let hsm = DeviceHsm::new("serial", link).with_identity(identity);
        let sealed = hsm.generate(ALG).unwrap();
        Device {
            hsm,
            faults,
            late_sent,
            sealed,
            _dir: dir,
        }
    }

    /// Places faults on the answers from now on (numbered from 1).
    fn arm(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    fn answered(&self) -> u64 {
        lock(&self.faults).answered
    }

    /// `callers` threads at once, each encrypting `rounds` plaintexts of its own; then every
    /// ciphertext is decrypted and must give back the plaintext its caller sent. Returns the
    /// number of answers the device produced for the Encrypts.
    fn encrypt_concurrently(&self, callers: usize, rounds: usize) -> u64 {
        let plaintext = |caller: usize, round: usize| format!("caller {caller} round {round}");
        let results: Vec<Vec<(Vec<u8>, Vec<u8>)>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..callers)
                .map(|caller| {
                    s.spawn(move || {
                        (0..rounds)
                            .map(|round| {
                                let pt = plaintext(caller, round);
                                self.hsm
                                    .encrypt(ALG, &self.sealed, b"aad", pt.as_bytes())
                                    .unwrap_or_else(|e| panic!("caller {caller}: {e}"))
                            })
                            .collect()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let answered = self.answered();
        for (caller, rounds) in results.iter().enumerate() {
            for (round, (nonce, ciphertext)) in rounds.iter().enumerate() {
                let back = self
                    .hsm
                    .decrypt(ALG, &self.sealed, nonce, b"aad", ciphertext)
                    .unwrap();
                assert_eq!(
                    back.as_slice(),
                    plaintext(caller, round).as_bytes(),
                    "caller {caller} round {round} got another caller's answer"
                );
            }
        }
        answered
    }
}

#[test]
fn concurrent_callers_each_get_their_own_answer() {
    let device = Device::start(8, Duration::from_secs(5));
    // The first eight answers come only once eight requests are on the line at once.
    device.arm(Faults {
        hold: 8,
        ..Faults::default()
    });
    // Nothing is lost, so nothing is sent twice.
    assert_eq!(device.encrypt_concurrently(16, 20), 16 * 20);
}

#[test]
fn a_dropped_or_damaged_answer_costs_only_its_own_request_a_retry() {
    let device = Device::start(8, Duration::from_millis(1000));
    device.arm(Faults {
        hold: 8,
        drop: vec![7],
        corrupt: vec![2],
        noise: vec![5],
        ..Faults::default()
    });
    // Eight requests, of which the two whose answers were lost are sent once more.
    assert_eq!(device.encrypt_concurrently(8, 1), 10);
}

#[test]
fn a_late_answer_is_never_taken_for_another_request() {
    let device = Device::start(8, Duration::from_millis(400));
    device.arm(Faults {
        hold: 4,
        late: vec![2],
        ..Faults::default()
    });
    assert_eq!(device.encrypt_concurrently(4, 1), 5);
    // The late answer arrives while the next requests are in flight: they must get theirs.
    while !device.late_sent.load(Ordering::SeqCst) {
        device.encrypt_concurrently(4, 1);
    }
    device.encrypt_concurrently(8, 2);
}

#[test]
fn a_restart_in_the_middle_of_the_pipeline_resends_what_the_device_refused() {
    let device = Device::start(8, Duration::from_millis(1000));
    // Answer 3 is cut by a restart: its request times out. The device has lost the session,
    // so it answers the fourth envelope with a new session and refuses the four behind it,
    // sent under the old one. All six are sent again under the new session.
    device.arm(Faults {
        hold: 8,
        restart: vec![3],
        ..Faults::default()
    });
    assert_eq!(device.encrypt_concurrently(8, 1), 8 + 1 + 1 + 4);
}

#[test]
fn a_restarting_device_under_load_serves_every_caller() {
    let device = Device::start(4, Duration::from_millis(1000));
    device.arm(Faults {
        restart: vec![10, 25, 26, 60],
        corrupt: vec![40],
        ..Faults::default()
    });
    device.encrypt_concurrently(12, 8);
}

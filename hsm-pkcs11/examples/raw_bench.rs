//! Raw PKCS#11 throughput, to know what the token itself can do before blaming our layers.
//!
//! ```text
//! cargo run --release -p keyward-hsm-pkcs11 --example raw_bench -- \
//!     --module /usr/lib/softhsm/libsofthsm2.so --token bench --pin 1234 --threads 2 --seconds 3
//! ```
//!
//! Prints one line per measurement:
//!
//! * `raw_pkcs11_encrypt threads=N ops_per_sec=X`: AES-256-GCM on 32 bytes with one
//!   non-extractable session-object key, each thread on its own session. Each op is what
//!   cryptoki's `Session::encrypt` does: C_EncryptInit, C_Encrypt (length query), C_Encrypt.
//! * `raw_pkcs11_unwrap threads=1 ops_per_sec=X`: C_UnwrapKey (AES-KWP) of an AES-256 key into
//!   a session object, plus the C_DestroyObject that keeps the object count flat.
//! * with `--asym`, also `raw_pkcs11_sign alg=rsa2048|p256|p384 threads=1 ops_per_sec=X`:
//!   C_SignInit + C_Sign (cryptoki's `Session::sign`, which adds a length-query C_Sign) on a
//!   32-byte digest with a sensitive, non-extractable session-object key. RSA signs
//!   DigestInfo(SHA-256) || digest with CKM_RSA_PKCS, as `Pkcs11Hsm::sign` does; EC uses
//!   CKM_ECDSA on the bare digest.
//! * with `--library`, also `keyward_aes_gcm_encrypt threads=N ops_per_sec=X` through
//!   `Pkcs11Hsm::aes_gcm_encrypt` (session pool, cached unwrapped key, C_GenerateRandom nonce),
//!   and with `--library --asym` `keyward_sign alg=... threads=N ops_per_sec=X` through
//!   `Pkcs11Hsm::sign` with a sealed key pair (cached unwrapped private key).
//!   This creates the Keyward root/seal keys on the token if they are missing, so it is opt-in.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use keyward_hsm_pkcs11::{AsymKind, Pkcs11Config, Pkcs11Hsm, SignMechanism};
use zeroize::Zeroizing;

const USAGE: &str =
    "usage: raw_bench --module PATH --token LABEL --pin PIN --threads N --seconds S \
                     [--library] [--asym]";
const MESSAGE: [u8; 32] = [0x5a; 32];
/// A stand-in SHA-256 digest for the signing benchmarks.
const DIGEST: [u8; 32] = [0xa5; 32];
/// DER prefix of DigestInfo(SHA-256) (RFC 8017 section 9.2, note 1).
const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
/// DER OIDs of prime256v1 and secp384r1 (CKA_EC_PARAMS).
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

struct Args {
    module: PathBuf,
    token: String,
    pin: Zeroizing<String>,
    threads: usize,
    duration: Duration,
    library: bool,
    asym: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut module = None;
    let mut token = None;
    let mut pin = None;
    let mut threads = 1usize;
    let mut seconds = 3.0f64;
    let mut library = false;
    let mut asym = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--module" => module = Some(PathBuf::from(value()?)),
            "--token" => token = Some(value()?),
            "--pin" => pin = Some(Zeroizing::new(value()?)),
            "--threads" => threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--seconds" => seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--library" => library = true,
            "--asym" => asym = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    let duration = Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or("--seconds must be a positive number")?;
    Ok(Args {
        module: module.ok_or_else(|| format!("--module is required\n{USAGE}"))?,
        token: token.ok_or_else(|| format!("--token is required\n{USAGE}"))?,
        pin: pin.ok_or_else(|| format!("--pin is required\n{USAGE}"))?,
        threads,
        duration,
        library,
        asym,
    })
}

fn main() -> ExitCode {
    match parse_args().and_then(|args| run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raw_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ck(what: &str) -> impl FnOnce(CkError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn run(args: &Args) -> Result<(), String> {
    let pkcs11 = Pkcs11::new(&args.module).map_err(ck("load module"))?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(format!("C_Initialize: {e}")),
    }
    let slot = find_slot(&pkcs11, &args.token)?;
    let pin = AuthPin::from(args.pin.as_str());

    // The key is a session object of `owner`: visible to every session of this process and
    // destroyed when `owner` closes, so `owner` must outlive the workers.
    let owner = open_session(&pkcs11, slot, &pin)?;
    let key = owner
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::ValueLen(32u64.into()),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ],
        )
        .map_err(ck("C_GenerateKey"))?;

    let ops = run_threads(args.threads, args.duration, |index| {
        let session = open_session(&pkcs11, slot, &pin)?;
        Ok(move |counter: u64| encrypt_once(&session, key, index, counter))
    })?;
    println!(
        "raw_pkcs11_encrypt threads={} ops_per_sec={ops:.0}",
        args.threads
    );

    let ops = bench_unwrap(&owner, args.duration)?;
    println!("raw_pkcs11_unwrap threads=1 ops_per_sec={ops:.0}");

    if args.asym {
        for alg in [Alg::Rsa2048, Alg::P256, Alg::P384] {
            let ops = bench_sign(&owner, alg, args.duration)?;
            println!(
                "raw_pkcs11_sign alg={} threads=1 ops_per_sec={ops:.0}",
                alg.name()
            );
        }
    }

    if args.library {
        let hsm = Pkcs11Hsm::open(&Pkcs11Config {
            module: args.module.clone(),
            token_label: args.token.clone(),
            token_serial: None,
            slot: None,
            pin: args.pin.clone(),
            pool_size: args.threads,
            // A benchmark token is disposable; provision it on first use.
            create_keys: true,
        })
        .map_err(|e| format!("Pkcs11Hsm::open: {e}"))?;
        let sealed = hsm
            .generate_aes256_sealed()
            .map_err(|e| format!("generate_aes256_sealed: {e}"))?;
        let (hsm, sealed) = (&hsm, &sealed);
        let ops = run_threads(args.threads, args.duration, |_| {
            Ok(move |_: u64| {
                hsm.aes_gcm_encrypt(sealed, b"", &MESSAGE)
                    .map(drop)
                    .map_err(|e| format!("aes_gcm_encrypt: {e}"))
            })
        })?;
        println!(
            "keyward_aes_gcm_encrypt threads={} ops_per_sec={ops:.0}",
            args.threads
        );

        if args.asym {
            for alg in [Alg::Rsa2048, Alg::P256, Alg::P384] {
                let pair = hsm
                    .generate_key_pair_sealed(alg.kind())
                    .map_err(|e| format!("generate_key_pair_sealed: {e}"))?;
                let (sealed, mech) = (&pair.sealed_private, alg.sign_mechanism());
                let ops = run_threads(args.threads, args.duration, |_| {
                    Ok(move |_: u64| {
                        hsm.sign(sealed, mech, &DIGEST)
                            .map(drop)
                            .map_err(|e| format!("sign: {e}"))
                    })
                })?;
                println!(
                    "keyward_sign alg={} threads={} ops_per_sec={ops:.0}",
                    alg.name(),
                    args.threads
                );
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Alg {
    Rsa2048,
    P256,
    P384,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Alg::Rsa2048 => "rsa2048",
            Alg::P256 => "p256",
            Alg::P384 => "p384",
        }
    }

    fn kind(self) -> AsymKind {
        match self {
            Alg::Rsa2048 => AsymKind::Rsa2048,
            Alg::P256 => AsymKind::EcP256,
            Alg::P384 => AsymKind::EcP384,
        }
    }

    fn sign_mechanism(self) -> SignMechanism {
        match self {
            Alg::Rsa2048 => SignMechanism::RsaPkcs1Sha256,
            Alg::P256 | Alg::P384 => SignMechanism::Ecdsa,
        }
    }
}

/// Single-threaded C_SignInit + C_Sign on a 32-byte digest with a sensitive, non-extractable
/// session-object private key; the key pair is destroyed afterwards.
fn bench_sign(session: &Session, alg: Alg, duration: Duration) -> Result<f64, String> {
    let private = [
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ];
    let (mechanism, public, data) = match alg {
        Alg::Rsa2048 => (
            Mechanism::RsaPkcsKeyPairGen,
            vec![
                Attribute::Token(false),
                Attribute::Verify(true),
                Attribute::ModulusBits(2048u64.into()),
                Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            ],
            [&SHA256_DIGEST_INFO_PREFIX[..], &DIGEST].concat(),
        ),
        Alg::P256 | Alg::P384 => (
            Mechanism::EccKeyPairGen,
            vec![
                Attribute::Token(false),
                Attribute::Verify(true),
                Attribute::EcParams(
                    if matches!(alg, Alg::P256) {
                        P256_PARAMS
                    } else {
                        P384_PARAMS
                    }
                    .to_vec(),
                ),
            ],
            DIGEST.to_vec(),
        ),
    };
    let (public_key, private_key) = session
        .generate_key_pair(&mechanism, &public, &private)
        .map_err(ck("C_GenerateKeyPair"))?;
    let sign_mechanism = match alg {
        Alg::Rsa2048 => Mechanism::RsaPkcs,
        Alg::P256 | Alg::P384 => Mechanism::Ecdsa,
    };
    let started = Instant::now();
    let mut count = 0u64;
    let mut result = Ok(());
    while started.elapsed() < duration {
        if let Err(e) = session.sign(&sign_mechanism, private_key, &data) {
            result = Err(format!("C_Sign ({}): {e}", alg.name()));
            break;
        }
        count += 1;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    session
        .destroy_object(private_key)
        .map_err(ck("C_DestroyObject"))?;
    session
        .destroy_object(public_key)
        .map_err(ck("C_DestroyObject"))?;
    result.map(|()| rate)
}

fn find_slot(pkcs11: &Pkcs11, label: &str) -> Result<Slot, String> {
    let label = label.trim_end_matches(' ');
    for slot in pkcs11.get_slots_with_token().map_err(ck("C_GetSlotList"))? {
        let info = pkcs11.get_token_info(slot).map_err(ck("C_GetTokenInfo"))?;
        if info.label() == label {
            return Ok(slot);
        }
    }
    Err(format!("no token labelled {label:?}"))
}

fn open_session(pkcs11: &Pkcs11, slot: Slot, pin: &AuthPin) -> Result<Session, String> {
    let session = pkcs11.open_rw_session(slot).map_err(ck("C_OpenSession"))?;
    match session.login(UserType::User, Some(pin)) {
        // Login is per process: only the first session actually logs in.
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(e) => Err(format!("C_Login: {e}")),
    }
}

/// One AES-GCM encryption. The nonce is (thread index, counter) so that even a benchmark
/// never reuses a nonce under the key; a real caller uses C_GenerateRandom.
fn encrypt_once(
    session: &Session,
    key: ObjectHandle,
    index: usize,
    counter: u64,
) -> Result<(), String> {
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&(index as u32).to_be_bytes());
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    let params = GcmParams::new(&mut nonce, b"", 128u64.into()).map_err(ck("GcmParams"))?;
    session
        .encrypt(&Mechanism::AesGcm(params), key, &MESSAGE)
        .map(drop)
        .map_err(ck("C_Encrypt"))
}

/// Run `threads` workers for `duration`; each gets its own op closure from `setup` (run
/// inside the worker, so a `Session` never crosses threads). Returns total ops per second.
fn run_threads<S, F>(threads: usize, duration: Duration, setup: S) -> Result<f64, String>
where
    S: Fn(usize) -> Result<F, String> + Sync,
    F: FnMut(u64) -> Result<(), String>,
{
    let start_line = Arc::new(Barrier::new(threads));
    let results: Vec<Result<(u64, Duration), String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|index| {
                let start_line = Arc::clone(&start_line);
                let setup = &setup;
                scope.spawn(move || {
                    let op = setup(index);
                    // Everyone reaches the barrier, even on setup failure, so nobody hangs.
                    start_line.wait();
                    let mut op = op?;
                    let started = Instant::now();
                    let mut count = 0u64;
                    while started.elapsed() < duration {
                        op(count)?;
                        count += 1;
                    }
                    Ok((count, started.elapsed()))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("worker panicked".into())))
            .collect()
    });
    let mut total = 0u64;
    let mut longest = Duration::ZERO;
    for r in results {
        let (count, elapsed) = r?;
        total += count;
        longest = longest.max(elapsed);
    }
    Ok(total as f64 / longest.as_secs_f64())
}

fn bench_unwrap(session: &Session, duration: Duration) -> Result<f64, String> {
    let kek = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::ValueLen(32u64.into()),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
            ],
        )
        .map_err(ck("C_GenerateKey (kek)"))?;
    let data_key = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::ValueLen(32u64.into()),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ],
        )
        .map_err(ck("C_GenerateKey (data key)"))?;
    let wrapped = session
        .wrap_key(&Mechanism::AesKeyWrapPad, kek, data_key)
        .map_err(ck("C_WrapKey"))?;
    session
        .destroy_object(data_key)
        .map_err(ck("C_DestroyObject"))?;

    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
    ];
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < duration {
        let h = session
            .unwrap_key(&Mechanism::AesKeyWrapPad, kek, &wrapped, &template)
            .map_err(ck("C_UnwrapKey"))?;
        session.destroy_object(h).map_err(ck("C_DestroyObject"))?;
        count += 1;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    session.destroy_object(kek).map_err(ck("C_DestroyObject"))?;
    Ok(rate)
}

//! What each PKCS#11 module offers Keyward, as a Markdown table (docs/pkcs11-modules.md).
//!
//! ```text
//! KEYWARD_PIN=... cargo run -p keyward-hsm-pkcs11 --example capabilities -- \
//!     SoftHSM2=/usr/lib/softhsm/libsofthsm2.so:keyward kryoptic=/path/libkryoptic_pkcs11.so:keyward
//! ```
//!
//! Each argument is `NAME=MODULE:TOKEN_LABEL`; every token must have the user PIN in
//! `KEYWARD_PIN` (each module reads its own configuration variable, e.g. `SOFTHSM2_CONF` and
//! `KRYOPTIC_CONF`, so both can be set at once). One column per module.
//!
//! The rows come from two sources, both this crate's own view of the token rather than a
//! vendor's data sheet: what `C_GetMechanismList` lists, and what `Pkcs11Hsm::open`
//! established by running each path once (its capability probe). The open also provisions the
//! Keyward root and seal keys if the token has none, so point it at a test token.

use std::process::ExitCode;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::MechanismType;
use keyward_hsm_pkcs11::{Pkcs11Config, Pkcs11Hsm, RsaDecryptMechanism, RsaDecryptPath};
use zeroize::Zeroizing;

/// One module's column: row label -> cell.
type Column = Vec<(String, String)>;

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn path(p: Result<RsaDecryptPath, keyward_hsm_pkcs11::Error>) -> String {
    match p {
        Ok(RsaDecryptPath::Token) => "in the token".into(),
        Ok(RsaDecryptPath::HostOaepDecoding) => {
            "raw RSA in the token, OAEP decoded on the host".into()
        }
        Err(_) => "no".into(),
    }
}

fn column(module: &str, label: &str, pin: &str) -> Result<Column, String> {
    // A module Keyward cannot run on still gets its column: what it lists, and why it failed.
    let opened = Pkcs11Hsm::open(&Pkcs11Config {
        module: module.into(),
        token_label: label.into(),
        token_serial: None,
        slot: None,
        pin: Zeroizing::new(pin.into()),
        pool_size: 1,
        create_keys: true,
    });

    // The same module again, for what it lists.
    let p11 = Pkcs11::new(module).map_err(|e| format!("{module}: {e}"))?;
    // Pkcs11Hsm::open initialised it already, unless it failed before that.
    if let Err(e) = p11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        if !matches!(
            e,
            cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::CryptokiAlreadyInitialized, _)
        ) {
            return Err(format!("{module}: C_Initialize: {e}"));
        }
    }
    let info = p11.get_library_info().map_err(|e| e.to_string())?;
    let slot = p11
        .get_slots_with_token()
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|s| {
            p11.get_token_info(*s)
                .is_ok_and(|t| t.label().trim_end() == label)
        })
        .ok_or("token vanished")?;
    let token = p11.get_token_info(slot).map_err(|e| e.to_string())?;
    let mechs = p11.get_mechanism_list(slot).map_err(|e| e.to_string())?;
    let listed = |m: MechanismType| yes(mechs.contains(&m));
    let vendor = mechs
        .iter()
        .filter(|m| u64::from(**m) >= cryptoki_sys::CKM_VENDOR_DEFINED)
        .count();

    let lib_version = info.library_version();
    let mut rows: Column = vec![
        (
            "Library".into(),
            format!(
                "{} {}.{} ({})",
                info.library_description().trim_end(),
                lib_version.major(),
                lib_version.minor(),
                info.manufacturer_id().trim_end()
            ),
        ),
        ("Token model".into(), token.model().trim_end().to_owned()),
        (
            "Mechanisms listed (those cryptoki 0.12 can name)".into(),
            mechs.len().to_string(),
        ),
        ("CKM_AES_KEY_GEN".into(), listed(MechanismType::AES_KEY_GEN)),
        ("CKM_AES_GCM".into(), listed(MechanismType::AES_GCM)),
        (
            "CKM_AES_KEY_WRAP_PAD (RFC 5649)".into(),
            listed(MechanismType::AES_KEY_WRAP_PAD),
        ),
        (
            "CKM_AES_KEY_WRAP (RFC 3394)".into(),
            listed(MechanismType::AES_KEY_WRAP),
        ),
        (
            "CKM_AES_ECB (key check values)".into(),
            listed(MechanismType::AES_ECB),
        ),
        (
            "CKM_EC_KEY_PAIR_GEN".into(),
            listed(MechanismType::ECC_KEY_PAIR_GEN),
        ),
        ("CKM_ECDSA".into(), listed(MechanismType::ECDSA)),
        (
            "CKM_RSA_PKCS_KEY_PAIR_GEN".into(),
            listed(MechanismType::RSA_PKCS_KEY_PAIR_GEN),
        ),
        ("CKM_RSA_PKCS".into(), listed(MechanismType::RSA_PKCS)),
        (
            "CKM_RSA_PKCS_PSS".into(),
            listed(MechanismType::RSA_PKCS_PSS),
        ),
        (
            "CKM_RSA_PKCS_OAEP".into(),
            listed(MechanismType::RSA_PKCS_OAEP),
        ),
        (
            "CKM_RSA_X_509 (raw RSA)".into(),
            listed(MechanismType::RSA_X_509),
        ),
        (
            "Vendor-defined mechanisms (SM2/SM4 have no standard number)".into(),
            vendor.to_string(),
        ),
    ];
    let hsm = match opened {
        Ok(hsm) => hsm,
        Err(e) => {
            rows.push(("Keyward backend opens".into(), format!("no: {e}")));
            return Ok(rows);
        }
    };
    let caps = hsm.capabilities();
    rows.push(("Keyward backend opens".into(), "yes".into()));
    rows.extend([
        // The open succeeded: the root key (AES-256, CKA_WRAP/CKA_UNWRAP only, sensitive,
        // never extractable, CKA_LOCAL, a nested CKA_UNWRAP_TEMPLATE) and the seal key were
        // created or found and vetted, and a test unwrap under the template behaved.
        (
            "Root key with nested CKA_UNWRAP_TEMPLATE, vetted".into(),
            "yes".into(),
        ),
        // RFC 5649 under the number this token gives it (0x210B is not in cryptoki's list,
        // so the CKM_AES_KEY_WRAP_PAD row above cannot show it).
        (
            "Root key wraps with (RFC 5649)".into(),
            hsm.key_wrap_mechanism().into(),
        ),
        (
            "Probe: RSA-2048 sealed key pairs".into(),
            yes(caps.rsa_2048),
        ),
        ("Probe: EC P-256 sealed key pairs".into(), yes(caps.ec_p256)),
        ("Probe: EC P-384 sealed key pairs".into(), yes(caps.ec_p384)),
        ("Probe: RSA-PSS (SHA-256) signing".into(), yes(caps.rsa_pss)),
        (
            "Probe: RSA-OAEP SHA-1 decryption".into(),
            path(hsm.rsa_decrypt_path(RsaDecryptMechanism::OaepSha1)),
        ),
        (
            "Probe: RSA-OAEP SHA-256 decryption".into(),
            path(hsm.rsa_decrypt_path(RsaDecryptMechanism::OaepSha256)),
        ),
        (
            "Probe: BYOK unwrap, RSA-OAEP SHA-1".into(),
            path(hsm.rsa_import_path(RsaDecryptMechanism::OaepSha1)),
        ),
        (
            "Probe: BYOK unwrap, RSA-OAEP SHA-256".into(),
            path(hsm.rsa_import_path(RsaDecryptMechanism::OaepSha256)),
        ),
        (
            "Probe: an RSA ciphertext that does not decrypt is answered with".into(),
            if caps.rsa_refusal_is_device_error {
                "CKR_DEVICE_ERROR, session kept"
            } else {
                "a decryption error code"
            }
            .into(),
        ),
    ]);
    Ok(rows)
}

fn main() -> ExitCode {
    let Ok(pin) = std::env::var("KEYWARD_PIN") else {
        eprintln!("set KEYWARD_PIN to the tokens' user PIN");
        return ExitCode::FAILURE;
    };
    let mut names = Vec::new();
    let mut columns = Vec::new();
    for arg in std::env::args().skip(1) {
        let Some((name, rest)) = arg.split_once('=') else {
            eprintln!("expected NAME=MODULE:TOKEN_LABEL, got {arg}");
            return ExitCode::FAILURE;
        };
        let Some((module, label)) = rest.rsplit_once(':') else {
            eprintln!("expected NAME=MODULE:TOKEN_LABEL, got {arg}");
            return ExitCode::FAILURE;
        };
        match column(module, label, &pin) {
            Ok(c) => {
                names.push(name.to_owned());
                columns.push(c);
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // Row labels in order, from the column with the most rows (a module Keyward could not
    // open has no probe rows: "n/a" there).
    let Some(longest) = columns.iter().max_by_key(|c| c.len()) else {
        eprintln!("name at least one module");
        return ExitCode::FAILURE;
    };
    println!("| | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(names.len()));
    for (label, _) in longest {
        let cells: Vec<&str> = columns
            .iter()
            .map(|c| {
                c.iter()
                    .find(|(l, _)| l == label)
                    .map_or("n/a", |(_, v)| v.as_str())
            })
            .collect();
        println!("| {label} | {} |", cells.join(" | "));
    }
    ExitCode::SUCCESS
}

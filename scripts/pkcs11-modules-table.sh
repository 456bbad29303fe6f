#!/usr/bin/env bash
# What each PKCS#11 module offers (docs/pkcs11-modules.md): builds kryoptic from crates.io in a
# throw-away crate under target/kryoptic (nothing vendored), makes one fresh token on SoftHSM2
# and one on kryoptic, and prints the table from the backend's own capability probe.
# scripts/test.sh runs it, then the KMS suites on kryoptic with the module built here.
# Needs libclang-dev, libssl-dev, pkg-config.
set -euo pipefail
cd "$(dirname "$0")/.."
# Built in a throw-away crate outside the workspace (nothing vendored): the `minimal` feature set,
# because the default one needs OpenSSL 3.2/3.5 and bookworm has 3.0.
kryoptic_dir=target/kryoptic
mkdir -p "$kryoptic_dir/src"
touch "$kryoptic_dir/src/lib.rs"
cat > "$kryoptic_dir/Cargo.toml" <<'TOML'
[workspace]
[package]
name = "kryoptic-build"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
kryoptic = { version = "1.5", default-features = false, features = ["minimal"] }
kryoptic-lib = { version = "1.5", default-features = false, features = ["minimal", "dynamic"] }
TOML
# Its own target directory inside, whatever CARGO_TARGET_DIR says: the path below is fixed.
(cd "$kryoptic_dir" && CARGO_TARGET_DIR=target cargo build --release --quiet -p kryoptic)
kryoptic_module="$PWD/$kryoptic_dir/target/release/libkryoptic_pkcs11.so"
# One fresh token on each module, then the capability table from the backend's own probe.
tables=$(mktemp -d)
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$tables" > "$tables/softhsm2.conf"
mkdir "$tables/tokens"
SOFTHSM2_CONF="$tables/softhsm2.conf" softhsm2-util --init-token --free --label keyward \
  --pin keyward-test-pin-1234 --so-pin 5678 >/dev/null
printf '[[slots]]\nslot = 1\ndbtype = "sqlite"\ndbargs = "%s/kryoptic.sql"\n' "$tables" > "$tables/kryoptic.conf"
KRYOPTIC_CONF="$tables/kryoptic.conf" pkcs11-tool --module "$kryoptic_module" --init-token \
  --label keyward --so-pin 5678 >/dev/null
KRYOPTIC_CONF="$tables/kryoptic.conf" pkcs11-tool --module "$kryoptic_module" --init-pin --login \
  --login-type so --so-pin 5678 --new-pin keyward-test-pin-1234 --pin keyward-test-pin-1234 >/dev/null
SOFTHSM2_CONF="$tables/softhsm2.conf" KRYOPTIC_CONF="$tables/kryoptic.conf" \
  KEYWARD_PIN=keyward-test-pin-1234 cargo run --quiet -p keyward-hsm-pkcs11 --example capabilities -- \
  SoftHSM2=/usr/lib/softhsm/libsofthsm2.so:keyward kryoptic="$kryoptic_module":keyward
rm -rf "$tables"

#!/usr/bin/env bash
# Runs Keyward's whole test suite on a fresh Debian machine: installs SoftHSM2, PostgreSQL,
# MariaDB, Redis, Node.js, npm, Chromium, OpenSC and pkcs11-provider (apt), the Python SDK venv and the Node.js SDK (npm ci)
# when they are missing, checks formatting and lints, runs the Rust unit and end-to-end tests, then
# the Python and Node.js SDK compatibility suites against the real daemon. The store-facing suites also run on
# PostgreSQL (a throw-away cluster per test process; docs/postgres.md).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
[ -e /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null || missing+=(softhsm2)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
python3 -c "import venv, ensurepip" 2>/dev/null || missing+=(python3-venv)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
# The console suite drives Debian's Chromium (playwright-core downloads no browser).
command -v chromium >/dev/null || missing+=(chromium)
# The tests start clusters of their own with these binaries; no system service is needed.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# e2e_rotation starts its own MariaDB and Redis servers in temporary directories
# (docs/rotation.md); the packages' system services are not used.
[ -x /usr/sbin/mariadbd ] && command -v mariadb-install-db >/dev/null || missing+=(mariadb-server)
command -v redis-server >/dev/null || missing+=(redis-server)
# The PKCS#11 module suite (tests/python/test_pkcs11_module.py) drives real applications:
# OpenSC's pkcs11-tool, OpenSSL 3 through pkcs11-provider, and ssh-keygen.
command -v pkcs11-tool >/dev/null || missing+=(opensc)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
ls /usr/lib/*/ossl-modules/pkcs11.so >/dev/null 2>&1 || missing+=(pkcs11-provider)
# The Debian package checks (scripts/test-deb.sh): lintian, systemd-analyze, readelf.
command -v lintian >/dev/null || missing+=(lintian)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v readelf >/dev/null || missing+=(binutils)
# kryoptic, the second PKCS#11 module (scripts/pkcs11-modules-table.sh builds it from crates.io):
# its OpenSSL bindings need libclang (bindgen), the OpenSSL headers and pkg-config.
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  sudo_if_needed apt-get update -qq
  # Debian 12 (bookworm) has pkcs11-provider in its backports only; later releases in main.
  if [[ " ${missing[*]} " == *" pkcs11-provider "* ]] \
     && ! apt-cache policy pkcs11-provider | grep -q 'Candidate: [0-9]'; then
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    echo "==> enabling ${codename}-backports for pkcs11-provider"
    echo "deb http://deb.debian.org/debian ${codename}-backports main" \
      | sudo_if_needed tee "/etc/apt/sources.list.d/${codename}-backports.list" >/dev/null
    sudo_if_needed apt-get update -qq
  fi
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! .venv/bin/python -c "import tencentcloud.kms.v20190118, tencentcloud.ssm.v20190923, tencentcloud.cloudaudit.v20190319, cryptography, gmssl, kyber_py, dilithium_py, pytest, httpx, h2" 2>/dev/null \
   || [ ! -x .venv/bin/tccli ]; then
  echo "==> creating .venv with the tencentcloud SDK"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt
fi

echo "==> disk free before the build: $(df -h . | awk 'NR==2 {print $4}')"
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy -p keyward-firmware --features sim --all-targets --quiet -- -D warnings
echo "==> cargo test"
# The firmware simulator (a std binary behind the `sim` feature) serves the serial-backend tests.
cargo build -p keyward-firmware --features sim --bin keyward-fw-sim
cargo test -p keyward-firmware --features sim --test sim
cargo test --workspace
# The PKCS#11 module (a cdylib) that the Python suite loads into pkcs11-tool, OpenSSL and ssh-keygen.
cargo build -p keyward-pkcs11-module
echo "==> the freestanding (no_std, no_main) firmware build (the Python suite drives its binary)"
cargo fmt --manifest-path firmware/device/Cargo.toml -- --check
cargo clippy --release --quiet --manifest-path firmware/device/Cargo.toml -- -D warnings
cargo build --release --quiet --manifest-path firmware/device/Cargo.toml
# Fuzzing is CPU-bound and the suites below mostly wait on daemons: it runs beside them.
echo "==> coverage-guided fuzzing of every input decoder, in the background (20 s per target; docs/fuzzing.md)"
mkdir -p target
bash scripts/fuzz.sh 20 > target/fuzz.log 2>&1 &
fuzz_pid=$!
echo "==> every backend-neutral suite on the embedded and serial (firmware simulator) backends"
# `cargo test --workspace` above ran them on SoftHSM2. Cases that need one backend create it
# themselves (Daemon::softhsm(); @pytest.mark.backends in the Python suite).
for backend in embedded serial; do
  KEYWARD_TEST_BACKEND=$backend cargo test -p keyward --test e2e_kms_api --test e2e_lifecycle \
    --test e2e_ssm --test e2e_access --test e2e_audit --test e2e_integrity \
    --test e2e_asymmetric --test e2e_byok
  KEYWARD_TEST_BACKEND=$backend KEYWARD_BIN="$PWD/target/debug/keyward" \
    .venv/bin/python -m pytest -q tests/python
done
echo "==> the PKCS#11 backend on a second module, kryoptic: its capability table, then the KMS, Secrets Manager, access and audit suites"
# Builds kryoptic 1.5 from crates.io in target/kryoptic (about a minute on one core once the
# crates are downloaded; measured 66 s for the whole script at -j1) and prints
# what SoftHSM2 and kryoptic offer (docs/pkcs11-modules.md). The suites that reach into SoftHSM2
# itself (e2e_security, e2e_integrity, e2e_cluster) stay on SoftHSM2.
bash scripts/pkcs11-modules-table.sh
KEYWARD_TEST_PKCS11_MODULE="$PWD/target/kryoptic/target/release/libkryoptic_pkcs11.so" \
  cargo test -p keyward --test e2e_kms_api --test e2e_lifecycle --test e2e_asymmetric \
  --test e2e_byok --test e2e_pkcs11_recovery --test e2e_ssm --test e2e_access --test e2e_audit
echo "==> the store-facing suites and the Python SDK suite on PostgreSQL (SoftHSM2)"
KEYWARD_TEST_STORE=postgres cargo test -p keyward --test e2e_kms_api --test e2e_lifecycle \
  --test e2e_ssm --test e2e_access --test e2e_audit --test e2e_integrity --test e2e_backup \
  --test e2e_rotation
KEYWARD_TEST_STORE=postgres KEYWARD_BIN="$PWD/target/debug/keyward" \
  .venv/bin/python -m pytest -q tests/python
echo "==> Python SDK compatibility suite on SoftHSM2"
KEYWARD_BIN="$PWD/target/debug/keyward" .venv/bin/python -m pytest -q tests/python
echo "==> Python SDK suite in test-bench mode (keyward init --softhsm, then serve with no configuration)"
KEYWARD_TEST_TESTBENCH=1 KEYWARD_BIN="$PWD/target/debug/keyward" .venv/bin/python -m pytest -q tests/python
echo "==> fuzzing (started above)"
if ! wait "$fuzz_pid"; then
  cat target/fuzz.log
  echo "fuzzing failed" >&2
  exit 1
fi
tail -n 20 target/fuzz.log
echo "==> the Debian package: lintian, systemd-analyze verify, the packaged binary in a temporary root"
bash scripts/test-deb.sh
echo "==> Node.js SDK compatibility suite (tencentcloud-sdk-nodejs, pinned in tests/node/package-lock.json)"
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error && KEYWARD_BIN="$PWD/../../target/debug/keyward" node --test)
echo "==> web console suite in headless Chromium (playwright-core, pinned in tests/console/package-lock.json): SoftHSM2 on SQLite, then embedded on PostgreSQL"
(cd tests/console && npm ci --no-audit --no-fund --loglevel=error \
  && KEYWARD_BIN="$PWD/../../target/debug/keyward" node --test \
  && KEYWARD_TEST_STORE=postgres KEYWARD_TEST_BACKEND=embedded \
     KEYWARD_BIN="$PWD/../../target/debug/keyward" node --test)

#!/usr/bin/env bash
# Reproduces docs/benchmarks.md in one run on one machine: the daemon on a fresh SoftHSM2 token
# (Encrypt 32 B, GenerateDataKey, Decrypt), the raw PKCS#11 C_Encrypt rate of the same kind of
# token, and a bare axum endpoint hit by the same load generator (the HTTP ceiling).
# Usage: scripts/bench.sh [seconds] [concurrency]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conc=${2:-16}
cargo build --release --quiet --bin keyward --example raw_bench -p keyward -p keyward-hsm-pkcs11
cargo build --release --quiet -p keyward-firmware --features sim --bin keyward-fw-sim
bin=target/release/keyward
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" > "$work/softhsm2.conf"
export SOFTHSM2_CONF="$work/softhsm2.conf" KEYWARD_PIN=keyward-bench-pin-1234 KEYWARD_LOG=warn
softhsm2-util --init-token --free --label keyward --pin keyward-bench-pin-1234 --so-pin 5678 >/dev/null
cat > "$work/keyward.toml" <<TOML
data_dir = "$work/data"
[hsm]
backend = "pkcs11"
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "keyward"
pin_env = "KEYWARD_PIN"
pool_size = ${POOL:-4}
TOML
"$bin" init --config "$work/keyward.toml" > "$work/cred.json"
"$bin" serve --config "$work/keyward.toml" --listen 127.0.0.1:18181 2> "$work/serve.log" &
"$bin" bare-http --listen 127.0.0.1:18182 2> /dev/null &
sleep 1
echo "# $(date -u +%FT%TZ) $(nproc) cores, ${secs}s per run, concurrency $conc"
for action in Encrypt GenerateDataKey Decrypt; do
  "$bin" bench --endpoint http://127.0.0.1:18181 --credentials "$work/cred.json" \
    --action "$action" --concurrency "$conc" --duration "$secs"
done
for c in 1 16 64; do
  for action in GetSecretValue Encrypt; do
    "$bin" bench --endpoint http://127.0.0.1:18181 --credentials "$work/cred.json" \
      --action "$action" --concurrency "$c" --duration "$secs"
  done
done
"$bin" bench --endpoint http://127.0.0.1:18182 --credentials "$work/cred.json" \
  --action BareHttp --concurrency "$conc" --duration "$secs"
for a in Sign-RSA Sign-ECC Sign-P384 Sign-SM2 Verify-RSA Verify-ECC Verify-P384 Verify-SM2; do
  "$bin" bench --endpoint http://127.0.0.1:18181 --credentials "$work/cred.json" \
    --action "$a" --concurrency "$conc" --duration "$secs"
done
target/release/examples/raw_bench --module /usr/lib/softhsm/libsofthsm2.so --token keyward \
  --pin keyward-bench-pin-1234 --threads 1 --seconds "$secs" --asym | grep raw_pkcs11_sign || true
# The same Encrypt through the firmware core: linked in (embedded) and over a pty (serial).
target/release/keyward-fw-sim --state-dir "$work/sim" > "$work/sim.out" &
sleep 0.5
device=$(sed -n 's/^keyward-fw-sim: device //p' "$work/sim.out")
for backend in embedded serial; do
  if [ "$backend" = serial ]; then hsm="[hsm]
backend = \"serial\"
path = \"$device\""; else hsm=""; fi
  printf 'data_dir = "%s"\n%s\n' "$work/data-$backend" "$hsm" > "$work/$backend.toml"
  "$bin" init --config "$work/$backend.toml" > "$work/$backend.json"
  "$bin" serve --config "$work/$backend.toml" --listen 127.0.0.1:18183 2> "$work/$backend.log" &
  pid=$!
  sleep 1
  echo "backend=$backend"
  "$bin" bench --endpoint http://127.0.0.1:18183 --credentials "$work/$backend.json" \
    --action Encrypt --concurrency "$conc" --duration "$secs"
  kill $pid; wait $pid 2>/dev/null || true
done
for t in 1 2; do
  target/release/examples/raw_bench --module /usr/lib/softhsm/libsofthsm2.so --token keyward \
    --pin keyward-bench-pin-1234 --threads "$t" --seconds "$secs"
done

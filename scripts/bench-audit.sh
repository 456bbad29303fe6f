#!/usr/bin/env bash
# Encrypt (32 B) throughput with the audit log on and off, side by side (docs/benchmarks.md).
# Two daemons on fresh data directories, identical but for `[audit] enabled`, measured in
# alternation (on, off, on, off, ...) so drift in the machine's load hits both equally.
# Usage: scripts/bench-audit.sh [seconds] [concurrency] [rounds] [backend: pkcs11|embedded]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}
conc=${2:-16}
rounds=${3:-3}
backend=${4:-pkcs11}
cargo build --release --quiet --bin keyward -p keyward
bin=target/release/keyward
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export KEYWARD_PIN=keyward-bench-pin-1234 KEYWARD_LOG=warn
hsm=""
if [ "$backend" = pkcs11 ]; then
  mkdir -p "$work/tokens"
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" > "$work/softhsm2.conf"
  export SOFTHSM2_CONF="$work/softhsm2.conf"
  softhsm2-util --init-token --free --label keyward-on --pin keyward-bench-pin-1234 --so-pin 5678 >/dev/null
  softhsm2-util --init-token --free --label keyward-off --pin keyward-bench-pin-1234 --so-pin 5678 >/dev/null
fi
port=18190
for mode in on off; do
  if [ "$backend" = pkcs11 ]; then hsm="[hsm]
backend = \"pkcs11\"
module = \"/usr/lib/softhsm/libsofthsm2.so\"
token_label = \"keyward-$mode\"
pin_env = \"KEYWARD_PIN\"
pool_size = 4"; fi
  enabled=true; [ "$mode" = off ] && enabled=false
  printf 'data_dir = "%s"\n[audit]\nenabled = %s\n%s\n' "$work/data-$mode" "$enabled" "$hsm" > "$work/$mode.toml"
  "$bin" init --config "$work/$mode.toml" > "$work/$mode.json"
  port=$((port + 1))
  echo "$port" > "$work/$mode.port"
  "$bin" serve --config "$work/$mode.toml" --listen "127.0.0.1:$port" 2> "$work/$mode.log" &
  echo $! > "$work/$mode.pid"
done
# CPU time (user + system, clock ticks) the daemon has used so far, audit writer included.
cpu() { awk '{print $14 + $15}' "/proc/$(cat "$work/$1.pid")/stat"; }
sleep 1
echo "# $(date -u +%FT%TZ) $(nproc) cores, backend $backend, Encrypt 32 B, ${secs}s per run, concurrency $conc"
for r in $(seq "$rounds"); do
  for mode in on off; do
    before=$(cpu "$mode")
    line=$("$bin" bench --endpoint "http://127.0.0.1:$(cat "$work/$mode.port")" \
      --credentials "$work/$mode.json" --action Encrypt --concurrency "$conc" --duration "$secs")
    ticks=$(( $(cpu "$mode") - before ))
    ops=$(sed -n 's/.* ops=\([0-9]*\).*/\1/p' <<< "$line")
    # Daemon CPU microseconds per request: less sensitive to other load than ops/s.
    echo "audit=$mode round=$r $line daemon_cpu_us_per_op=$(( ticks * 1000000 / $(getconf CLK_TCK) / (ops > 0 ? ops : 1) ))"
  done
done
# The audited daemon recorded every request, and its chain verifies.
kill %1 2>/dev/null || true
wait %1 2>/dev/null || true
"$bin" audit verify --config "$work/on.toml" | head -c 300; echo

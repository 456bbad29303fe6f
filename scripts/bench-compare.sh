#!/usr/bin/env bash
# Compares two builds of the daemon side by side in one run: each serves its own fresh data
# directory (PKCS#11 on a fresh SoftHSM2 token, and embedded), and the same load generator
# (the newer binary's `keyward bench`) drives Encrypt and GetSecretValue against them in
# alternation, so drift of the machine hits both equally. Prints one line per run and the
# median per build, backend and action.
# Usage: scripts/bench-compare.sh OLD_BIN NEW_BIN [seconds] [concurrency] [rounds]
set -euo pipefail
old=$1 new=$2
secs=${3:-5} conc=${4:-16} rounds=${5:-3}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export KEYWARD_PIN=keyward-bench-pin-1234 KEYWARD_LOG=warn
port=18300
declare -A endpoint cred
for build in old new; do
  bin=${!build}
  for backend in pkcs11 embedded; do
    dir="$work/$build-$backend"
    mkdir -p "$dir/tokens"
    if [ "$backend" = pkcs11 ]; then
      printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$dir" > "$dir/softhsm2.conf"
      SOFTHSM2_CONF="$dir/softhsm2.conf" softhsm2-util --init-token --free --label keyward \
        --pin keyward-bench-pin-1234 --so-pin 5678 > /dev/null
      hsm=$'[hsm]\nbackend = "pkcs11"\nmodule = "/usr/lib/softhsm/libsofthsm2.so"\ntoken_label = "keyward"\npin_env = "KEYWARD_PIN"\npool_size = 4'
    else
      hsm=""
    fi
    printf 'data_dir = "%s/data"\n%s\n' "$dir" "$hsm" > "$dir/keyward.toml"
    SOFTHSM2_CONF="$dir/softhsm2.conf" "$bin" init --config "$dir/keyward.toml" > "$dir/cred.json" 2> "$dir/init.log"
    port=$((port + 1))
    SOFTHSM2_CONF="$dir/softhsm2.conf" "$bin" serve --config "$dir/keyward.toml" \
      --listen "127.0.0.1:$port" 2> "$dir/serve.log" &
    endpoint[$build-$backend]="http://127.0.0.1:$port"
    cred[$build-$backend]="$dir/cred.json"
  done
done
sleep 2
echo "# $(date -u +%FT%TZ) $(nproc) cores, ${secs}s per run, concurrency $conc, $rounds rounds"
results="$work/results"
for round in $(seq "$rounds"); do
  for backend in pkcs11 embedded; do
    for action in Encrypt GetSecretValue; do
      for build in old new; do
        line=$("$new" bench --endpoint "${endpoint[$build-$backend]}" \
          --credentials "${cred[$build-$backend]}" --action "$action" \
          --concurrency "$conc" --duration "$secs")
        echo "round=$round build=$build backend=$backend $line"
        echo "$build $backend $action $line" >> "$results"
      done
    done
  done
done
echo "# medians (ops_per_sec, p99_us)"
for backend in pkcs11 embedded; do
  for action in Encrypt GetSecretValue; do
    for build in old new; do
      grep "^$build $backend $action " "$results" | sed -E 's/.*ops_per_sec=([0-9]+).*p99_us=([0-9]+).*/\1 \2/' |
        sort -n | awk -v b="$build" -v be="$backend" -v a="$action" \
          '{ops[NR]=$1; p99[NR]=$2} END {m=int((NR+1)/2); printf "%-8s %-9s %-15s ops_per_sec=%s p99_us=%s\n", b, be, a, ops[m], p99[m]}'
    done
  done
done

#!/usr/bin/env bash
# Issue 19's table: the daemon (audit log on) against the bare axum endpoint, driven by an
# independent load generator, wrk (one thread, CONC connections), replaying one correctly
# TC3-signed request (`keyward bench --wrk-script`: every response is checked for success).
# For each backend and action, ROUNDS alternations of daemon and bare endpoint; prints every
# run, then the medians, the ratio to the bare endpoint and the daemon's CPU per request.
# Usage: scripts/bench-wrk.sh [seconds] [concurrency] [rounds] [backends] [actions]
#   backends: space-separated of pkcs11 embedded serial (default "pkcs11 embedded")
#   actions:  default "Encrypt Decrypt GenerateDataKey GetSecretValue"
# BIN=path/to/keyward uses another build (default: target/release/keyward, built here).
# WRK_CPU=1 pins wrk to that CPU (taskset), so the daemon's threads do not share a core with
# it: how docs/benchmarks.md Run 12 measured the p99.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5} conc=${2:-16} rounds=${3:-5}
backends=${4:-pkcs11 embedded}
actions=${5:-Encrypt Decrypt GenerateDataKey GetSecretValue}
command -v wrk > /dev/null || { apt-get update -q > /dev/null && apt-get install -y -q wrk > /dev/null; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet -p keyward --bin keyward
  cargo build --release --quiet -p keyward-firmware --features sim --bin keyward-fw-sim
  BIN=target/release/keyward
fi
sim=$(dirname "$BIN")/keyward-fw-sim
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT
export KEYWARD_PIN=keyward-bench-pin-1234 KEYWARD_LOG=warn
bare=127.0.0.1:18190
"$BIN" bare-http --listen "$bare" 2> /dev/null &
results="$work/results"

# Starts the daemon for one backend on port 18191; sets $pid and $cred.
start_daemon() {
  local backend=$1 dir="$work/$1" hsm=""
  mkdir -p "$dir/tokens"
  case $backend in
    pkcs11)
      printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$dir" > "$dir/softhsm2.conf"
      export SOFTHSM2_CONF="$dir/softhsm2.conf"
      softhsm2-util --init-token --free --label keyward --pin "$KEYWARD_PIN" --so-pin 5678 > /dev/null
      hsm=$'[hsm]\nbackend = "pkcs11"\nmodule = "/usr/lib/softhsm/libsofthsm2.so"\ntoken_label = "keyward"\npin_env = "KEYWARD_PIN"'
      ;;
    serial)
      "$sim" --state-dir "$dir/sim" > "$dir/sim.out" &
      sleep 0.5
      hsm="[hsm]
backend = \"serial\"
path = \"$(sed -n 's/^keyward-fw-sim: device //p' "$dir/sim.out")\""
      ;;
  esac
  printf 'data_dir = "%s/data"\n%s\n' "$dir" "$hsm" > "$dir/keyward.toml"
  "$BIN" init --config "$dir/keyward.toml" > "$dir/cred.json" 2> "$dir/init.log"
  "$BIN" serve --config "$dir/keyward.toml" --listen 127.0.0.1:18191 2> "$dir/serve.log" &
  pid=$!
  cred="$dir/cred.json"
  for _ in $(seq 50); do grep -q listening "$dir/serve.log" 2> /dev/null && break; sleep 0.2; done
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One wrk run; prints "ops_per_sec=.. p50_us=.. p99_us=.. api_errors=.." (+ cpu_us_per_op).
run_wrk() {
  local target=$1 script=$2 measure_pid=${3:-} before after out
  [ -n "$measure_pid" ] && before=$(cpu_ticks "$measure_pid")
  out=$(${WRK_CPU:+taskset -c "$WRK_CPU"} wrk -t1 -c"$conc" -d"${secs}s" -s "$script" "http://$target/")
  local rps line
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<< "$out")
  line=$(grep '^api_errors=' <<< "$out")
  local reqs=${line#*requests=}
  reqs=${reqs%% *}
  printf 'ops_per_sec=%.0f %s' "$rps" "$(sed 's/requests=[0-9]* //' <<< "$line")"
  if [ -n "$measure_pid" ]; then
    after=$(cpu_ticks "$measure_pid")
    printf ' cpu_us_per_op=%.1f' "$(echo "($after - $before) * 1000000 / $(getconf CLK_TCK) / $reqs" | bc -l)"
  fi
  echo
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, wrk -t1 -c$conc${WRK_CPU:+ on CPU $WRK_CPU}, ${secs}s per run, $rounds rounds, $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
for backend in $backends; do
  start_daemon "$backend"
  for action in $actions; do
    for round in $(seq "$rounds"); do
      # Signed afresh each round: a signature is valid for five minutes.
      "$BIN" bench --endpoint http://127.0.0.1:18191 --credentials "$cred" --action "$action" \
        --wrk-script "$work/req.lua"
      d=$(run_wrk 127.0.0.1:18191 "$work/req.lua" "$pid")
      b=$(run_wrk "$bare" "$work/req.lua")
      echo "backend=$backend action=$action round=$round daemon: $d | bare: $b"
      echo "$backend $action daemon $d" >> "$results"
      echo "$backend $action bare $b" >> "$results"
    done
  done
  kill "$pid"; wait "$pid" 2> /dev/null || true
done

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
field() { sed -E "s/.*$1=([0-9.]+).*/\\1/"; }
echo "# medians: backend action daemon_ops bare_ops ratio daemon_p99_us cpu_us_per_op"
for backend in $backends; do
  for action in $actions; do
    d=$(grep "^$backend $action daemon " "$results" | field ops_per_sec | median)
    b=$(grep "^$backend $action bare " "$results" | field ops_per_sec | median)
    p=$(grep "^$backend $action daemon " "$results" | field p99_us | median)
    c=$(grep "^$backend $action daemon " "$results" | field cpu_us_per_op | median)
    e=$(grep "^$backend $action daemon " "$results" | field api_errors | sort -n | tail -1)
    printf '%-9s %-15s %8s %8s %5.2f %6s %6s errors<=%s\n' "$backend" "$action" "$d" "$b" \
      "$(echo "$d / $b" | bc -l)" "$p" "$c" "$e"
  done
done

#!/usr/bin/env bash
# Issue 14's measurements in one run (docs/benchmarks.md): Encrypt, GetSecretValue and
# CreateSecret on SQLite, on PostgreSQL with one daemon, and with three daemons of one
# deployment behind the load generator; then point operations (GetSecretValue, DescribeKey,
# Encrypt) with ~1,000 and 1,000,000 secrets and ~1,000 and 100,000 CMKs in each store.
# The bulk rows are copies of a real secret (with its version) and a real key's record, made
# in SQL (the API would take hours to create a million secrets); the measured secrets and keys
# are real ones. PostgreSQL is a throw-away cluster with its default durability (fsync,
# synchronous_commit on), on a unix socket, with 256 MB shared buffers.
# Usage: scripts/bench-postgres.sh [seconds] [concurrency]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}
conc=${2:-16}
cargo build --release --quiet --bin keyward -p keyward
bin=$PWD/target/release/keyward
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
work=$(mktemp -d)
chmod 755 "$work"
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  as_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
export KEYWARD_PIN=keyward-bench-pin-1234 KEYWARD_LOG=warn

# PostgreSQL on a socket in $work, trust authentication (nothing else can reach it).
mkdir -p "$work/pg" "$work/sock"
if [ "$(id -u)" -eq 0 ]; then chown postgres "$work/pg" "$work/sock"; fi
as_pg "$pgbin/initdb" -D "$work/pg" -U keyward --auth=trust >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg" -l "$work/sock/pg.log" -w start \
  -o "-k $work/sock -p 5499 -c listen_addresses='' -c shared_buffers=256MB -c max_connections=200" >/dev/null
psql() { "$pgbin/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$work/sock" -p 5499 -U keyward "$@"; }
psql -d postgres -c "CREATE DATABASE keyward"
pg_url="host=$work/sock port=5499 user=keyward dbname=keyward"

# SoftHSM2: one token for the SQLite daemon, one for the PostgreSQL deployment (cloned to
# its second and third node after init).
token() { # dir label
  mkdir -p "$1/tokens"
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$1" > "$1/softhsm2.conf"
  SOFTHSM2_CONF="$1/softhsm2.conf" softhsm2-util --init-token --free --label keyward \
    --pin "$KEYWARD_PIN" --so-pin 5678 >/dev/null
}
config() { # dir [store section]
  cat > "$1/keyward.toml" <<TOML
data_dir = "$1/data"
[hsm]
backend = "pkcs11"
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "keyward"
pin_env = "KEYWARD_PIN"
pool_size = 4
[limits]
cmk_limit = 200000
secret_limit = 2000000
${2:-}
TOML
}
pgstore="[store]
kind = \"postgres\"
url = \"$pg_url\"
pool_size = 16"
mkdir -p "$work/sqlite" "$work/pg1"
token "$work/sqlite"
token "$work/pg1"
config "$work/sqlite"
config "$work/pg1" "$pgstore"
SOFTHSM2_CONF="$work/sqlite/softhsm2.conf" "$bin" init --config "$work/sqlite/keyward.toml" > "$work/sqlite.json"
SOFTHSM2_CONF="$work/pg1/softhsm2.conf" "$bin" init --config "$work/pg1/keyward.toml" > "$work/pg.json"
for n in 2 3; do
  bash scripts/clone-softhsm-token.sh "$work/pg1/softhsm2.conf" "$work/pg$n" >/dev/null
  config "$work/pg$n" "$pgstore"
done

declare -A pids ports=([sqlite]=18301 [pg1]=18302 [pg2]=18303 [pg3]=18304)
start() { # node
  SOFTHSM2_CONF="$work/$1/softhsm2.conf" "$bin" serve --config "$work/$1/keyward.toml" \
    --listen "127.0.0.1:${ports[$1]}" 2>> "$work/$1.log" &
  pids[$1]=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:${ports[$1]}/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "$1 did not start:" >&2; cat "$work/$1.log" >&2; exit 1
}
stop() { kill "${pids[$1]}"; wait "${pids[$1]}" 2>/dev/null || true; }
bench() { # label credentials endpoints action concurrency [key id]
  local out
  out=$("$bin" bench --endpoint "$3" --credentials "$2" --action "$4" --concurrency "$5" \
    --duration "$secs" ${6:+--key-id "$6"})
  echo "$1 $out"
}
ep() { echo "http://127.0.0.1:${ports[$1]}"; }

echo "# $(date -u +%FT%TZ) $(nproc) cores, ${secs}s per line; PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}')"
echo "## SQLite, one PostgreSQL daemon, three PostgreSQL daemons"
start sqlite; start pg1; start pg2; start pg3
three="$(ep pg1),$(ep pg2),$(ep pg3)"
for action in Encrypt GetSecretValue; do
  bench store=sqlite "$work/sqlite.json" "$(ep sqlite)" "$action" "$conc"
  bench store=postgres-1 "$work/pg.json" "$(ep pg1)" "$action" "$conc"
  bench store=postgres-3 "$work/pg.json" "$three" "$action" "$conc"
done
for c in 1 "$conc"; do
  bench store=sqlite "$work/sqlite.json" "$(ep sqlite)" CreateSecret "$c"
  bench store=postgres-1 "$work/pg.json" "$(ep pg1)" CreateSecret "$c"
  bench store=postgres-3 "$work/pg.json" "$three" CreateSecret "$c"
done
stop pg2; stop pg3

# Bulk rows: copies of one real secret (and its versions) and one real key record, named
# fill-<n>, up to the wanted totals. Column lists are read from the store, so the copies follow
# the schema.
seed() { # store secrets keys
  python3 - "$@" "$work" "$pgbin" <<'PY'
import sqlite3, subprocess, sys
store, secrets, keys, work, pgbin = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
if store == "sqlite":
    db = sqlite3.connect(f"{work}/sqlite/data/keyward.db")
    def q(sql):
        rows = db.execute(sql).fetchall()
        db.commit()
        return rows
    def cols(t):
        return [r[1] for r in q(f"PRAGMA table_info({t})")]
    series = "(WITH RECURSIVE s(g) AS (SELECT {lo} UNION ALL SELECT g + 1 FROM s WHERE g < {hi}) SELECT g FROM s)"
else:
    def q(sql):
        out = subprocess.run([f"{pgbin}/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", f"{work}/sock",
                              "-p", "5499", "-U", "keyward", "-d", "keyward", "-c", sql],
                             check=True, capture_output=True, text=True).stdout
        return [l.split("|") for l in out.splitlines() if l]
    def cols(t):
        return [r[0] for r in q(f"SELECT column_name FROM information_schema.columns WHERE table_name = '{t}' AND column_name <> 'rid' ORDER BY ordinal_position")]
    series = "(SELECT generate_series({lo}, {hi}) AS g)"
def fill(table, total, template_where, renamed):
    have = int(q(f"SELECT count(*) FROM {table} WHERE {renamed[0]} LIKE 'fill-%'")[0][0])
    if have >= total:
        return
    c = cols(table)
    sel = ", ".join((f"'fill-' || g" if x in renamed else x) for x in c)
    s = series.format(lo=have + 1, hi=total)
    q(f"INSERT INTO {table} ({', '.join(c)}) SELECT {sel} FROM (SELECT * FROM {table} WHERE {template_where} LIMIT 1) t, {s} AS n")
tmpl = q("SELECT secret_name FROM secrets WHERE secret_name NOT LIKE 'fill-%' LIMIT 1")[0][0]
ver = q(f"SELECT version_id FROM secret_versions WHERE secret_name = '{tmpl}' LIMIT 1")[0][0]
fill("secrets", secrets, f"secret_name = '{tmpl}'", ["secret_name"])
fill("secret_versions", secrets, f"secret_name = '{tmpl}' AND version_id = '{ver}'", ["secret_name"])
key = q("SELECT key_id FROM keys WHERE key_id NOT LIKE 'fill-%' LIMIT 1")[0][0]
fill("keys", keys, f"key_id = '{key}'", ["key_id", "alias"])
if store != "sqlite":
    q("ANALYZE")
PY
}
echo "## point operations as the store grows"
for store in sqlite pg1; do
  cred="$work/sqlite.json"; label=sqlite
  [ "$store" = pg1 ] && { cred="$work/pg.json"; label=postgres-1; }
  for size in "1000 1000" "1000000 100000"; do
    set -- $size
    stop "$store"
    seed "${store/pg1/postgres}" "$1" "$2"
    start "$store"
    for action in GetSecretValue DescribeKey Encrypt; do
      bench "store=$label secrets=$1 keys=$2" "$cred" "$(ep "$store")" "$action" 1
      bench "store=$label secrets=$1 keys=$2" "$cred" "$(ep "$store")" "$action" "$conc"
    done
  done
done

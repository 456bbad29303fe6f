#!/usr/bin/env bash
# Builds the Debian package (cargo-deb) and checks it the way an operator would meet it:
#   - lintian reports nothing beyond the tags overridden, each with its reason, in
#     host/packaging/lintian-overrides;
#   - the packaged binary carries no debug info;
#   - the systemd unit passes `systemd-analyze verify` (with ExecStart pointing at the
#     extracted binary, since the package is not installed);
#   - the packaged binary starts from the extracted package with the packaged configuration
#     (data directory and listen address moved into a temporary root) and answers /readyz.
# Prints the binary's and the package's sizes (docs/operations.md records them).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
cargo build --release --bin keyward
rm -rf target/debian
cargo deb -p keyward --no-build --output target/debian/ >/dev/null
deb=$(ls target/debian/keyward_*.deb)
echo "==> lintian $deb"
lintian --fail-on error,warning,info --tag-display-limit 0 "$deb"

root=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$root"
}
trap cleanup EXIT
dpkg-deb -x "$deb" "$root"
bin="$root/usr/bin/keyward"
if readelf -S "$bin" | grep -q '\.debug_'; then
  echo "the packaged binary carries debug info" >&2
  exit 1
fi

echo "==> systemd-analyze verify keyward.service"
mkdir -p "$root/unit"
sed "s#/usr/bin/keyward#$bin#g" "$root/usr/lib/systemd/system/keyward.service" \
  > "$root/unit/keyward.service"
systemd-analyze verify "$root/unit/keyward.service"

echo "==> the packaged binary with the packaged configuration, in a temporary root"
mkdir -p "$root/var/lib/keyward"
env -u SOFTHSM2_CONF "$bin" serve --config "$root/etc/keyward/keyward.toml" \
  --data-dir "$root/var/lib/keyward" --listen 127.0.0.1:0 2> "$root/serve.log" &
pid=$!
url=
for _ in $(seq 1 300); do
  url=$(sed -n 's/^keyward: listening on //p' "$root/serve.log")
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$root/serve.log"; echo "keyward serve exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$root/serve.log"; echo "keyward serve did not start" >&2; exit 1; }
curl -sSf "$url/healthz" >/dev/null
ready=$(curl -sS -w ' %{http_code}' "$url/readyz")
case "$ready" in
  *'"Ready":true'*' 200') ;;
  *) echo "not ready: $ready" >&2; cat "$root/serve.log"; exit 1 ;;
esac
kill -TERM "$pid"
wait "$pid"
pid=
grep -q "keyward stopped" "$root/serve.log"
echo "packaged binary: $(stat -c %s "$bin") bytes; package: $(stat -c %s "$deb") bytes"
echo "==> the Debian package checks passed"

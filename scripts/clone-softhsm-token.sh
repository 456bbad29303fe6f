#!/usr/bin/env bash
# Clones a SoftHSM2 token for another node of a Keyward deployment (test benches only: a
# production deployment uses a network HSM, or the HSM vendor's cloning procedure).
#
#   scripts/clone-softhsm-token.sh SOURCE_SOFTHSM2_CONF DEST_DIR
#
# Copies every token of SOURCE's token directory into DEST_DIR/tokens and writes
# DEST_DIR/softhsm2.conf pointing at it; run the other node with SOFTHSM2_CONF set to that
# file and the same PIN. SoftHSM2 keeps each token as files (its objects encrypted under the
# token's PIN-derived key), so a copy holds the same root and seal keys, which is what the
# daemons of one deployment must share. Copy while no daemon writes to the token (after
# `keyward init`, or with the daemon stopped): the daemon creates its keys at first start.
# The copy is as sensitive as the original: mode 0700, and it leaves the machine only the
# way an HSM backup would.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 SOURCE_SOFTHSM2_CONF DEST_DIR" >&2
  exit 2
fi
src_conf=$1
dest=$2
tokendir=$(sed -n 's/^[[:space:]]*directories\.tokendir[[:space:]]*=[[:space:]]*//p' "$src_conf" | tail -n 1)
if [ -z "$tokendir" ] || [ ! -d "$tokendir" ]; then
  echo "no token directory in $src_conf" >&2
  exit 1
fi
umask 077
mkdir -p "$dest/tokens"
cp -a "$tokendir/." "$dest/tokens/"
cat > "$dest/softhsm2.conf" <<CONF
directories.tokendir = $(cd "$dest/tokens" && pwd)
objectstore.backend = file
log.level = ERROR
CONF
echo "cloned $(ls "$dest/tokens" | wc -l) token(s) into $dest/tokens; use SOFTHSM2_CONF=$dest/softhsm2.conf"

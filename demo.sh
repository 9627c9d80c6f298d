#!/usr/bin/env bash
# Sluice demo: builds both tools, makes an officer's key and a sample bundle, and moves the
# bundle through a lossy, reordering, corrupting loopback link into a local quarantine store.
#
# No root needed; everything lands in ./demo-out (recreated each run). The "diode" here is the
# seeded impairment relay (tests/src/relay.rs): it drops 5 % of frames, shuffles them, duplicates
# some and flips bits in others, and nothing flows back. For a real namespace diode see
# hardware/README.md.
#
#   SLUICE_DEMO_MB=64 ./demo.sh     # a bigger sample file (default 16 MiB)
set -euo pipefail
cd "$(dirname "$0")"

OUT=${SLUICE_DEMO_OUT:-demo-out}
MB=${SLUICE_DEMO_MB:-16}
BIN=target/release
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "building sluice-send, sluice-recv and the impairment relay (release)"
cargo build --release --locked -p sluice-send -p sluice-recv -p sluice-tests --bins

rm -rf "$OUT"
mkdir -p "$OUT/keys" "$OUT/trust" "$OUT/approved/tools" "$OUT/approved/data/empty-dir"

say "the security officer makes a signing key (once)"
"$BIN/sluice-send" keygen --out "$OUT/keys/officer" --name officer
cp "$OUT/keys/officer.pub" "$OUT/trust/"

say "both sides share a secret link key (once; the same file goes to the high side)"
"$BIN/sluice-send" link-keygen --out "$OUT/keys/link.key"

say "an approved set of files: nested directories, an executable, an empty file, ${MB} MiB of data"
printf 'Approved update for the demo channel.\n' > "$OUT/approved/README.txt"
printf '#!/bin/sh\necho installing\n' > "$OUT/approved/tools/install.sh"
chmod +x "$OUT/approved/tools/install.sh"
: > "$OUT/approved/data/empty.conf"
head -c $((MB * 1024 * 1024)) /dev/urandom > "$OUT/approved/data/payload.bin"

say "the officer signs it into one bundle"
"$BIN/sluice-send" bundle create --key "$OUT/keys/officer.key" --channel demo \
  --note "demo bundle" --out "$OUT/update.sluice" "$OUT/approved"
# To a file first: `inspect | head` under `set -o pipefail` fails whenever head exits before
# inspect has written everything (inspect then dies by SIGPIPE, status 141).
"$BIN/sluice-send" bundle inspect "$OUT/update.sluice" > "$OUT/inspect.txt"
head -12 "$OUT/inspect.txt"

# Two free-ish ports on loopback (the relay picks its own with :0 and prints it).
RECV_PORT=$(( 20000 + RANDOM % 20000 ))
cleanup() { kill "${RELAY_PID:-}" "${RECV_PID:-}" 2>/dev/null || true; }
trap cleanup EXIT

say "high side: sluice-recv listens on 127.0.0.1:$RECV_PORT (it never transmits)"
"$BIN/sluice-recv" listen --bind "127.0.0.1:$RECV_PORT" --store "$OUT/store" --trust "$OUT/trust" \
  --link-key "$OUT/keys/link.key" --max-bundles 1 --json >"$OUT/recv.jsonl" 2>"$OUT/recv.log" &
RECV_PID=$!

say "the link: 5 % loss, reordering within 64 frames, 2 % duplicates, 1 % frames with a flipped bit"
"$BIN/sluice-relay" --listen 127.0.0.1:0 --target "127.0.0.1:$RECV_PORT" --loss 5 \
  --reorder-window 64 --duplicate 2 --corrupt 1 --seed 7 --stats "$OUT/relay.json" \
  >"$OUT/relay.out" 2>&1 &
RELAY_PID=$!
for _ in $(seq 100); do grep -q 'listening on' "$OUT/relay.out" 2>/dev/null && break; sleep 0.05; done
RELAY_ADDR=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$OUT/relay.out" | head -1)

say "low side: sluice-send verifies the bundle, then sends RaptorQ frames with 15 % repair to $RELAY_ADDR"
"$BIN/sluice-send" udp --to "$RELAY_ADDR" --trust "$OUT/trust" --link-key "$OUT/keys/link.key" \
  --overhead 15 --rate 400M "$OUT/update.sluice"

say "waiting for the receiver's verdict"
for _ in $(seq 600); do kill -0 "$RECV_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$RECV_PID" 2>/dev/null; then
  echo "the receiver did not decide within 60 s; its log:" >&2
  tail -20 "$OUT/recv.log" >&2
  exit 1
fi
wait "$RECV_PID"
kill -INT "$RELAY_PID" 2>/dev/null || true
wait "$RELAY_PID" 2>/dev/null || true
cat "$OUT/recv.jsonl"

say "what the link did (relay counters)"
cat "$OUT/relay.json" 2>/dev/null || true

ID=$(ls "$OUT/store/quarantine")
say "the quarantine entry: $OUT/store/quarantine/$ID"
find "$OUT/store/quarantine/$ID" | sed "s|$OUT/store/quarantine/||" | sort
say "its receipt"
cat "$OUT/store/quarantine/$ID/receipt.json"; echo

say "byte-identical to what the officer approved?"
diff -r "$OUT/approved" "$OUT/store/quarantine/$ID/files/approved" && echo "yes: every file matches"

say "tamper-evident audit chain and receipts"
"$BIN/sluice-recv" audit verify --store "$OUT/store"

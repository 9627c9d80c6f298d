#!/usr/bin/env bash
# Enforces the architecture's hard rules mechanically, so review does not have to:
#  1. sluice-common is pure: nothing OS-facing in its normal dependency tree, no unsafe.
#  2. sluice-recv contains no code that sends datagrams (the one-way property, in software too).
#  3. Subcommands are thin adapters over the library: no module imports from a subcommand
#     module except its own file, the dispatcher (`commands/mod.rs`) and the flag map (`cli.rs`).
#  4. Every source file is a module of its crate: no `#[path]` includes, and no module-wide
#     `#![allow(dead_code)]` hiding code nothing uses.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
tree=$(cargo tree -p sluice-common -e normal --prefix none --locked)
for banned in tokio socket2 libc quinn-udp rustix mio nix getrandom; do
  if grep -E "^${banned} v" <<<"$tree" >/dev/null; then
    echo "purity: sluice-common depends on ${banned} (OS-facing); move that code to sender/ or receiver/" >&2
    fail=1
  fi
done
grep -q '#!\[forbid(unsafe_code)\]' common/src/lib.rs || { echo "purity: common/src/lib.rs lacks #![forbid(unsafe_code)]" >&2; fail=1; }
# std::fs, clocks, network and OS randomness are banned inside common's source.
if grep -rnE 'std::fs|std::net|SystemTime::now|Instant::now|thread_rng|OsRng|getrandom' common/src; then
  echo "purity: OS-facing call in common/src (above); pass it in from the caller instead" >&2
  fail=1
fi
# The receiver never transmits: no send-type socket calls anywhere in its non-test source.
# Test modules (`#[cfg(test)]`, by convention at the end of a file) may send *to* the receiver.
sending=""
while IFS= read -r -d '' file; do
  hits=$(awk '/^#\[cfg\(test\)\]/ { exit } { print FNR ": " $0 }' "$file" |
    grep -E '(send_to|sendto|sendmsg|sendmmsg|send_mmsg|connect)\(|Transmit *\{|quinn_udp::Transmit|libc::send|UdpSocket::send|TcpStream::connect' || true)
  [ -n "$hits" ] && sending+="$file: $hits"$'\n'
done < <(find receiver/src -name '*.rs' -print0)
if [ -n "$sending" ]; then
  echo "$sending"
  echo "one-way: sending code found in receiver/src (above); the receiver must never transmit" >&2
  fail=1
fi
# Subcommand modules are leaves: what two commands share lives outside `commands/`.
for crate in sender receiver; do
  [ -d "$crate/src/commands" ] || continue
  commands=$(find "$crate/src/commands" -maxdepth 1 -name '*.rs' ! -name mod.rs -printf '%f\n' | sed 's/\.rs$//')
  while IFS= read -r -d '' file; do
    rel=${file#"$crate/src/"}
    case "$rel" in commands/mod.rs | cli.rs | main.rs) continue ;; esac
    own=""
    case "$rel" in commands/*.rs) own=$(basename "$rel" .rs) ;; esac
    for cmd in $commands; do
      [ "$cmd" = "$own" ] && continue
      pattern="commands::(\{[^}]*\b)?${cmd}\b"
      [ -n "$own" ] && pattern="${pattern}|super::(\{[^}]*\b)?${cmd}\b"
      if grep -nE "$pattern" "$file" | grep -vE '^[0-9]+:\s*//' >/dev/null; then
        grep -nE "$pattern" "$file" | grep -vE '^[0-9]+:\s*//' | sed "s|^|$file:|" >&2
        echo "layering: $file uses the \`$cmd\` subcommand module; move what it needs out of commands/ (e.g. $crate/src/<shared>.rs)" >&2
        fail=1
      fi
    done
  done < <(find "$crate/src" -name '*.rs' -print0)
done
# Every file is compiled as the module its path says, once.
if grep -rnE '^\s*#\[path\s*=' --include='*.rs' ./*/src; then
  echo "modules: #[path] include above; make the file a module of its own crate (or move it to a shared crate)" >&2
  fail=1
fi
if grep -rnE '^\s*#!\[allow\([^)]*dead_code' --include='*.rs' ./*/src ./*/tests; then
  echo "dead code: module-wide #![allow(dead_code)] above; delete what nothing uses, or allow it on the one item with a reason" >&2
  fail=1
fi
# sluice-promote (promote/) is a separate process on the high side: it may talk TCP to the
# internal registry (through skopeo, plus a reachability probe) but has no UDP or diode code,
# and pulls in no datagram crate directly. Its own source and direct dependencies are checked;
# sluice-recv (which it links for the store's audit API) is covered by the rule above.
if [ -d promote/src ]; then
  if grep -rnE 'UdpSocket|socket2|quinn|send_to|sendto|sendmsg|sendmmsg|recv_from|recvmmsg|sluice_recv::(net|ingest|commands::listen)|transport::send' promote/src; then
    echo "one-way: UDP/diode code found in promote/src (above); sluice-promote must never touch the diode" >&2
    fail=1
  fi
  direct=$(cargo tree -p sluice-promote -e normal --depth 1 --prefix none --locked)
  for banned in socket2 quinn-udp tokio; do
    if grep -E "^${banned} v" <<<"$direct" >/dev/null; then
      echo "one-way: sluice-promote depends directly on ${banned}; it has no datagram code" >&2
      fail=1
    fi
  done
fi
# No import circles among any crate's modules (scripts/module-cycles.py says how they are read).
if ! python3 scripts/module-cycles.py common/src host/src receiver/src sender/src promote/src testkit/src; then
  echo "modules: import circle above; move what both sides need into a module both may import" >&2
  fail=1
fi
# Files a reader can hold in their head: none over MAX_SRC_LINES under any crate's src/.
MAX_SRC_LINES=700
long=$(find ./*/src -name '*.rs' -exec wc -l {} + | awk -v max="$MAX_SRC_LINES" '$2 != "total" && $1 > max')
if [ -n "$long" ]; then
  echo "$long" >&2
  echo "size: files over $MAX_SRC_LINES lines above; split them by concern (tests into a tests.rs beside)" >&2
  fail=1
fi
[ $fail -eq 0 ] && echo "purity: ok (common is sans-IO; receiver has no sending code; promote has no UDP/diode code; commands are leaves; no #[path], no module-wide dead_code allowance, no import circles, no file over 700 lines)"
exit $fail

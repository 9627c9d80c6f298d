#!/usr/bin/env bash
# Offline (air-gapped) build proof for sluice-send and sluice-recv.
#
# 1. extracts the committed tree (git archive) into a temp dir,
# 2. `cargo vendor --locked` puts every dependency's source into <src>/vendor (or --vendor DIR),
# 3. writes the source-replacement snippet cargo vendor prints to <src>/.cargo/config.toml,
# 4. builds both binaries with --offline --locked --frozen and CARGO_HOME pointed at an EMPTY
#    temp dir, so nothing from this machine's registry cache or config can leak in: if it
#    builds here, it builds on a host that only has the archive and a Rust toolchain.
#
# Usage: scripts/offline-build.sh [--rev REV] [--vendor DIR] [--archive] [--out DIR] [--keep]
#                                 [--jobs N]
#   --rev REV     commit to build (default HEAD; only committed content is used)
#   --vendor DIR  vendor into DIR (absolute path written into the config) instead of <src>/vendor
#   --archive     write sluice-<version>-vendored-src.tar.gz (source + vendor/ + .cargo/config.toml,
#                 deterministic: sorted, mtime = commit time, owner 0) into --out (default .)
#   --out DIR     where the archive and the built binaries (+ SHA256SUMS) go (default: .)
#   --keep        keep the temp dir (printed)
#   --jobs N      cargo -j N
# Vendoring needs the crates once: network access to the registry (or a mirror), or a warm
# cache with CARGO_NET_OFFLINE=true. The build step needs neither.
#
# On the air-gapped host (docs/install.md): tar xzf sluice-<v>-vendored-src.tar.gz; cd sluice-<v>;
#   CARGO_HOME=$(mktemp -d) cargo build --release --offline --locked --frozen \
#       -p sluice-send -p sluice-recv
set -euo pipefail

REV=HEAD
VENDOR=""
ARCHIVE=0
OUT="."
KEEP=0
JOBS=()
# shellcheck source=scripts/commit-build-env.sh
. "$(dirname "$0")/commit-build-env.sh"
while [ $# -gt 0 ]; do
    case "$1" in
        --rev) REV="$2"; shift 2 ;;
        --vendor) VENDOR="$2"; shift 2 ;;
        --archive) ARCHIVE=1; shift ;;
        --out) OUT="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --jobs) JOBS=(-j "$2"); shift 2 ;;
        -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
        *) echo "offline-build: unknown argument: $1" >&2; exit 2 ;;
    esac
done

pin_commit "$REV"
VERSION="$(git_ show "$COMMIT:Cargo.toml" | sed -n 's/^version *= *"\(.*\)"/\1/p' | head -n1)"
NAME="sluice-$VERSION"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

temp_dir_until_exit offline

SRC="$TMP/$NAME"
mkdir -p "$SRC"
git_ archive --format=tar "$COMMIT" | tar -x -C "$SRC"
echo "offline-build: $NAME at $COMMIT in $SRC"

# --- 1. vendor (the only step that may touch the network) ---------------------------------
if [ -n "$VENDOR" ]; then
    mkdir -p "$VENDOR"
    VENDOR="$(cd "$VENDOR" && pwd)"
    VENDOR_ARG="$VENDOR"
else
    VENDOR="$SRC/vendor"
    VENDOR_ARG="vendor" # relative: the snippet then works wherever the archive is extracted
fi
start=$(date +%s)
(cd "$SRC" && cargo vendor --locked --versioned-dirs "$VENDOR_ARG") >"$TMP/vendor-config.toml" 2>"$TMP/vendor.log" || {
    echo "offline-build: cargo vendor failed:" >&2
    tail -n 20 "$TMP/vendor.log" >&2
    exit 1
}
echo "offline-build: vendored $(find "$VENDOR" -mindepth 1 -maxdepth 1 -type d | wc -l) crates ($(du -sh "$VENDOR" | cut -f1)) in $(($(date +%s) - start)) s"

mkdir -p "$SRC/.cargo"
{
    echo "# Written by scripts/offline-build.sh from the output of \`cargo vendor\`:"
    echo "# every crate comes from the vendored directory, never from a registry."
    cat "$TMP/vendor-config.toml"
} >>"$SRC/.cargo/config.toml"
echo "offline-build: source replacement written to $SRC/.cargo/config.toml:"
sed 's/^/    /' "$SRC/.cargo/config.toml"

# --- 2. build with nothing but the vendored sources ----------------------------------------
EMPTY_HOME="$TMP/empty-cargo-home"
mkdir -p "$EMPTY_HOME"
start=$(date +%s)
(
    cd "$SRC"
    export CARGO_HOME="$EMPTY_HOME" CARGO_TARGET_DIR="$TMP/target" CARGO_NET_OFFLINE=true
    unset RUSTC_WRAPPER CARGO_BUILD_RUSTC_WRAPPER
    cargo build --release --offline --locked --frozen "${JOBS[@]}" -p sluice-send -p sluice-recv --bins
) >"$TMP/build.log" 2>&1 || {
    echo "offline-build: offline build FAILED (a dependency is missing from the vendor dir?):" >&2
    tail -n 40 "$TMP/build.log" >&2
    exit 1
}
secs=$(($(date +%s) - start))
# The registry cache must not have been populated: proof nothing was fetched.
if [ -d "$EMPTY_HOME/registry" ] && [ -n "$(find "$EMPTY_HOME/registry" -type f -print -quit)" ]; then
    echo "offline-build: FAILED: cargo wrote to the empty CARGO_HOME registry" >&2
    exit 1
fi
echo "offline-build: offline release build of both binaries took $secs s"

for bin in sluice-send sluice-recv; do
    cp "$TMP/target/release/$bin" "$OUT/$bin"
    "$OUT/$bin" --version
done
(cd "$OUT" && sha256sum sluice-send sluice-recv | tee SHA256SUMS)

# --- 3. optional source archive -----------------------------------------------------------
if [ "$ARCHIVE" = 1 ]; then
    if [ "$VENDOR" != "$SRC/vendor" ]; then
        echo "offline-build: --archive needs the default vendor dir (<src>/vendor); skipping" >&2
        exit 1
    fi
    TARBALL="$OUT/$NAME-vendored-src.tar.gz"
    tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        -C "$TMP" -cf - "$NAME" | gzip -n -9 >"$TARBALL"
    echo "offline-build: wrote $TARBALL ($(du -h "$TARBALL" | cut -f1))"
    (cd "$OUT" && sha256sum "$(basename "$TARBALL")" | tee "$(basename "$TARBALL").sha256")
fi
echo "offline-build: OK"

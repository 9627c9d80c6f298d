#!/usr/bin/env bash
# Reproducible release build check for sluice-send and sluice-recv.
#
# Builds both binaries twice from the same commit, in two different directories with two
# different target dirs, and compares their sha256. Exit 0 only if both pairs are identical
# and neither binary leaks a build path (checked with `strings`).
#
# Usage: scripts/repro-build.sh [--rev REV] [--out DIR] [--keep] [--offline] [--jobs N]
#                               [--second-vendored]
#   --rev REV   commit to build (default HEAD). Only committed content is built (git archive),
#               so a dirty worktree cannot make the two builds differ.
#   --out DIR   copy the first build's binaries and a SHA256SUMS file there.
#   --keep      keep the temporary build directories (printed) for diffoscope.
#   --offline   pass --offline to cargo (registry cache must already hold every crate).
#   --jobs N    cargo -j N (default: cargo's choice).
#   --second-vendored
#               build b is the air-gapped build instead: every dependency from `cargo vendor`,
#               CARGO_HOME an empty directory, --offline --frozen (what scripts/offline-build.sh
#               proves). Identical hashes then prove both properties with two release builds
#               instead of three: the vendored tree is mapped to the registry path build a sees.
#
# What makes the builds reproducible (docs/install.md, "Verifying a release"):
#   --locked                 exactly the dependency versions in Cargo.lock
#   SOURCE_DATE_EPOCH        the commit time, for anything that embeds a date
#   --remap-path-prefix      source dir -> /build, target dir -> /target, CARGO_HOME -> /cargo
#                            (stable rustc; cargo's -Ztrim-paths is still nightly-only)
#   CFLAGS/ASMFLAGS          the same maps as -ffile-prefix-map/-fdebug-prefix-map for C and
#                            assembly that build scripts compile (blake3's SIMD code)
#   CARGO_INCREMENTAL=0, TZ=UTC, LC_ALL=C, umask 022
# The release profile (lto = "fat", codegen-units = 1) is itself deterministic.
#
# Works as root on a clean clone (CI): git's safe.directory check is bypassed for this repo only.
set -euo pipefail

REV=HEAD
OUT=""
KEEP=0
OFFLINE=()
JOBS=()
SECOND_VENDORED=0
# shellcheck source=scripts/commit-build-env.sh
. "$(dirname "$0")/commit-build-env.sh"
while [ $# -gt 0 ]; do
    case "$1" in
        --rev) REV="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --offline) OFFLINE=(--offline); shift ;;
        --jobs) JOBS=(-j "$2"); shift 2 ;;
        --second-vendored) SECOND_VENDORED=1; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "repro-build: unknown argument: $1" >&2; exit 2 ;;
    esac
done

pin_commit "$REV"
CARGO_HOME_DIR="${CARGO_HOME:-$HOME/.cargo}"
BINS=(sluice-send sluice-recv)

temp_dir_until_exit repro

echo "repro-build: commit $COMMIT, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH ($(date -u -d "@$SOURCE_DATE_EPOCH" +%FT%TZ))"
echo "repro-build: $(rustc -V), $(cargo -V)"

build_one() {
    local name="$1" vendored="${2:-0}"
    # Different directory names and depths on purpose: a path leak shows up as a hash mismatch.
    local src="$TMP/$name/src-$name"
    local target="$TMP/$name/target-dir-$name"
    mkdir -p "$src" "$target"
    git_ archive --format=tar "$COMMIT" | tar -x -C "$src"
    local start end
    start=$(date +%s)
    (
        cd "$src"
        umask 022
        export TZ=UTC LC_ALL=C CARGO_INCREMENTAL=0
        export CARGO_TARGET_DIR="$target"
        local home="$CARGO_HOME_DIR" offline=("${OFFLINE[@]}")
        # Dependencies' source paths, as build a sees them (under the registry cache).
        local registry_src
        registry_src="$(find "$CARGO_HOME_DIR/registry/src" -mindepth 1 -maxdepth 1 -type d -name 'index.crates.io-*' | head -n1)"
        local dep_map=""
        if [ "$vendored" = 1 ]; then
            # The air-gapped build: vendor (the only step that may use the network, or a warm
            # cache), then build with an empty CARGO_HOME, offline and frozen.
            cargo vendor --locked --versioned-dirs vendor >"$TMP/$name.vendor.toml" 2>"$TMP/$name.vendor.log"
            mkdir -p .cargo
            cat "$TMP/$name.vendor.toml" >>.cargo/config.toml
            home="$TMP/$name/empty-cargo-home"
            mkdir -p "$home"
            export CARGO_HOME="$home" CARGO_NET_OFFLINE=true
            offline=(--offline --frozen)
            # Given last, so it wins over the $src map: vendored sources get the path build a's
            # registry sources have, and the binaries can be compared byte for byte.
            dep_map="--remap-path-prefix=$src/vendor=${registry_src/#$CARGO_HOME_DIR//cargo}"
        fi
        export RUSTFLAGS="--remap-path-prefix=$src=/build --remap-path-prefix=$target=/target --remap-path-prefix=$CARGO_HOME_DIR=/cargo $dep_map"
        # C/assembly built by build scripts (blake3's SIMD .S files via cc) do not see RUSTFLAGS;
        # without this their DWARF comp_dir leaks the registry path.
        local cmap="-ffile-prefix-map=$src=/build -ffile-prefix-map=$target=/target -ffile-prefix-map=$CARGO_HOME_DIR=/cargo"
        cmap="$cmap -fdebug-prefix-map=$src=/build -fdebug-prefix-map=$target=/target -fdebug-prefix-map=$CARGO_HOME_DIR=/cargo"
        if [ "$vendored" = 1 ]; then
            local vmap="${registry_src/#$CARGO_HOME_DIR//cargo}"
            cmap="$cmap -ffile-prefix-map=$src/vendor=$vmap -fdebug-prefix-map=$src/vendor=$vmap"
        fi
        export CFLAGS="$cmap" ASMFLAGS="$cmap"
        unset RUSTC_WRAPPER CARGO_BUILD_RUSTC_WRAPPER RUSTDOCFLAGS CARGO_ENCODED_RUSTFLAGS
        cargo build --release --locked "${offline[@]}" "${JOBS[@]}" \
            -p sluice-send -p sluice-recv --bins
        if [ "$vendored" = 1 ] && [ -d "$home/registry" ] &&
            [ -n "$(find "$home/registry" -type f -print -quit)" ]; then
            echo "the vendored build wrote to its empty CARGO_HOME registry: something was fetched" >&2
            exit 1
        fi
    ) >"$TMP/$name.log" 2>&1 || {
        echo "repro-build: build $name failed; last lines of its log:" >&2
        tail -n 40 "$TMP/$name.log" >&2
        exit 1
    }
    end=$(date +%s)
    local kind="registry cache"
    [ "$vendored" = 1 ] && kind="vendored, empty CARGO_HOME, --offline --frozen"
    echo "repro-build: build $name ($kind) took $((end - start)) s"
    echo "$((end - start))" >"$TMP/$name.secs"
}

build_one a
build_one b "$SECOND_VENDORED"

status=0
echo
echo "sha256 (build a)                                                  sha256 (build b)"
for bin in "${BINS[@]}"; do
    a="$TMP/a/target-dir-a/release/$bin"
    b="$TMP/b/target-dir-b/release/$bin"
    ha=$(sha256sum "$a" | cut -d' ' -f1)
    hb=$(sha256sum "$b" | cut -d' ' -f1)
    if [ "$ha" = "$hb" ]; then
        echo "$ha  $bin  IDENTICAL ($(stat -c %s "$a") bytes)"
    else
        echo "$ha  $bin (a)"
        echo "$hb  $bin (b)  MISMATCH; first differing bytes:"
        cmp -l "$a" "$b" | head -n 5 || true
        echo "  (rerun with --keep and compare with: diffoscope <a> <b>)"
        status=1
    fi
    # Path leaks: neither the temp build paths nor the home/cargo dirs may appear.
    leaks=$(strings -a "$a" | grep -E -e "$TMP" -e "$CARGO_HOME_DIR/registry" -e "^$HOME/" -e "/target-dir-" | sort -u | head -n 5 || true)
    if [ -n "$leaks" ]; then
        echo "  PATH LEAK in $bin:"
        echo "$leaks" | sed 's/^/    /'
        status=1
    fi
done

if [ -n "$OUT" ]; then
    mkdir -p "$OUT"
    for bin in "${BINS[@]}"; do cp "$TMP/a/target-dir-a/release/$bin" "$OUT/"; done
    (cd "$OUT" && sha256sum "${BINS[@]}" >SHA256SUMS)
    echo "repro-build: binaries and SHA256SUMS in $OUT"
fi

if [ "$status" = 0 ]; then
    echo "repro-build: OK: both builds are bit-identical and leak no build paths"
else
    echo "repro-build: FAILED" >&2
fi
exit "$status"

# Sourced, not run: the steps scripts/offline-build.sh and scripts/repro-build.sh share to build
# one commit from `git archive` in a temp dir, written once so the two builds cannot drift apart
# (repro-build's vendored build must see exactly what offline-build proves). The caller sets KEEP
# (1: keep the temp dir) before its exit, and runs under `set -euo pipefail`.

# The checkout this file belongs to.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# git on this checkout. Works as root on a clean clone (CI): git's safe.directory check is
# bypassed for this repository only.
git_() { git -c safe.directory="$ROOT" -C "$ROOT" "$@"; }

# pin_commit REV: sets COMMIT to REV's full hash and exports what a build of it embeds, the same
# for every build: SOURCE_DATE_EPOCH (the commit time) and SLUICE_GIT_COMMIT (host/build.rs; the
# archive has no .git to ask).
pin_commit() {
    COMMIT="$(git_ rev-parse --verify "$1^{commit}")"
    SOURCE_DATE_EPOCH="$(git_ log -1 --format=%ct "$COMMIT")"
    export SOURCE_DATE_EPOCH
    export SLUICE_GIT_COMMIT="$COMMIT"
}

# temp_dir_until_exit TOOL: sets TMP to a new directory /tmp/sluice-TOOL.XXXXXX (or under
# $TMPDIR), removed when the script exits, or kept and named on stderr if KEEP=1.
temp_dir_until_exit() {
    TEMP_OWNER="$1"
    TMP="$(mktemp -d "${TMPDIR:-/tmp}/sluice-$TEMP_OWNER.XXXXXX")"
    trap remove_temp_dir EXIT
}

remove_temp_dir() {
    if [ "$KEEP" = 1 ]; then
        echo "$TEMP_OWNER-build: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}

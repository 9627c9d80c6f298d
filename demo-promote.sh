#!/usr/bin/env bash
# Sluice promotion demo: from the officer's bundle on the low side to `apt-get download` on the
# high side (docs/promotion.md).
#
#   low side:  two .deb packages (app depends on lib) and one OCI image layout are signed into a
#              bundle and written to "removable media" volumes;
#   high side: sluice-recv imports the volumes into quarantine; sluice-promote scans them with
#              clamscan, waits for 2 of 3 reviewer approvals, then publishes to a signed apt
#              repository, a local docker-registry and a share directory; apt-get (signed-by=)
#              downloads the packages, skopeo shows the image digest, and the audit chain verifies.
#
# Everything lands in ./demo-promote-out (recreated each run); no root, no network beyond
# loopback. Needs: clamav docker-registry skopeo apt-utils gnupg dpkg-dev (apt-get install ...).
#   SLUICE_DEMO_BIN=target/debug ./demo-promote.sh    # use already-built debug binaries
set -euo pipefail
cd "$(dirname "$0")"

OUT=${SLUICE_DEMO_OUT:-demo-promote-out}
BIN=${SLUICE_DEMO_BIN:-target/release}
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

for t in clamscan docker-registry skopeo apt-get apt-ftparchive gpg dpkg-deb sha256sum md5sum tar; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install clamav docker-registry skopeo apt-utils gnupg dpkg-dev" >&2; exit 1; }
done

if [ "$BIN" = target/release ]; then
  say "building sluice-send, sluice-recv and sluice-promote (release)"
  cargo build --release --locked -p sluice-send -p sluice-recv -p sluice-promote
fi

rm -rf "$OUT"
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
mkdir -p "$OUT"/{keys,trust,reviewers,build,outgoing/debs,outgoing/images/hello}
REG_PID=
cleanup() { [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null || true; }
trap cleanup EXIT

say "LOW SIDE: the officer's signing key; three reviewers' keys (carol's is OpenSSH)"
"$BIN/sluice-send" keygen --out "$OUT/keys/officer" --name officer
cp "$OUT/keys/officer.pub" "$OUT/trust/"
# The secret link key that tags every volume; the same file goes to the high side.
"$BIN/sluice-send" link-keygen --out "$OUT/keys/link.key"
for r in alice bob; do
  "$BIN/sluice-send" keygen --out "$OUT/keys/$r" --name "$r"
  cp "$OUT/keys/$r.pub" "$OUT/reviewers/"
done
if command -v ssh-keygen >/dev/null; then
  ssh-keygen -q -t ed25519 -N '' -C carol@site -f "$OUT/keys/carol"
  cp "$OUT/keys/carol.pub" "$OUT/reviewers/carol.pub"
  CAROL_KEY="$OUT/keys/carol"
else
  "$BIN/sluice-send" keygen --out "$OUT/keys/carol" --name carol
  cp "$OUT/keys/carol.pub" "$OUT/reviewers/"
  CAROL_KEY="$OUT/keys/carol.key"
fi

say "LOW SIDE: two Debian packages (dpkg-deb --build); site-tool depends on site-lib"
for pkg in site-lib site-tool; do
  root="$OUT/build/$pkg"
  mkdir -p "$root/DEBIAN" "$root/usr/share/doc/$pkg"
  echo "$pkg, delivered through Sluice" > "$root/usr/share/doc/$pkg/README"
  {
    echo "Package: $pkg"; echo "Version: 1.0-1"; echo "Architecture: all"
    echo "Maintainer: Site <ops@site.invalid>"; echo "Description: $pkg demo package"
    [ "$pkg" = site-tool ] && echo "Depends: site-lib (>= 1.0)"
  } > "$root/DEBIAN/control"
  dpkg-deb --build --root-owner-group "$root" "$OUT/outgoing/debs/${pkg}_1.0-1_all.deb" >/dev/null
done
ls -l "$OUT/outgoing/debs"

say "LOW SIDE: one OCI image layout (on a connected host: skopeo copy docker-archive:img.tar oci:outgoing/images/hello:1.0)"
L="$OUT/outgoing/images/hello"; mkdir -p "$L/blobs/sha256" "$OUT/build/rootfs"
echo "hello from the low side" > "$OUT/build/rootfs/hello.txt"
tar --sort=name --mtime=@0 --owner=0 --group=0 -cf "$OUT/build/layer.tar" -C "$OUT/build/rootfs" hello.txt
blob() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" "$L/blobs/sha256/$d"; echo "sha256:$d $(stat -c %s "$1")"; }
read -r LAYER LAYER_N < <(blob "$OUT/build/layer.tar")
printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["%s"]}}' "$LAYER" > "$OUT/build/config.json"
read -r CONF CONF_N < <(blob "$OUT/build/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
  "$CONF" "$CONF_N" "$LAYER" "$LAYER_N" > "$OUT/build/manifest.json"
read -r MAN MAN_N < <(blob "$OUT/build/manifest.json")
echo '{"imageLayoutVersion":"1.0.0"}' > "$L/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"1.0"}}]}' \
  "$MAN" "$MAN_N" > "$L/index.json"
echo "image hello:1.0, manifest $MAN"

say "LOW SIDE: the officer signs the bundle and writes it to media volumes"
"$BIN/sluice-send" bundle create --key "$OUT/keys/officer.key" --channel updates --seq 1 \
  --note "site updates" --out "$OUT/updates-1.sluice" "$OUT/outgoing"
mkdir -p "$OUT/usb"
"$BIN/sluice-send" media --out "$OUT/usb" --trust "$OUT/trust" --link-key "$OUT/keys/link.key" \
  "$OUT/updates-1.sluice"

say "HIGH SIDE: sluice-recv imports the volumes into quarantine"
STORE="$OUT/store"
"$BIN/sluice-recv" import --store "$STORE" --trust "$OUT/trust" --link-key "$OUT/keys/link.key" \
  "$OUT/usb"
ID=$(ls "$STORE/quarantine")
echo "bundle $ID is in quarantine"

say "HIGH SIDE: the site's repository signing key, ClamAV signatures, a registry, promote.toml"
export GNUPGHOME="$OUT/gnupg"; mkdir -m 700 "$GNUPGHOME"
gpg --batch -q --passphrase '' --quick-gen-key 'Site repository <repo@site.invalid>' ed25519 sign never
gpg --batch -q --armor --export-secret-keys > "$OUT/repo-signing.asc"
gpg --batch -q --export > "$OUT/site-repo.gpg"
gpgconf --kill gpg-agent; unset GNUPGHOME
# A site signature (md5:size:name) for a file that must never pass; this bundle does not hold it.
printf 'X5O-SITE-TEST-BLOCKED\n' > "$OUT/build/blocked.bin"
echo "$(md5sum < "$OUT/build/blocked.bin" | cut -d' ' -f1):$(stat -c %s "$OUT/build/blocked.bin"):Site.Blocked" > "$OUT/site.hdb"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $(( 20000 + RANDOM % 20000 )))
mkdir -p "$OUT/registry"
printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$OUT/registry" "$PORT" > "$OUT/registry.yml"
docker-registry serve "$OUT/registry.yml" >"$OUT/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
cat > "$OUT/promote.toml" <<EOF
[reviewers]
trust = "$OUT/reviewers"

[[pipeline]]
channel = "updates"
approvals = 2
scan = [{ run = ["clamscan", "--no-summary", "-d", "$OUT/site.hdb", "-r", "{files}"], timeout_secs = 600 }]

[[pipeline.publish]]
kind = "apt"
repo = "$OUT/srv/mirror/debian"
suite = "internal"
component = "main"
signing_key = "$OUT/repo-signing.asc"

[[pipeline.publish]]
kind = "oci"
registry = "127.0.0.1:$PORT"
prefix = "mirror"
tls_verify = false

[[pipeline.publish]]
kind = "dir"
path = "$OUT/srv/share/updates"
EOF
cat "$OUT/promote.toml"

P() { "$BIN/sluice-promote" "$@"; }
say "HIGH SIDE: first pass: scanned clean, now waiting for approvals"
P run --once --store "$STORE" --config "$OUT/promote.toml"
P status --store "$STORE"

say "HIGH SIDE: alice and carol (OpenSSH key) approve: 2 of 3"
P approve --store "$STORE" --key "$OUT/keys/alice.key" "$ID"
P approve --store "$STORE" --key "$CAROL_KEY" "$ID"

say "HIGH SIDE: next pass publishes to apt, the registry and the share"
P run --once --store "$STORE" --config "$OUT/promote.toml"
P status --store "$STORE"

say "HIGH SIDE: a client: apt-get update + apt-get download with signed-by="
A="$OUT/apt-client"; mkdir -p "$A/state/lists/partial" "$A/cache/archives/partial" "$A/download"; : > "$A/state/status"
echo "deb [signed-by=$OUT/site-repo.gpg] file:$OUT/srv/mirror/debian internal main" > "$A/sources.list"
apt_() {
  apt-get -q -o Dir::Etc::SourceList="$A/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State="$A/state" -o Dir::State::status="$A/state/status" -o Dir::Cache="$A/cache" \
    -o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)" -o APT::Architecture=amd64 "$@"
}
apt_ update
(cd "$A/download" && apt_ download site-tool site-lib)
for f in "$OUT"/outgoing/debs/*.deb; do
  cmp "$f" "$A/download/$(basename "$f")" && echo "byte-identical: $(basename "$f")"
done

say "HIGH SIDE: the registry serves the image under the same digest"
skopeo inspect --tls-verify=false "docker://127.0.0.1:$PORT/mirror/hello:1.0" | grep '"Digest"'
echo "layout manifest: $MAN"

say "HIGH SIDE: the share, and the audit chain with every transition"
find "$OUT/srv/share/updates" -maxdepth 3 | head
"$BIN/sluice-recv" audit verify --store "$STORE"
grep -o '"seq":[0-9]*,.*"outcome":"promote_[a-z]*",.*"reason":"[a-z_]*"' "$STORE/audit.jsonl" |
  sed -E 's/"seq":([0-9]+),.*"outcome":"([a-z_]+)".*"reason":"([a-z_]+)"/  seq \1  \2  \3/'
echo
echo "done: everything is in $OUT"

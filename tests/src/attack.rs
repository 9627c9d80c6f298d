//! The attacker's tools against a running listener ([`crate::listener::Listener`]): frames
//! crafted with the real wire encoders, a real `Sender` driven in memory so its frames can be
//! captured and replayed, signed bundles built with or without the path policy.
//!
//! - [`Signer`]: a fixed-seed officer key with a trust directory; [`Signer::bundle`] builds with
//!   the real builder, [`Signer::careless_bundle`] signs any header (`write_unchecked`).
//! - [`sender_frames`]: every frame a real `Sender` emits for one object (a "capture");
//!   [`public_frames`] with the suites' shared geometry under the public default key.
//! - [`SignedBundle`]: a real bundle (files, bytes, frames) and its byte-identical check;
//!   [`resend_until`] resends frames until a probe of the store or listener sees the effect.
//! - [`data_frame`] / [`end_frame`]: hand-made frames under any key and geometry
//!   ([`object_params`]).
//! - [`Rig`]: a signer's trust directory, a store and the listener binary, as one fixture.
//! - [`Blaster`]: paced UDP sending ([`crate::listener::wait_until`] polls for the effect).
//! - store reads are typed, in [`crate::store`]; [`disk_usage`] and [`fs_free`] measure space;
//!   [`TestMount`] mounts a tmpfs or an image for one test ([`require_mount_or_skip`] first).

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sluice_common::bundle::build::{self, BundleSpec, MemSource};
use sluice_common::bundle::keys::SecretKey;
use sluice_common::bundle::{BundleId, Entry, EntryKind, FORMAT_VERSION, Header};
use sluice_common::transport::params::ObjectParams;
use sluice_common::transport::send::SenderConfig;
use sluice_common::transport::wire::{self, DataHeader, LinkKey, ObjectEnd};

/// The bundle id of bundle bytes (the signed digest over prefix and header), without any trust
/// decision and without parsing the header, so it also names bundles whose header a receiver
/// refuses (an invalid channel name, say).
pub fn bundle_id(bundle: &[u8]) -> BundleId {
    use sluice_common::bundle::format::{PREFIX_LEN, digest};
    let prefix: &[u8; PREFIX_LEN] = bundle
        .get(..PREFIX_LEN)
        .and_then(|p| p.try_into().ok())
        .expect("a bundle prefix");
    let header_len = u32::from_le_bytes(prefix[18..22].try_into().expect("4 bytes")) as usize;
    let header = bundle
        .get(PREFIX_LEN..PREFIX_LEN + header_len)
        .expect("a whole header");
    digest(prefix, header)
}

/// An officer key (fixed seed) and a trust directory trusting it as `alice`.
pub struct Signer {
    pub key: SecretKey,
    pub trust: PathBuf,
}

impl Signer {
    /// Writes `dir/alice.pub` and a policy (`require_increasing_sequence = false`, so tests can
    /// send bundles in any order; rollback is covered by the store's own tests).
    pub fn new(dir: &Path) -> Self {
        let key = SecretKey::from_seed(&[0x41; 32]);
        std::fs::create_dir_all(dir).expect("trust dir");
        std::fs::write(dir.join("alice.pub"), key.public().to_sluice_text("alice"))
            .expect("write alice.pub");
        std::fs::write(
            dir.join("policy.toml"),
            "[defaults]\nallow_any_trusted_signer = true\nrequire_increasing_sequence = false\n",
        )
        .expect("write policy.toml");
        Signer {
            key,
            trust: dir.to_path_buf(),
        }
    }

    /// A bundle built by the real builder (path policy applied) from `(path, bytes)` files.
    pub fn bundle(&self, channel: &str, sequence: u64, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut src = MemSource::default();
        for (p, b) in files {
            src.0.insert((*p).to_string(), b.clone());
        }
        let spec = BundleSpec {
            channel: channel.into(),
            sequence,
            created: 1_790_000_000,
            expires: None,
            note: None,
        };
        src.bundle(&spec, &self.key).expect("build bundle")
    }

    /// A validly signed bundle whose manifest is exactly `entries` (kind, path, body) in the
    /// given order: no path policy, no sorting, no parents added. A careless signer.
    pub fn careless_bundle(
        &self,
        channel: &str,
        sequence: u64,
        entries: &[(EntryKind, &str, &[u8])],
    ) -> Vec<u8> {
        let header = Header {
            format_version: FORMAT_VERSION,
            channel: channel.into(),
            sequence,
            created: 1_790_000_000,
            expires: None,
            note: None,
            signer: self.key.key_id(),
            entries: entries
                .iter()
                .map(|(kind, path, body)| Entry {
                    kind: *kind,
                    path: (*path).to_string(),
                    size: if *kind == EntryKind::File {
                        body.len() as u64
                    } else {
                        0
                    },
                    blake3: if *kind == EntryKind::File {
                        *blake3::hash(body).as_bytes()
                    } else {
                        [0; 32]
                    },
                    executable: false,
                })
                .collect(),
        };
        let bodies: Vec<&[u8]> = entries
            .iter()
            .filter(|(k, _, _)| *k == EntryKind::File)
            .map(|(_, _, b)| *b)
            .collect();
        build::write_unchecked(&header, &self.key, &bodies)
    }
}

/// Every frame a real `Sender` emits for `object` (data, object-end and heartbeat frames, in
/// send order): what a capture socket on the diode link would record. The object id is the
/// bundle's (`BundleId::object_id`), as `sluice-send` uses.
pub fn sender_frames(
    key: &LinkKey,
    object: &[u8],
    object_id: [u8; 16],
    symbol_size: u16,
    block_size: u32,
    overhead_percent: u32,
    passes: u16,
) -> Vec<Vec<u8>> {
    let mut config = SenderConfig::new(key.clone(), [0x5E; 16], symbol_size, block_size);
    config.overhead_percent = overhead_percent;
    config.passes = passes;
    config.heartbeat_interval = Duration::from_secs(3600);
    sluice_testkit::drive::object_frames(config, object_id, object, 1_790_000_000_000)
}

/// Every frame `sluice-send` emits for `bundle` under the public default link key with the
/// geometry the attack suites share (T = 1024, 64 KiB blocks, 10 % overhead, one pass), under
/// the bundle's own object id: the one capture an attacker or a test replays.
pub fn public_frames(bundle: &[u8]) -> Vec<Vec<u8>> {
    sender_frames(
        &LinkKey::public_default(),
        bundle,
        bundle_id(bundle).object_id(),
        1024,
        64 * 1024,
        10,
        1,
    )
}

/// `len` bytes of ChaCha8 output seeded with `seed`: file content that compresses to nothing and
/// is the same on every run.
pub fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut out = vec![0u8; len];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}

/// A real bundle as the suites send it beside an attack: the files as signed, the bundle bytes,
/// and the frames a real `Sender` emits for it under the public default link key. One type for
/// "the legitimate transfer that must still land byte-identical".
pub struct SignedBundle {
    pub files: Vec<(String, Vec<u8>)>,
    pub bytes: Vec<u8>,
    pub frames: Vec<Vec<u8>>,
}

impl SignedBundle {
    /// `files` signed by `signer` (real builder) as `channel`/`sequence`, captured with
    /// [`public_frames`].
    pub fn new(
        signer: &Signer,
        channel: &str,
        sequence: u64,
        files: Vec<(String, Vec<u8>)>,
    ) -> Self {
        let bytes = Self::sign(signer, channel, sequence, &files);
        let frames = public_frames(&bytes);
        SignedBundle {
            files,
            bytes,
            frames,
        }
    }

    /// Like [`SignedBundle::new`] with `overhead_percent` repair symbols instead of 10 %.
    pub fn with_overhead(
        signer: &Signer,
        channel: &str,
        sequence: u64,
        files: Vec<(String, Vec<u8>)>,
        overhead_percent: u32,
    ) -> Self {
        let bytes = Self::sign(signer, channel, sequence, &files);
        let frames = sender_frames(
            &LinkKey::public_default(),
            &bytes,
            bundle_id(&bytes).object_id(),
            1024,
            64 * 1024,
            overhead_percent,
            1,
        );
        SignedBundle {
            files,
            bytes,
            frames,
        }
    }

    fn sign(signer: &Signer, channel: &str, sequence: u64, files: &[(String, Vec<u8>)]) -> Vec<u8> {
        let refs: Vec<(&str, Vec<u8>)> =
            files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
        signer.bundle(channel, sequence, &refs)
    }

    /// The bundle id, hex (the quarantine directory's name).
    pub fn id(&self) -> String {
        bundle_id(&self.bytes).to_hex()
    }

    /// The transport object id it is sent under.
    pub fn object_id(&self) -> [u8; 16] {
        bundle_id(&self.bytes).object_id()
    }

    /// Asserts `STORE/quarantine/<id>/files` holds exactly the signed files, byte for byte.
    pub fn assert_in_quarantine(&self, store: &Path) {
        let id = self.id();
        let got = crate::blake3_tree(&store.join("quarantine").join(&id).join("files"))
            .unwrap_or_else(|e| panic!("bundle {id} not readable in quarantine: {e}"));
        let want: std::collections::BTreeMap<String, blake3::Hash> = self
            .files
            .iter()
            .map(|(p, b)| (p.clone(), blake3::hash(b)))
            .collect();
        assert_eq!(
            got, want,
            "quarantined files of bundle {id} differ from what was signed"
        );
    }
}

/// Sends `frames` to `to` (paced, [`Blaster`]) and waits up to 3 s for `probe` to find what it
/// looks for, up to `rounds` times; returns what it found. Each resend fills in whatever loss or
/// a flood crowded out (the receiver deduplicates), so delivery never depends on timing.
pub fn resend_until<T>(
    to: SocketAddr,
    frames: &[Vec<u8>],
    rounds: usize,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let mut blaster = Blaster::new(to);
    let mut found = None;
    for _ in 0..rounds {
        blaster.send_all(frames);
        if crate::listener::wait_until(Duration::from_secs(3), || {
            found = probe();
            found.is_some()
        }) {
            break;
        }
    }
    found
}

/// The geometry of a hand-made object (id, length, block and symbol size), in the order the
/// attack suites think of it; [`data_frame`] and [`end_frame`] validate it when encoding.
pub fn object_params(
    object_id: [u8; 16],
    object_len: u64,
    block_size: u32,
    symbol_size: u16,
) -> ObjectParams {
    ObjectParams {
        object_id,
        object_len,
        block_size,
        symbol_size,
    }
}

/// A data frame under `key` with arbitrary (validated by the encoder) geometry.
pub fn data_frame(
    key: &LinkKey,
    params: ObjectParams,
    block: u32,
    esi: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = vec![0u8; wire::data_frame_len(params.symbol_size)];
    let n = wire::encode_data(key, &DataHeader { params, block, esi }, payload, &mut out)
        .expect("encodable data frame");
    out.truncate(n);
    out
}

/// An object-end frame under `key`.
pub fn end_frame(key: &LinkKey, params: ObjectParams, pass: u16, passes: u16) -> Vec<u8> {
    let mut out = vec![0u8; wire::OBJECT_END_LEN];
    wire::encode_object_end(
        key,
        &ObjectEnd {
            params,
            pass,
            passes,
            frames_sent_this_pass: 1,
        },
        &mut out,
    )
    .expect("encodable end frame");
    out
}

/// `frame` with its tag's last byte flipped (what a forger without the key produces).
pub fn bad_tag(mut frame: Vec<u8>) -> Vec<u8> {
    if let Some(b) = frame.last_mut() {
        *b ^= 0x55;
    }
    frame
}

/// A UDP socket that paces itself: a short sleep every `burst` datagrams, so loopback sends stay
/// below what the listener drains (tests assert outcomes, never rates).
pub struct Blaster {
    pub socket: UdpSocket,
    pub to: SocketAddr,
    pub burst: usize,
    pub pause: Duration,
    pub sent: u64,
}

impl Blaster {
    pub fn new(to: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind attacker socket");
        Blaster {
            socket,
            to,
            burst: 64,
            pause: Duration::from_micros(500),
            sent: 0,
        }
    }

    /// Sends one datagram (errors such as ECONNREFUSED from a dead listener are ignored here;
    /// liveness is asserted separately).
    pub fn send(&mut self, datagram: &[u8]) {
        let _ = self.socket.send_to(datagram, self.to);
        self.sent += 1;
        if self.burst > 0 && self.sent % self.burst as u64 == 0 {
            std::thread::sleep(self.pause);
        }
    }

    pub fn send_all<'a>(&mut self, frames: impl IntoIterator<Item = &'a Vec<u8>>) {
        for f in frames {
            self.send(f);
        }
    }
}

/// Bytes allocated on disk below `dir` (st_blocks × 512), following no symlinks.
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// A filesystem mounted for one test (a tmpfs, or a disk image on a loop device), unmounted
/// (lazily, so a stuck process cannot keep it) on drop. The one mount fixture of the storage
/// fault and media tests.
pub struct TestMount {
    pub path: PathBuf,
}

impl TestMount {
    /// `mount -t tmpfs -o OPTIONS tmpfs PATH` (PATH is created).
    pub fn tmpfs(path: &Path, options: &str) -> std::io::Result<Self> {
        Self::mount(path, &["-t", "tmpfs", "-o", options, "tmpfs"])
    }

    /// `mount -o loop IMAGE PATH` (PATH is created): a filesystem image such as FAT32.
    pub fn loop_image(path: &Path, image: &Path) -> std::io::Result<Self> {
        let image = image
            .to_str()
            .ok_or_else(|| std::io::Error::other(format!("{} is not UTF-8", image.display())))?;
        Self::mount(path, &["-o", "loop", image])
    }

    /// `mount ARGS PATH`; the error carries mount's own message.
    fn mount(path: &Path, args: &[&str]) -> std::io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let out = Command::new("mount").args(args).arg(path).output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "mount {}: {} ({})",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            )));
        }
        Ok(TestMount {
            path: path.to_path_buf(),
        })
    }

    /// `mount -o remount,OPTIONS PATH` (grow, shrink, or make read-only).
    pub fn remount(&self, options: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(st.success(), "remount {options}: {st}");
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// True when this process may mount a tmpfs. Otherwise prints why the test is skipped and
/// returns false, except under `CI=true`, where it panics (CI runs as root; a skip there would
/// hide a broken setup).
pub fn require_mount_or_skip(test_name: &str) -> bool {
    let reason = if !nix::unistd::geteuid().is_root() {
        Some("not running as root (mounting a tmpfs needs CAP_SYS_ADMIN)".to_string())
    } else {
        let probe = std::env::temp_dir().join(format!("sluice-mount-probe-{}", std::process::id()));
        match TestMount::tmpfs(&probe, "size=1m") {
            Ok(m) => {
                drop(m);
                let _ = std::fs::remove_dir(&probe);
                None
            }
            Err(e) => Some(format!("cannot mount a tmpfs: {e}")),
        }
    };
    let Some(reason) = reason else {
        return true;
    };
    crate::skip_unless_ci(
        test_name,
        &format!("storage-fault tests cannot run: {reason}"),
    )
}

/// Free bytes and free inodes of the filesystem holding `path`.
pub fn fs_free(path: &Path) -> (u64, u64) {
    let s = nix::sys::statvfs::statvfs(path).expect("statvfs");
    (
        s.blocks_available() as u64 * s.fragment_size() as u64,
        s.files_available() as u64,
    )
}

/// The fixture of the attack suites (`tests/tests/hostile_frames.rs`, `hostile_bundles.rs`): a
/// temporary directory with a [`Signer`]'s trust directory, the store path beside it, and the
/// built `sluice-recv` to listen with.
pub struct Rig {
    pub tmp: crate::TempStore,
    pub signer: Signer,
    pub bin: PathBuf,
}

impl Rig {
    pub fn new() -> Self {
        let tmp = crate::TempStore::new();
        let signer = Signer::new(&tmp.path().join("trust"));
        let bin = crate::build_bin("sluice-recv", "sluice-recv");
        Rig { tmp, signer, bin }
    }

    /// `store/` in the temporary directory.
    pub fn store(&self) -> PathBuf {
        self.tmp.path().join("store")
    }

    /// A listener on the rig's store and trust directory with `extra` flags, logging beside them.
    pub fn listen(&self, extra: &[&str]) -> crate::listener::Listener {
        crate::listener::Listener::spawn(
            &self.bin,
            &self.store(),
            &self.signer.trust,
            self.tmp.path(),
            extra,
        )
    }
}

impl Default for Rig {
    fn default() -> Self {
        Self::new()
    }
}

//! Building blocks of the end-to-end tests (`tests/tests/e2e_udp.rs`): fast binaries, keys and
//! bundles, `sluice-send udp` runs, delivery checks against the store, and an in-process
//! sender that drives [`sluice_common::transport::send::Sender`] over a UDP socket (what anyone
//! holding the link key can do, so the receiver must judge its frames on their own).

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::{RngCore, SeedableRng};
use serde_json::Value;

use crate::watch::{ProcessStats, ProcessWatch};

/// `sluice-send` and `sluice-recv` built for the e2e tests.
#[derive(Clone, Debug)]
pub struct Bins {
    pub send: PathBuf,
    pub recv: PathBuf,
}

/// `SEND media --out DIR --trust TRUST` (`SEND`: a sluice-send binary); the caller adds the link
/// key and the bundles.
pub fn media_command(send: &Path, dir: &Path, trust: &Path) -> Command {
    let mut cmd = Command::new(send);
    cmd.arg("media")
        .arg("--out")
        .arg(dir)
        .arg("--trust")
        .arg(trust);
    cmd
}

/// `RECV import --store STORE --trust TRUST` (`RECV`: a sluice-recv binary); the caller adds the
/// link key and the paths.
pub fn import_command(recv: &Path, store: &Path, trust: &Path) -> Command {
    let mut cmd = Command::new(recv);
    cmd.arg("import")
        .arg("--store")
        .arg(store)
        .arg("--trust")
        .arg(trust);
    cmd
}

/// The two binaries, built once per test process.
///
/// The dev profile optimises dependencies (opt-level 3) but keeps `debug-assertions` on, and
/// raptorq guards its solver with `#[cfg(debug_assertions)]` self-checks that make every
/// encode/decode ~25x slower (3 MB took 4.4 s to send, 0.17 s without them). So the binaries
/// are built with `--config profile.dev.package.raptorq.debug-assertions=false`; the artefacts
/// are taken by exact path from cargo's JSON messages (the uplifted `target/debug/sluice-*` may
/// be replaced by another build of the same binary). In a `--release` test run the release
/// binaries are used as they are. `SLUICE_E2E_BIN_DIR` points at prebuilt binaries instead.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        if let Some(dir) = std::env::var_os("SLUICE_E2E_BIN_DIR") {
            let dir = PathBuf::from(dir);
            return Bins {
                send: dir.join("sluice-send"),
                recv: dir.join("sluice-recv"),
            };
        }
        let release = crate::bin_dirs()
            .first()
            .is_some_and(|d| d.file_name().is_some_and(|n| n == "release"));
        if release {
            return Bins {
                send: crate::build_bin("sluice-send", "sluice-send"),
                recv: crate::build_bin("sluice-recv", "sluice-recv"),
            };
        }
        build_fast().expect("building sluice-send and sluice-recv for the e2e tests")
    })
}

fn build_fast() -> anyhow::Result<Bins> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(crate::workspace_root())
        .args([
            "build",
            "--quiet",
            "--message-format=json-render-diagnostics",
            "--config",
            "profile.dev.package.raptorq.debug-assertions=false",
            "-p",
            "sluice-send",
            "-p",
            "sluice-recv",
            "--bin",
            "sluice-send",
            "--bin",
            "sluice-recv",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !out.status.success() {
        bail!(
            "cargo build of sluice-send/sluice-recv failed ({})",
            out.status
        );
    }
    let (mut send, mut recv) = (None, None);
    for line in out.stdout.split(|&b| b == b'\n') {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        let (Some(name), Some(exe)) = (
            v["target"]["name"].as_str(),
            v["executable"].as_str().map(PathBuf::from),
        ) else {
            continue;
        };
        match name {
            "sluice-send" => send = Some(exe),
            "sluice-recv" => recv = Some(exe),
            _ => {}
        }
    }
    Ok(Bins {
        send: send.context("cargo reported no sluice-send executable")?,
        recv: recv.context("cargo reported no sluice-recv executable")?,
    })
}

/// `name` from the environment as a number of MiB, else `default`: lets a local run scale the
/// data up (`SLUICE_E2E_NETNS_MIB=2048 cargo test ...`).
pub fn env_mib(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Runs `cmd`, panicking with its output unless it exits 0; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sluice-send keygen --out dir/name`; returns (secret key path, public key path).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("mkdir keys");
    let prefix = dir.join(name);
    run_ok(
        Command::new(&bins().send)
            .arg("keygen")
            .arg("--out")
            .arg(&prefix),
    );
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

/// `sluice-send link-keygen --out PATH`: the secret link key `media`, `import`, `udp` and
/// `listen` share, made the way an operator makes it; panics unless it exits 0.
pub fn link_keygen(path: &Path) {
    run_ok(
        Command::new(&bins().send)
            .args(["link-keygen", "--out"])
            .arg(path),
    );
}

/// A trust directory holding copies of `pubs`.
pub fn trust_dir(dir: &Path, pubs: &[&Path]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir trust");
    for p in pubs {
        std::fs::copy(p, dir.join(p.file_name().expect("pub file name"))).expect("copy pub");
    }
    dir.to_path_buf()
}

/// What `bundle create --json` said.
#[derive(Clone, Debug)]
pub struct BundleInfo {
    pub path: PathBuf,
    pub id: String,
    pub channel: String,
    pub sequence: u64,
    pub bytes: u64,
}

impl BundleInfo {
    /// The transport object id (first 16 bytes of the bundle id).
    pub fn object_id(&self) -> [u8; 16] {
        let raw = hex::decode(&self.id).expect("hex bundle id");
        raw[..16].try_into().expect("32-byte id")
    }
}

/// `sluice-send bundle create` of the directory `content` (it becomes the bundle's top entry).
pub fn make_bundle(
    key: &Path,
    channel: &str,
    sequence: u64,
    content: &Path,
    out: &Path,
) -> BundleInfo {
    let stdout = run_ok(
        Command::new(&bins().send)
            .args(["bundle", "create", "--json", "--key"])
            .arg(key)
            .args([
                "--channel",
                channel,
                "--seq",
                &sequence.to_string(),
                "--out",
            ])
            .arg(out)
            .arg(content),
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("bundle create --json");
    BundleInfo {
        path: out.to_path_buf(),
        id: v["bundle_id"].as_str().expect("bundle_id").to_string(),
        channel: channel.to_string(),
        sequence,
        bytes: v["bundle_bytes"].as_u64().expect("bundle_bytes"),
    }
}

/// A tree of about `total` bytes of seeded pseudo-random content under `root`: nested
/// directories (three levels), an empty file, a tiny file, a few large files and some small ones.
/// Written in 1 MiB chunks, so any size fits in little memory.
pub fn mixed_tree(root: &Path, total: u64, seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    std::fs::create_dir_all(root.join("nested/deeper/deepest")).expect("mkdir");
    std::fs::create_dir_all(root.join("docs")).expect("mkdir");
    std::fs::write(root.join("nested/empty.dat"), b"").expect("empty file");
    std::fs::write(root.join("nested/deeper/deepest/tiny.txt"), b"x\n").expect("tiny file");
    let mut left = total.saturating_sub(2);
    // 16 small files of ~1-64 KiB (at most 1/64 of the total each), then the rest in four large
    // files.
    let small_max = (total / 64).clamp(64, 64 * 1024);
    for i in 0..16u64 {
        let size = (small_max / 16 + rng.next_u32() as u64 % small_max).min(left / 32);
        write_random(&root.join(format!("docs/small-{i:02}.bin")), size, &mut rng);
        left -= size;
    }
    let large = [
        "big-0.bin",
        "nested/big-1.bin",
        "nested/deeper/big-2.bin",
        "big-3.bin",
    ];
    let per = left / large.len() as u64;
    for (i, name) in large.iter().enumerate() {
        // The last takes the remainder; give it an odd size so no file ends on a block edge.
        let size = if i + 1 == large.len() {
            left
        } else {
            per.saturating_sub(7)
        };
        write_random(&root.join(name), size, &mut rng);
        left -= size;
    }
}

fn write_random(path: &Path, size: u64, rng: &mut rand_chacha::ChaCha8Rng) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create file"));
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
    f.flush().expect("flush");
}

/// `udp`'s flags toward the receiver at `to`, checking bundles against `trust`, sending at `rate`
/// (e.g. `100M`): the `args` of [`send_udp`], to which a test adds its own.
pub fn udp_args(to: SocketAddr, trust: &Path, rate: &str) -> Vec<String> {
    vec![
        "--to".into(),
        to.to_string(),
        "--trust".into(),
        trust.display().to_string(),
        "--rate".into(),
        rate.into(),
    ]
}

/// Runs `sluice-send udp --json` (`cmd` is the binary or a namespace wrapper) with `args` and
/// the bundles; returns its JSON report and the resources it used. Panics unless it exits 0.
pub fn send_udp(mut cmd: Command, args: &[String], bundles: &[&Path]) -> (Value, ProcessStats) {
    cmd.arg("udp")
        .arg("--json")
        .args(args)
        .args(bundles)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let watch = ProcessWatch::start(child.id(), Duration::from_millis(20));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let (status, stats) = watch.wait(&mut child).expect("wait for sender");
    let out = out_t.join().expect("stdout reader");
    let err = err_t.join().expect("stderr reader");
    assert!(
        status.success(),
        "sluice-send udp failed ({status}):\nstdout: {out}\nstderr: {err}"
    );
    let v = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("sluice-send --json output {out:?}: {e}"));
    (v, stats)
}

pub fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// `sluice-recv audit verify --json --store STORE` with the e2e binary.
pub fn audit_verify(store: &Path) -> crate::store::AuditVerify {
    crate::store::audit_verify(&bins().recv, store)
}

/// Asserts `store/quarantine/<id>` holds exactly `expected` (a [`crate::blake3_tree`] of the
/// source directory, whose name is the bundle's top entry `top`) and a receipt that lists every
/// file with its size and blake3, the bundle id, channel and sequence.
pub fn assert_delivered(store: &Path, bundle: &BundleInfo, source: &Path, top: &str) {
    let entry = store.join("quarantine").join(&bundle.id);
    let got = crate::blake3_tree(&entry.join("files").join(top)).expect("hash quarantine tree");
    let want = crate::blake3_tree(source).expect("hash source tree");
    assert_eq!(got.len(), want.len(), "file count differs");
    assert!(got == want, "quarantined files differ from the source");
    let receipt = crate::store::receipt(store, &bundle.id).expect("receipt.json");
    assert_eq!(receipt.bundle_id, bundle.id);
    assert_eq!(receipt.channel, bundle.channel);
    assert_eq!(receipt.sequence, bundle.sequence);
    assert_eq!(receipt.bundle_bytes, bundle.bytes);
    let files: std::collections::BTreeMap<String, (u64, String)> = receipt
        .entries
        .into_iter()
        .filter(|e| e.kind == "file")
        .map(|e| {
            (
                e.path,
                (e.size_bytes, e.blake3.expect("a file entry has a blake3")),
            )
        })
        .collect();
    assert_eq!(files.len(), want.len(), "receipt lists every file once");
    for (rel, hash) in &want {
        let (size, b3) = files
            .get(&format!("{top}/{rel}"))
            .unwrap_or_else(|| panic!("receipt lacks {top}/{rel}"));
        assert_eq!(b3, &hash.to_hex().to_string(), "receipt blake3 of {rel}");
        let len = std::fs::metadata(source.join(rel)).expect("stat").len();
        assert_eq!(*size, len, "receipt size of {rel}");
    }
}

/// How [`drive_sender`] sends.
#[derive(Clone, Debug)]
pub struct DriveOptions {
    pub rate_bytes_per_sec: Option<u64>,
    pub overhead_percent: u32,
    pub passes: u16,
    pub mtu: usize,
}

impl Default for DriveOptions {
    fn default() -> Self {
        Self {
            rate_bytes_per_sec: Some(20 << 20),
            overhead_percent: 10,
            passes: 1,
            mtu: 1500,
        }
    }
}

/// Sends the bytes of `bundle` as transport object `object_id` to `dest` with the sans-IO
/// [`Sender`](sluice_common::transport::send::Sender) under the public default link key: no
/// verification on the way, exactly what an attacker holding the link key could send. Returns
/// the data frames sent.
pub fn drive_sender(
    bundle: &[u8],
    object_id: [u8; 16],
    dest: SocketAddr,
    opts: &DriveOptions,
) -> anyhow::Result<u64> {
    use sluice_common::transport::params::recommended_block_size;
    use sluice_common::transport::send::{Sender, SenderConfig};
    use sluice_common::transport::wire::{self, LinkKey};
    use sluice_testkit::drive;

    let symbol = wire::symbol_size_for_datagram(opts.mtu - 28);
    let mut config = SenderConfig::new(
        LinkKey::public_default(),
        *b"e2e-test-sender!",
        symbol,
        recommended_block_size(symbol),
    );
    config.overhead_percent = opts.overhead_percent;
    config.passes = opts.passes;
    config.rate_bytes_per_sec = opts.rate_bytes_per_sec;
    let start = Instant::now();
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut sender = Sender::new(config, start, unix_ms)?;
    sender.queue_object(start, object_id, bundle.len() as u64, unix_ms)?;
    let socket = UdpSocket::bind(if dest.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })?;
    drive::drive_paced(
        &mut sender,
        drive::read_from(bundle),
        |frame| match socket.send_to(frame, dest) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
            Err(e) => Err(e),
        },
        Duration::from_secs(600),
    )?;
    Ok(sender.stats().data_frames)
}

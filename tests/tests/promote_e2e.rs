//! `sluice-promote` end to end with real components, all started by the tests themselves:
//! `sluice-send` bundles two .deb files (one depending on the other, built with `dpkg-deb`) and an
//! OCI image layout (written here, no network); in the full flow it is built and sent by
//! `sluice-send udp` from the low namespace of the emulated diode (`tests/src/netns.rs`) and
//! committed by `sluice-recv listen` in the high namespace, where everything below runs too (the
//! other tests deliver through media volumes and `sluice-recv import`). `sluice-promote` scans it with Debian's `clamscan` and a signature database
//! written here, counts reviewer approvals (2 of 3, one an OpenSSH key) and publishes to an apt
//! repository signed with a throw-away OpenPGP key (checked with stock `apt-get update` /
//! `apt-get download` and `signed-by=`), to a `docker-registry` on a free loopback port (checked
//! with `skopeo inspect`) and to a directory. `sluice-recv audit verify` must accept the store's
//! audit chain with every promotion transition in it.
//!
//! Negatives, each stopped at the right stage with nothing published and the reason in
//! `status`: an infected file (scan), a reviewer key outside the trust directory and one
//! approval of two (approve), a rejection (approve), the registry down (publish, retried later,
//! nothing half-published), SIGKILL between two targets (completed exactly once on restart).
//!
//! Missing tools (and, for the diode, not being root) skip a test with a printed reason, and
//! fail it under `CI=true`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_tests::e2e;
use sluice_tests::listener::{ListenOptions, Listener};
use sluice_tests::store::Source;
use sluice_tests::{
    DiodeOptions, Netns, Side, TempStore, blake3_tree, build_bin, free_udp_addr, output_text,
    require_root_or_skip, skip_unless_ci,
};

const TOOLS: &[&str] = &[
    "clamscan",
    "docker-registry",
    "skopeo",
    "apt-get",
    "apt-ftparchive",
    "gpg",
    "dpkg-deb",
    "sha256sum",
    "tar",
];

/// All tools present, or skip (false) with a reason; under CI=true a missing tool fails.
fn tools_or_skip(test: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let missing: Vec<&str> = TOOLS
        .iter()
        .copied()
        .filter(|t| {
            !path
                .split(':')
                .chain(["/usr/bin", "/usr/sbin"])
                .any(|d| Path::new(d).join(t).is_file())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    skip_unless_ci(
        test,
        &format!(
            "missing {missing:?} (apt-get install clamav docker-registry skopeo reprepro apt-utils gnupg dpkg-dev)"
        ),
    )
}

struct Bins {
    send: PathBuf,
    recv: PathBuf,
    promote: PathBuf,
}

fn bins() -> Bins {
    Bins {
        send: build_bin("sluice-send", "sluice-send"),
        recv: build_bin("sluice-recv", "sluice-recv"),
        promote: build_bin("sluice-promote", "sluice-promote"),
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn run_ok(cmd: &mut Command) -> Output {
    let o = run(cmd);
    assert!(o.status.success(), "{cmd:?}: {}", output_text(&o));
    o
}

fn sha256(p: &Path) -> String {
    let o = run_ok(Command::new("sha256sum").arg(p));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Everything shared by the tests of one case: keys, packages, image, config.
struct Site {
    ts: TempStore,
    bins: Bins,
    trust: PathBuf,
    officer_key: PathBuf,
    reviewers: PathBuf,
    /// alice, bob (sluice keys), carol (OpenSSH) are trusted; mallory is not.
    keys: BTreeMap<&'static str, PathBuf>,
    signing_key: PathBuf,
    keyring: PathBuf,
    debs: Vec<PathBuf>,
    /// manifest digest of the test image.
    image_digest: String,
    payload: PathBuf,
    store: PathBuf,
    repo: PathBuf,
    share: PathBuf,
    hdb: PathBuf,
    registry_port: u16,
    /// The namespace diode, when the test crosses it: the low side (bundle, `sluice-send`) runs
    /// in its tx namespace; the whole high side (`sluice-recv`, `sluice-promote`, the registry,
    /// `skopeo`) in its rx namespace, where the registry lives on the namespace's loopback.
    diode: Option<Netns>,
}

fn build_deb(dir: &Path, name: &str, depends: Option<&str>, out: &Path) -> PathBuf {
    build_deb_version(dir, name, "1.0-1", depends, out)
}

fn build_deb_version(
    dir: &Path,
    name: &str,
    version: &str,
    depends: Option<&str>,
    out: &Path,
) -> PathBuf {
    let root = dir.join(format!("{name}-{version}-root"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join(format!("usr/share/doc/{name}"))).unwrap();
    std::fs::write(
        root.join(format!("usr/share/doc/{name}/README")),
        format!("{name} for the sluice-promote test\n"),
    )
    .unwrap();
    let mut control = format!(
        "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: Sluice Test <test@example.invalid>\nDescription: {name} test package\n"
    );
    if let Some(d) = depends {
        control.push_str(&format!("Depends: {d}\n"));
    }
    std::fs::write(root.join("DEBIAN/control"), control).unwrap();
    let deb = out.join(format!("{name}_{version}_all.deb"));
    run_ok(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group", "-Zgzip"])
            .arg(&root)
            .arg(&deb),
    );
    deb
}

/// A one-layer OCI image layout in `dir` with ref name `tag`; returns the manifest digest.
fn build_oci_layout(work: &Path, dir: &Path, tag: &str) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let content = work.join("layer-content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("hello.txt"), b"hello from the low side\n").unwrap();
    let layer = work.join("layer.tar");
    run_ok(
        Command::new("tar")
            .args(["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "-cf"])
            .arg(&layer)
            .arg("-C")
            .arg(&content)
            .arg("hello.txt"),
    );
    let put = |p: &Path| -> (String, u64) {
        let d = sha256(p);
        std::fs::copy(p, blobs.join(&d)).unwrap();
        (format!("sha256:{d}"), std::fs::metadata(p).unwrap().len())
    };
    let (layer_d, layer_n) = put(&layer);
    let config = work.join("config.json");
    std::fs::write(
        &config,
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": [layer_d] }
        }))
        .unwrap(),
    )
    .unwrap();
    let (config_d, config_n) = put(&config);
    let manifest = work.join("manifest.json");
    std::fs::write(
        &manifest,
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config_n },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d, "size": layer_n }]
        }))
        .unwrap(),
    )
    .unwrap();
    let (man_d, man_n) = put(&manifest);
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": man_d, "size": man_n,
                "annotations": { "org.opencontainers.image.ref.name": tag }
            }]
        }))
        .unwrap(),
    )
    .unwrap();
    man_d
}

fn keygen(bins: &Bins, dir: &Path, name: &str) -> PathBuf {
    run_ok(
        Command::new(&bins.send)
            .arg("keygen")
            .arg("--out")
            .arg(dir.join(name)),
    );
    dir.join(format!("{name}.key"))
}

impl Site {
    fn new() -> Site {
        let ts = TempStore::new();
        let bins = bins();
        let p = ts.path().to_path_buf();
        // Bundle signer.
        let keys_dir = ts.subdir("keys");
        let officer_key = keygen(&bins, &keys_dir, "officer");
        let trust = ts.subdir("trust");
        std::fs::copy(keys_dir.join("officer.pub"), trust.join("officer.pub")).unwrap();
        // Reviewers: alice, bob (sluice), carol (OpenSSH), mallory (not trusted).
        let reviewers = ts.subdir("reviewers");
        let mut keys = BTreeMap::new();
        for n in ["alice", "bob", "mallory"] {
            keys.insert(n, keygen(&bins, &keys_dir, n));
        }
        for n in ["alice", "bob"] {
            std::fs::copy(
                keys_dir.join(format!("{n}.pub")),
                reviewers.join(format!("{n}.pub")),
            )
            .unwrap();
        }
        let carol = keys_dir.join("carol_ed25519");
        if Path::new("/usr/bin/ssh-keygen").is_file() {
            run_ok(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", "carol@site", "-f"])
                    .arg(&carol),
            );
            std::fs::copy(carol.with_extension("pub"), reviewers.join("carol.pub")).unwrap();
            keys.insert("carol", carol);
        } else {
            let k = keygen(&bins, &keys_dir, "carol");
            std::fs::copy(keys_dir.join("carol.pub"), reviewers.join("carol.pub")).unwrap();
            keys.insert("carol", k);
        }
        // The site's repository signing key (OpenPGP, no passphrase) and the client keyring.
        let gh = ts.subdir("gnupg");
        std::fs::set_permissions(&gh, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let gpg = |args: &[&str]| {
            run_ok(
                Command::new("gpg")
                    .env("GNUPGHOME", &gh)
                    .arg("--batch")
                    .args(args),
            )
        };
        gpg(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            "Sluice Test Repository <repo@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ]);
        let signing_key = p.join("repo-signing.asc");
        let o = gpg(&["--armor", "--export-secret-keys"]);
        std::fs::write(&signing_key, &o.stdout).unwrap();
        let keyring = p.join("repo-keyring.gpg");
        let o = gpg(&["--export"]);
        std::fs::write(&keyring, &o.stdout).unwrap();
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &gh)
            .args(["--kill", "gpg-agent"])
            .status();
        // Payload: two packages (app depends on lib) and one OCI image.
        let payload = ts.subdir("payload");
        let debs_dir = payload.join("debs");
        std::fs::create_dir_all(&debs_dir).unwrap();
        let build = ts.subdir("build");
        let debs = vec![
            build_deb(&build, "sluice-test-lib", None, &debs_dir),
            build_deb(
                &build,
                "sluice-test-app",
                Some("sluice-test-lib (>= 1.0)"),
                &debs_dir,
            ),
        ];
        let image_digest = build_oci_layout(&build, &payload.join("images/hello"), "1.0");
        std::fs::write(payload.join("README.txt"), b"update bundle\n").unwrap();
        // The site's ClamAV signature DB: one MD5 signature, of the "infected" test file.
        let hdb = p.join("site.hdb");
        let bad = infected_bytes();
        let md5 = {
            let f = p.join("bad.bin");
            std::fs::write(&f, &bad).unwrap();
            let o = run_ok(Command::new("md5sum").arg(&f));
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .unwrap()
                .to_string()
        };
        std::fs::write(&hdb, format!("{md5}:{}:Sluice.Test.Infected\n", bad.len())).unwrap();
        Site {
            store: p.join("store"),
            repo: p.join("srv/mirror/debian"),
            share: p.join("srv/share/updates"),
            registry_port: sluice_tests::listener::free_tcp_addr().port(),
            ts,
            bins,
            trust,
            officer_key,
            reviewers,
            keys,
            signing_key,
            keyring,
            debs,
            image_digest,
            payload,
            hdb,
            diode: None,
        }
    }

    /// `program` on the low side (`ip netns exec <tx>` when crossing the diode).
    fn low(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.diode {
            Some(d) => d.command(Side::Tx, program),
            None => Command::new(program),
        }
    }

    /// `program` on the high side (`ip netns exec <rx>` when crossing the diode).
    fn high(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.diode {
            Some(d) => d.command(Side::Rx, program),
            None => Command::new(program),
        }
    }

    /// Does anything accept TCP on the high side's 127.0.0.1:`port`?
    fn high_tcp_listening(&self, port: u16) -> bool {
        let connect = move || TcpStream::connect(("127.0.0.1", port)).is_ok();
        match &self.diode {
            Some(d) => d
                .run_in(Side::Rx, connect)
                .expect("thread in the high namespace")
                .join()
                .unwrap_or(false),
            None => connect(),
        }
    }

    fn config(&self) -> PathBuf {
        let text = format!(
            r#"[reviewers]
trust = "{reviewers}"

[[pipeline]]
channel = "updates"
approvals = 2
scan = [{{ run = ["clamscan", "--no-summary", "-d", "{hdb}", "-r", "{{files}}"], timeout_secs = 600 }}]

[[pipeline.publish]]
kind = "apt"
repo = "{repo}"
suite = "internal"
component = "main"
signing_key = "{key}"

[[pipeline.publish]]
kind = "oci"
registry = "127.0.0.1:{port}"
prefix = "mirror"
tls_verify = false

[[pipeline.publish]]
kind = "dir"
path = "{share}"
"#,
            reviewers = self.reviewers.display(),
            hdb = self.hdb.display(),
            repo = self.repo.display(),
            key = self.signing_key.display(),
            port = self.registry_port,
            share = self.share.display(),
        );
        self.ts.write("promote.toml", text.as_bytes())
    }

    /// Signs `payload` (plus `extra` files) into a bundle on channel `updates`; (id, path).
    fn make_bundle(&self, seq: u64, extra: &[(&str, &[u8])]) -> (String, PathBuf) {
        let content = self.ts.subdir(format!("content-{seq}"));
        let dest = content.join("payload");
        run_ok(Command::new("cp").arg("-a").arg(&self.payload).arg(&dest));
        for (rel, bytes) in extra {
            std::fs::write(dest.join(rel), bytes).unwrap();
        }
        let bundle = self.ts.path().join(format!("u{seq}.sluice"));
        let o = run_ok(
            self.low(&self.bins.send)
                .args([
                    "bundle",
                    "create",
                    "--json",
                    "--channel",
                    "updates",
                    "--seq",
                ])
                .arg(seq.to_string())
                .arg("--key")
                .arg(&self.officer_key)
                .arg("--out")
                .arg(&bundle)
                .arg(&dest),
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        (v["bundle_id"].as_str().unwrap().to_string(), bundle)
    }

    /// Bundles `payload` (plus `extra` files), writes media volumes and imports them into the
    /// store with `sluice-recv import`. Returns the bundle id.
    fn deliver(&self, seq: u64, extra: &[(&str, &[u8])]) -> String {
        let (id, bundle) = self.make_bundle(seq, extra);
        let vols = self.ts.subdir(format!("media-{seq}"));
        run_ok(
            e2e::media_command(&self.bins.send, &vols, &self.trust)
                // Promotion is the point here, not the link key.
                .arg("--insecure-public-link-key")
                .arg(&bundle),
        );
        run_ok(
            e2e::import_command(&self.bins.recv, &self.store, &self.trust)
                .arg("--insecure-public-link-key")
                .arg(&vols),
        );
        assert!(self.store.join("quarantine").join(&id).is_dir());
        id
    }

    fn promote(&self) -> Command {
        let mut c = self.high(&self.bins.promote);
        c.env_remove("SLUICE_PROMOTE_TEST_HOOK");
        c
    }

    fn run_once(&self, config: &Path) -> Output {
        run(self
            .promote()
            .arg("run")
            .arg("--store")
            .arg(&self.store)
            .arg("--config")
            .arg(config)
            .arg("--once"))
    }

    fn review(&self, who: &str, id: &str, reject: Option<&str>) {
        let mut c = self.promote();
        c.arg(if reject.is_some() {
            "reject"
        } else {
            "approve"
        })
        .arg("--store")
        .arg(&self.store)
        .arg("--key")
        .arg(&self.keys[who])
        .arg(id);
        if let Some(r) = reject {
            c.arg("--reason").arg(r);
        }
        run_ok(&mut c);
    }

    fn status(&self, id: &str) -> Value {
        let o = run_ok(
            self.promote()
                .arg("status")
                .arg("--store")
                .arg(&self.store)
                .arg("--json"),
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["bundle_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in status: {v}"))
    }

    fn audit_verify(&self) {
        run_ok(
            Command::new(&self.bins.recv)
                .args(["audit", "verify", "--store"])
                .arg(&self.store),
        );
    }

    /// Promotion audit records of `id`: (decision, reason, detail).
    fn promote_records(&self, id: &str) -> Vec<(String, String, String)> {
        let text = std::fs::read_to_string(self.store.join("audit.jsonl")).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| {
                r["bundle_id"] == id && r["outcome"].as_str().unwrap().starts_with("promote_")
            })
            .map(|r| {
                (
                    r["outcome"].as_str().unwrap().to_string(),
                    r["reason"].as_str().unwrap_or("").to_string(),
                    r["detail"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// A `docker-registry` on the high side's 127.0.0.1:`registry_port`.
    fn registry(&self) -> Registry {
        Registry::start(
            self.high("docker-registry"),
            self.ts.path(),
            self.registry_port,
            || self.high_tcp_listening(self.registry_port),
        )
    }

    /// Nothing of `id` reached any target.
    fn assert_nothing_published(&self, id: &str) {
        assert!(!self.share.join(id).exists(), "dir target has {id}");
        let pool = self.repo.join("pool");
        let debs = if pool.exists() {
            blake3_tree(&pool).unwrap().len()
        } else {
            0
        };
        assert_eq!(debs, 0, "apt pool not empty");
        assert!(!self.repo.join("dists").exists(), "apt index exists");
    }
}

fn infected_bytes() -> Vec<u8> {
    b"SLUICE-TEST-INFECTED-FILE: this content is listed in the site's ClamAV hdb\n".to_vec()
}

/// A `docker-registry` on 127.0.0.1:port with filesystem storage, killed on drop.
struct Registry {
    child: Child,
}

impl Registry {
    /// Runs `cmd` (`docker-registry`, possibly wrapped in `ip netns exec`) and waits until
    /// `listening` says the port accepts connections.
    fn start(mut cmd: Command, dir: &Path, port: u16, listening: impl Fn() -> bool) -> Registry {
        let root = dir.join("registry-data");
        std::fs::create_dir_all(&root).unwrap();
        let cfg = dir.join("registry.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                root.display()
            ),
        )
        .unwrap();
        let child = cmd
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !listening() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Registry { child }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP server on 127.0.0.1:port answering every request with `503 Service Unavailable`, as a
/// registry still starting or a proxy in front of a stopped one does.
struct Impostor {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl Impostor {
    fn start(port: u16) -> Impostor {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the impostor");
        l.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut served = 0;
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let mut buf = [0u8; 2048];
                        let _ = c.read(&mut buf);
                        let _ = c.write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        served += 1;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            served
        });
        Impostor { stop, thread }
    }

    /// Stops serving and frees the port; how many connections it answered.
    fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// A private apt configuration in `dir` pointing at `repo` with `signed-by=keyring`.
struct AptClient {
    dir: PathBuf,
    /// Network namespace to run `apt-get` in (the high side's, when crossing the diode).
    netns: Option<String>,
}

impl AptClient {
    fn new(dir: &Path, repo: &Path, keyring: &Path) -> AptClient {
        for d in ["state/lists/partial", "cache/archives/partial", "download"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("state/status"), b"").unwrap();
        std::fs::write(
            dir.join("sources.list"),
            format!(
                "deb [signed-by={}] file:{} internal main\n",
                keyring.display(),
                repo.display()
            ),
        )
        .unwrap();
        AptClient {
            dir: dir.to_path_buf(),
            netns: None,
        }
    }

    /// Runs `apt-get` inside network namespace `ns`.
    fn in_netns(mut self, ns: &str) -> AptClient {
        self.netns = Some(ns.to_string());
        self
    }

    fn apt(&self, args: &[&str]) -> Output {
        let d = &self.dir;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "apt-get"]);
                c
            }
            None => Command::new("apt-get"),
        };
        run(cmd
            .current_dir(d.join("download"))
            .args(["-q", "-o"])
            .arg(format!(
                "Dir::Etc::SourceList={}",
                d.join("sources.list").display()
            ))
            .args(["-o", "Dir::Etc::SourceParts=/dev/null", "-o"])
            .arg(format!("Dir::State={}", d.join("state").display()))
            .arg("-o")
            .arg(format!(
                "Dir::State::status={}",
                d.join("state/status").display()
            ))
            .arg("-o")
            .arg(format!("Dir::Cache={}", d.join("cache").display()))
            .args([
                "-o",
                "Debug::NoLocking=1",
                "-o",
                "APT::Sandbox::User=root",
                "-o",
                "APT::Architecture=amd64",
                "-o",
                "APT::Update::Error-Mode=any",
            ])
            .args(args))
    }
}

/// The whole flow across the namespace diode: the officer bundles two packages and an image on
/// the low side, the real `sluice-send udp` sends it from the low namespace through the one-way
/// veth (nft drops everything leaving the high side toward the low side), the real
/// `sluice-recv listen` in the high namespace commits it, and `sluice-promote` (also in the high
/// namespace, never touching the diode socket) scans, counts approvals and publishes to the
/// registry on the high namespace's loopback, the apt repository and the share.
#[test]
fn promote_full_flow_across_the_namespace_diode_two_of_three_apt_oci_dir() {
    const NAME: &str = "promote_full_flow_across_the_namespace_diode_two_of_three_apt_oci_dir";
    if !tools_or_skip(NAME) || !require_root_or_skip(NAME) {
        return;
    }
    let t0 = Instant::now();
    let mut site = Site::new();
    site.diode = Some(Netns::up(&DiodeOptions::default()).expect("diode up"));
    let diode = site.diode.as_ref().unwrap();
    let config = site.config();
    let reg = site.registry();

    // The link key both ends share: a diode address is not loopback, so both refuse the public
    // default key (docs/operations.md, "The link key").
    let link_key = site.store.with_file_name("link.key");
    let made = Command::new(&site.bins.send)
        .args(["link-keygen", "--out"])
        .arg(&link_key)
        .output()
        .expect("run link-keygen");
    assert!(made.status.success(), "{}", output_text(&made));
    // High side: the receiver listens on the diode's far end, with the store promote reads.
    let bind = SocketAddr::from((diode.rx_addr, 7000));
    let mut opts = ListenOptions::new(bind, &site.store, &site.trust);
    opts.extra = vec!["--link-key".into(), link_key.display().to_string()];
    let mut listener = Listener::start(site.high(&site.bins.recv), &opts);
    // Low side: bundle built and sent from the low namespace.
    let (id, bundle) = site.make_bundle(1, &[]);
    let mut args = e2e::udp_args(bind, &site.trust, "100M");
    args.extend(["--link-key".into(), link_key.display().to_string()]);
    let (report, _) = e2e::send_udp(site.low(&site.bins.send), &args, &[&bundle]);
    let outcomes = listener.wait_outcomes(1, Duration::from_secs(300)).to_vec();
    assert_eq!(outcomes[0]["outcome"], "accepted", "{outcomes:?}");
    assert_eq!(outcomes[0]["bundle_id"], id.as_str(), "{outcomes:?}");
    let receipt = sluice_tests::store::receipt(&site.store, &id).expect("receipt");
    assert_eq!(receipt.transport.source, Source::Udp);
    let t_crossed = t0.elapsed();

    // Pass 1: scanned clean, then waits for approvals.
    let o = site.run_once(&config);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let st = site.status(&id);
    assert_eq!(st["stage"], "approve", "{st}");
    assert!(
        st["waiting_for"].as_str().unwrap().contains("0 of 2"),
        "{st}"
    );
    site.assert_nothing_published(&id);

    // Two of three reviewers (one with an OpenSSH key) approve; the next pass publishes.
    site.review("alice", &id, None);
    site.review("carol", &id, None);
    let o = site.run_once(&config);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let st = site.status(&id);
    assert_eq!(st["stage"], "published", "{st}");
    assert_eq!(st["published"].as_array().unwrap().len(), 3, "{st}");

    // apt: stock apt-get with signed-by, on the high side, fetches both packages byte-identical.
    let apt = AptClient::new(&site.ts.subdir("apt-client"), &site.repo, &site.keyring)
        .in_netns(&diode.rx_ns);
    let o = apt.apt(&["update"]);
    assert!(o.status.success(), "apt-get update: {}", output_text(&o));
    let o = apt.apt(&["download", "sluice-test-app", "sluice-test-lib"]);
    assert!(o.status.success(), "apt-get download: {}", output_text(&o));
    for deb in &site.debs {
        let got = std::fs::read(apt.dir.join("download").join(deb.file_name().unwrap())).unwrap();
        assert_eq!(
            got,
            std::fs::read(deb).unwrap(),
            "{} differs",
            deb.display()
        );
    }
    // The dependency is in the index as built.
    let packages =
        std::fs::read_to_string(site.repo.join("dists/internal/main/binary-amd64/Packages"))
            .unwrap();
    assert!(
        packages.contains("Depends: sluice-test-lib (>= 1.0)"),
        "{packages}"
    );

    // A tampered Packages file is refused by apt (its hash is in the signed Release).
    let evil = site.ts.path().join("evil-repo");
    run_ok(Command::new("cp").arg("-a").arg(&site.repo).arg(&evil));
    let pk = evil.join("dists/internal/main/binary-amd64/Packages");
    let t = std::fs::read_to_string(&pk)
        .unwrap()
        .replace("Version: 1.0-1", "Version: 9.9-1");
    std::fs::write(&pk, t).unwrap();
    let evil_apt = AptClient::new(&site.ts.subdir("apt-evil"), &evil, &site.keyring);
    let o = evil_apt.apt(&["update"]);
    assert!(
        !o.status.success(),
        "apt-get update accepted a tampered Packages: {}",
        output_text(&o)
    );
    let o = evil_apt.apt(&["download", "sluice-test-app"]);
    assert!(
        !o.status.success(),
        "apt-get download after a tampered Packages: {}",
        output_text(&o)
    );

    // oci: the registry serves the image under the layout's digest.
    let o = run_ok(
        site.high("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .arg(format!(
                "docker://127.0.0.1:{}/mirror/hello:1.0",
                site.registry_port
            )),
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Digest"].as_str().unwrap(), site.image_digest, "{v}");

    // dir: the tree, byte-identical.
    let published = site.share.join(&id).join("payload");
    assert_eq!(
        blake3_tree(&published).unwrap(),
        blake3_tree(&site.payload).unwrap()
    );

    // The audit chain holds every transition, from the listener's acceptance of what crossed
    // the diode to the last target, and still verifies.
    site.audit_verify();
    let chain: Vec<String> = sluice_tests::store::audit_records(&site.store)
        .into_iter()
        .filter(|r| r.bundle_id.as_deref() == Some(id.as_str()))
        .map(|r| r.outcome)
        .collect();
    assert_eq!(
        chain.first().map(String::as_str),
        Some("accepted"),
        "{chain:?}"
    );
    assert_eq!(chain.len(), 9, "accepted + 8 promotion records: {chain:?}");
    let recs = site.promote_records(&id);
    let kinds: Vec<(&str, &str)> = recs
        .iter()
        .map(|(d, r, _)| (d.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("promote_scan", "passed"),
            ("promote_review", "approve"),
            ("promote_review", "approve"),
            ("promote_approve", "passed"),
            ("promote_publish", "target_done"),
            ("promote_publish", "target_done"),
            ("promote_publish", "target_done"),
            ("promote_publish", "published"),
        ],
        "{recs:?}"
    );
    let promotion: Value = serde_json::from_slice(
        &std::fs::read(site.store.join("promote").join(&id).join("promotion.json")).unwrap(),
    )
    .unwrap();
    let approve = &promotion["stages"][1];
    assert_eq!(approve["stage"], "approve");
    assert_eq!(approve["reviewers"], serde_json::json!(["alice", "carol"]));

    // Another pass changes nothing: never published twice.
    let before = std::fs::read(site.store.join("audit.jsonl")).unwrap();
    let o = site.run_once(&config);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert_eq!(
        std::fs::read(site.store.join("audit.jsonl")).unwrap(),
        before
    );

    // The high side sent nothing toward the low side: not the receiver, not promote, not the
    // registry traffic (all on the high namespace's loopback).
    let (code, _) = listener.stop();
    assert_eq!(code, 0);
    drop(reg);
    let ds = site.diode.as_ref().unwrap().status().expect("diode status");
    assert_eq!(ds.egress_to_low_side_packets, 0, "{ds:?}");
    assert_eq!(ds.egress_frames_dropped, 0, "{ds:?}");
    println!(
        "{NAME}: bundle {id} ({} frames) crossed the diode in {:.1}s and was published to apt, \
         oci ({}), dir; {} promotion audit records; {:.1}s in all",
        report["frames"],
        t_crossed.as_secs_f64(),
        site.image_digest,
        recs.len(),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn promote_infected_file_stops_at_scan() {
    if !tools_or_skip("promote_infected_file_stops_at_scan") {
        return;
    }
    let site = Site::new();
    let config = site.config();
    let id = site.deliver(1, &[("tool.bin", &infected_bytes())]);
    site.review("alice", &id, None);
    site.review("bob", &id, None);
    let o = site.run_once(&config);
    assert_eq!(o.status.code(), Some(6), "{}", output_text(&o));
    let st = site.status(&id);
    assert_eq!(st["stage"], "stopped", "{st}");
    let reason = st["reason"].as_str().unwrap();
    assert!(reason.starts_with("scan:"), "{reason}");
    assert!(reason.contains("Sluice.Test.Infected"), "{reason}");
    site.assert_nothing_published(&id);
    // Terminal: later passes leave it stopped.
    let o = site.run_once(&config);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert_eq!(site.status(&id)["stage"], "stopped");
    site.audit_verify();
    let recs = site.promote_records(&id);
    assert!(
        recs.iter()
            .any(|(d, r, _)| d == "promote_scan" && r == "failed"),
        "{recs:?}"
    );
}

#[test]
fn promote_untrusted_and_missing_approvals_wait_then_reject_stops() {
    if !tools_or_skip("promote_untrusted_and_missing_approvals_wait_then_reject_stops") {
        return;
    }
    let site = Site::new();
    let config = site.config();
    let id = site.deliver(1, &[]);
    // One approval of two.
    site.review("alice", &id, None);
    let o = site.run_once(&config);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let st = site.status(&id);
    assert_eq!(st["stage"], "approve", "{st}");
    assert!(
        st["waiting_for"]
            .as_str()
            .unwrap()
            .contains("1 of 2 (alice)"),
        "{st}"
    );
    site.assert_nothing_published(&id);
    // A second approval, by a key outside the reviewer trust directory, does not count.
    site.review("mallory", &id, None);
    let o = site.run_once(&config);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let st = site.status(&id);
    assert_eq!(st["stage"], "approve", "{st}");
    let w = st["waiting_for"].as_str().unwrap();
    assert!(
        w.contains("1 of 2") && w.contains("not in the reviewer trust directory"),
        "{w}"
    );
    site.assert_nothing_published(&id);
    // A trusted reviewer rejects: stopped at approve, for good.
    site.review("bob", &id, Some("not ordered by the site"));
    let o = site.run_once(&config);
    assert_eq!(o.status.code(), Some(6), "{}", output_text(&o));
    let st = site.status(&id);
    assert_eq!(st["stage"], "stopped", "{st}");
    let reason = st["reason"].as_str().unwrap();
    assert!(
        reason.contains("rejected by reviewer bob: not ordered by the site"),
        "{reason}"
    );
    site.assert_nothing_published(&id);
    site.audit_verify();
}

#[test]
fn promote_registry_down_retries_and_never_half_publishes() {
    if !tools_or_skip("promote_registry_down_retries_and_never_half_publishes") {
        return;
    }
    let site = Site::new();
    let config = site.config();
    let id = site.deliver(1, &[]);
    site.review("alice", &id, None);
    site.review("bob", &id, None);
    let retries = || {
        site.promote_records(&id)
            .into_iter()
            .filter(|(_, r, _)| r == "retry")
            .count()
    };
    // No registry yet.
    for _ in 0..2 {
        let o = site.run_once(&config);
        assert_eq!(o.status.code(), Some(7), "{}", output_text(&o));
        let st = site.status(&id);
        assert_eq!(st["stage"], "publish", "{st}");
        let w = st["waiting_for"].as_str().unwrap();
        assert!(w.starts_with("publish retry: oci:"), "{w}");
        assert!(w.contains("unreachable"), "{w}");
        let reason = st["reason"].as_str().unwrap();
        assert!(reason.contains("unreachable"), "{reason}");
        site.assert_nothing_published(&id);
    }
    assert_eq!(
        retries(),
        1,
        "a retry reason is audited once, not once per pass"
    );
    // Something that is not (yet) a registry holds the port: it accepts connections and answers
    // GET /v2/ with 503. A TCP connect would pass here and apt would be published before skopeo
    // failed; the distribution API check keeps every target untouched.
    let impostor = Impostor::start(site.registry_port);
    let o = site.run_once(&config);
    assert_eq!(o.status.code(), Some(7), "{}", output_text(&o));
    let st = site.status(&id);
    assert_eq!(st["stage"], "publish", "{st}");
    let w = st["waiting_for"].as_str().unwrap();
    assert!(
        w.contains("GET /v2/") && w.contains("503 Service Unavailable"),
        "{w}"
    );
    site.assert_nothing_published(&id);
    assert!(impostor.stop() >= 1, "the check never asked the impostor");
    assert_eq!(retries(), 2, "the new reason is audited once");
    // The registry comes back: the next pass publishes everything.
    let _reg = site.registry();
    let o = site.run_once(&config);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert_eq!(site.status(&id)["stage"], "published");
    let done = site
        .promote_records(&id)
        .into_iter()
        .filter(|(_, r, _)| r == "target_done")
        .count();
    assert_eq!(done, 3);
    site.audit_verify();
}

#[test]
fn promote_sigkill_between_targets_completes_exactly_once() {
    if !tools_or_skip("promote_sigkill_between_targets_completes_exactly_once") {
        return;
    }
    let site = Site::new();
    let config = site.config();
    let _reg = site.registry();
    let id = site.deliver(1, &[]);
    site.review("alice", &id, None);
    site.review("carol", &id, None);
    let mut child = site
        .promote()
        .env("SLUICE_PROMOTE_TEST_HOOK", "pause-after-target:1")
        .arg("run")
        .arg("--store")
        .arg(&site.store)
        .arg("--config")
        .arg(&config)
        .arg("--once")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let l = lines
            .next()
            .expect("sluice-promote ended before the test hook")
            .unwrap();
        if l.contains("test hook: after target 1") {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let st = site.status(&id);
    assert_eq!(st["stage"], "publish", "{st}");
    assert_eq!(st["published"].as_array().unwrap().len(), 1, "{st}");
    assert!(
        st["published"][0].as_str().unwrap().starts_with("apt:"),
        "status names the one target done: {st}"
    );
    assert!(
        !site.share.join(&id).exists(),
        "dir target published before the restart"
    );
    // Restart: completes the remaining targets, the first one is not published again.
    let o = site.run_once(&config);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let st = site.status(&id);
    assert_eq!(st["stage"], "published", "{st}");
    let recs = site.promote_records(&id);
    let done: Vec<&str> = recs
        .iter()
        .filter(|(_, r, _)| r == "target_done")
        .map(|(_, _, d)| d.split(':').next().unwrap())
        .collect();
    assert_eq!(done, vec!["apt", "oci", "dir"], "{recs:?}");
    assert_eq!(
        recs.iter().filter(|(_, r, _)| r == "published").count(),
        1,
        "{recs:?}"
    );
    let pool_files = blake3_tree(&site.repo.join("pool")).unwrap();
    assert_eq!(pool_files.len(), 2, "{pool_files:?}");
    site.audit_verify();
}

/// The receiver keeps running (holding `DIR/.lock`) while sluice-promote scans, publishes and
/// appends to the same audit log; bundles arriving over loopback UDP before and after continue
/// one chain, which `sluice-recv audit verify` accepts.
#[test]
fn promote_alongside_a_running_listener_keeps_one_chain() {
    if !tools_or_skip("promote_alongside_a_running_listener_keeps_one_chain") {
        return;
    }
    let site = Site::new();
    let config = site.config();
    let _reg = site.registry();
    let addr = free_udp_addr();
    let mut l = Listener::start(
        Command::new(&site.bins.recv),
        &ListenOptions::new(addr, &site.store, &site.trust),
    );
    let send = |path: &Path| {
        let args = e2e::udp_args(addr, &site.trust, "200M");
        e2e::send_udp(Command::new(&site.bins.send), &args, &[path]);
    };
    let (id1, b1) = site.make_bundle(1, &[]);
    send(&b1);
    let outcomes = l.wait_outcomes(1, Duration::from_secs(300)).to_vec();
    assert_eq!(outcomes[0]["outcome"], "accepted", "{outcomes:?}");
    site.review("alice", &id1, None);
    site.review("bob", &id1, None);
    let o = site.run_once(&config);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert_eq!(site.status(&id1)["stage"], "published");
    // The listener appends after promote did: its chain continues from promote's records.
    let (id2, b2) = site.make_bundle(2, &[("extra.txt", b"second")]);
    send(&b2);
    let outcomes = l.wait_outcomes(2, Duration::from_secs(300)).to_vec();
    assert_eq!(outcomes[1]["outcome"], "accepted", "{outcomes:?}");
    let o = site.run_once(&config);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert_eq!(site.status(&id2)["stage"], "approve");
    let (code, _) = l.stop();
    assert_eq!(code, 0);
    site.audit_verify();
    let text = std::fs::read_to_string(site.store.join("audit.jsonl")).unwrap();
    let decisions: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["outcome"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let first_promote = decisions
        .iter()
        .position(|d| d.starts_with("promote_"))
        .unwrap();
    let last_accept = decisions.iter().rposition(|d| d == "accepted").unwrap();
    assert!(
        first_promote < last_accept,
        "records did not interleave: {decisions:?}"
    );
}

/// `keep_versions = 1`: a newer version of a package replaces the older one in the index and
/// the pool (after the signed index no longer lists it); apt-get then downloads the newer one.
#[test]
fn promote_apt_keeps_the_configured_number_of_versions() {
    if !tools_or_skip("promote_apt_keeps_the_configured_number_of_versions") {
        return;
    }
    let site = Site::new();
    let text = std::fs::read_to_string(site.config()).unwrap();
    let oci_start = text.find("[[pipeline.publish]]\nkind = \"oci\"").unwrap();
    let dir_start = text.find("[[pipeline.publish]]\nkind = \"dir\"").unwrap();
    let text = format!("{}{}", &text[..oci_start], &text[dir_start..]).replace(
        "component = \"main\"\n",
        "component = \"main\"\nkeep_versions = 1\n",
    );
    let config = site.ts.write("promote-keep1.toml", text.as_bytes());
    let id1 = site.deliver(1, &[]);
    site.review("alice", &id1, None);
    site.review("bob", &id1, None);
    let o = site.run_once(&config);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let newer = build_deb_version(
        &site.ts.subdir("build2"),
        "sluice-test-lib",
        "2.0-1",
        None,
        &site.ts.subdir("debs2"),
    );
    let newer_bytes = std::fs::read(&newer).unwrap();
    let id2 = site.deliver(2, &[("debs/sluice-test-lib_2.0-1_all.deb", &newer_bytes)]);
    site.review("alice", &id2, None);
    site.review("carol", &id2, None);
    let o = site.run_once(&config);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert_eq!(site.status(&id2)["stage"], "published");
    let packages =
        std::fs::read_to_string(site.repo.join("dists/internal/main/binary-amd64/Packages"))
            .unwrap();
    assert!(packages.contains("Version: 2.0-1"), "{packages}");
    assert!(
        !packages.contains("sluice-test-lib_1.0-1_all.deb"),
        "old version still indexed: {packages}"
    );
    let pool: Vec<String> = blake3_tree(&site.repo.join("pool"))
        .unwrap()
        .into_keys()
        .collect();
    assert_eq!(
        pool,
        vec![
            "internal/main/sluice-test-app/sluice-test-app_1.0-1_all.deb".to_string(),
            "internal/main/sluice-test-lib/sluice-test-lib_2.0-1_all.deb".to_string(),
        ]
    );
    let apt = AptClient::new(&site.ts.subdir("apt-client"), &site.repo, &site.keyring);
    let o = apt.apt(&["update"]);
    assert!(o.status.success(), "apt-get update: {}", output_text(&o));
    let o = apt.apt(&["download", "sluice-test-lib"]);
    assert!(o.status.success(), "apt-get download: {}", output_text(&o));
    assert_eq!(
        std::fs::read(apt.dir.join("download/sluice-test-lib_2.0-1_all.deb")).unwrap(),
        newer_bytes
    );
    site.audit_verify();
}

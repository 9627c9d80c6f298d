//! A secret link key by default (`host/src/linkkey.rs`): `listen` refuses the public default key
//! on a non-loopback address unless `--insecure-public-link-key` is given, before it creates the
//! store; loopback stays allowed; a missing key file is exit 3 with a help line; `status
//! --config` fails the same way `listen` would; and frames under another key are never accepted.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use sluice_tests::e2e::{self, bins};
use sluice_tests::listener::{ListenOptions, Listener, wait_until};
use sluice_tests::{TempStore, free_udp_addr, output_text};

fn recv(args: &[&str], extra: &[&Path]) -> Output {
    Command::new(&bins().recv)
        .args(args)
        .args(extra)
        .output()
        .expect("run sluice-recv")
}

/// `sluice-recv listen --bind BIND --store STORE --trust TRUST [--link-key KEY]` for the checks
/// that refuse before the listener starts: returns its output once it has exited.
fn listen_once(bind: &str, store: &Path, trust: &Path, link_key: Option<&Path>) -> Output {
    let mut cmd = Command::new(&bins().recv);
    cmd.args(["listen", "--bind", bind, "--store"])
        .arg(store)
        .arg("--trust")
        .arg(trust);
    if let Some(key) = link_key {
        cmd.arg("--link-key").arg(key);
    }
    cmd.output().expect("run sluice-recv listen")
}

/// The help line names the command that makes a key and where it goes.
fn assert_keygen_help(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().any(|l| l.starts_with("help:")
            && l.contains("sluice-send link-keygen --out")
            && l.contains("high side")),
        "{}",
        output_text(out)
    );
}

struct World {
    ts: TempStore,
    trust: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn world() -> World {
    let ts = TempStore::new();
    let (key, public) = e2e::keygen(&ts.path().join("keys"), "officer");
    let trust = e2e::trust_dir(&ts.path().join("trust"), &[&public]);
    World { ts, trust, key }
}

#[test]
fn listen_refuses_the_public_key_on_a_non_loopback_bind_before_creating_the_store() {
    let w = world();
    let store = w.ts.path().join("store");
    let out = listen_once("0.0.0.0:0", &store, &w.trust, None);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to run on the public link key") && err.contains("0.0.0.0"),
        "{err}"
    );
    assert!(err.contains("--insecure-public-link-key"), "{err}");
    assert_keygen_help(&out);
    assert!(!store.exists(), "nothing created before the refusal");

    // A file that holds the public default key is the public key.
    let public = w.ts.path().join("public.key");
    std::fs::write(
        &public,
        sluice_common::transport::wire::LinkKey::public_default().as_bytes(),
    )
    .unwrap();
    let out = listen_once("0.0.0.0:0", &store, &w.trust, Some(&public));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(!store.exists());
}

#[test]
fn listen_allows_the_public_key_on_loopback_and_with_the_flag() {
    let w = world();
    // Loopback without a key: the demo and the tests' own listeners.
    let opts = ListenOptions::new(free_udp_addr(), &w.ts.path().join("s1"), &w.trust);
    let l = Listener::start(Command::new(&bins().recv), &opts);
    assert_eq!(l.stop().0, 0);
    // Any address with the explicit flag.
    let mut opts = ListenOptions::new(
        "0.0.0.0:0".parse().unwrap(),
        &w.ts.path().join("s2"),
        &w.trust,
    );
    opts.extra = vec!["--insecure-public-link-key".into()];
    let l = Listener::start(Command::new(&bins().recv), &opts);
    assert!(
        l.log_text().contains("public default key"),
        "the insecure mode is still warned about: {}",
        l.log_text()
    );
    assert_eq!(l.stop().0, 0);
}

#[test]
fn a_missing_link_key_file_is_exit_3_with_a_help_line_for_listen_and_status() {
    let w = world();
    let missing = w.ts.path().join("etc/sluice/link.key");
    let store = w.ts.path().join("store");
    let out = listen_once("127.0.0.1:0", &store, &w.trust, Some(&missing));
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read link key"),
        "{}",
        output_text(&out)
    );
    assert_keygen_help(&out);
    assert!(!store.exists());

    // `status --config` is how the docs say to check the unit's file: it must not pass.
    std::fs::create_dir_all(&store).unwrap();
    let config = w.ts.path().join("recv.toml");
    let write_config = |body: &str| {
        std::fs::write(
            &config,
            format!(
                "[listen]\nbind = \"10.0.0.2:7000\"\nstore = \"{}\"\ntrust = \"{}\"\n{body}",
                store.display(),
                w.trust.display()
            ),
        )
        .unwrap()
    };
    write_config(&format!("link_key = \"{}\"\n", missing.display()));
    let status = |config: &Path| recv(&["--config"], &[config, Path::new("status")]);
    let out = status(&config);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert_keygen_help(&out);
    // No key at all on a non-loopback bind: what `listen` would refuse.
    write_config("");
    let out = status(&config);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert_keygen_help(&out);
    // The key made by link-keygen: status passes.
    std::fs::create_dir_all(missing.parent().unwrap()).unwrap();
    e2e::link_keygen(&missing);
    write_config(&format!("link_key = \"{}\"\n", missing.display()));
    let out = status(&config);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}

/// The sender and the receiver hold different secret keys: every frame is a counted `bad_tag`
/// drop, nothing is accepted; the same bundle with the right key is accepted.
#[test]
fn mismatched_link_keys_accept_nothing() {
    let w = world();
    let recv_key = w.ts.path().join("recv.key");
    let send_key = w.ts.path().join("send.key");
    e2e::link_keygen(&recv_key);
    e2e::link_keygen(&send_key);
    let src = w.ts.subdir("src/payload");
    e2e::mixed_tree(&src, 256 << 10, 3);
    let bundle = e2e::make_bundle(&w.key, "updates", 1, &src, &w.ts.path().join("b.sluice"));

    let addr: SocketAddr = free_udp_addr();
    let store = w.ts.path().join("store");
    let mut opts = ListenOptions::new(addr, &store, &w.trust);
    opts.extra = vec!["--link-key".into(), recv_key.display().to_string()];
    let mut l = Listener::start(Command::new(&bins().recv), &opts);
    let send = |key: &Path| {
        let mut args = e2e::udp_args(addr, &w.trust, "100M");
        args.extend(["--link-key".into(), key.display().to_string()]);
        e2e::send_udp(Command::new(&bins().send), &args, &[&bundle.path]).0
    };
    let report = send(&send_key);
    let frames = report["frames"].as_u64().unwrap();
    // Every frame the sender wrote reached the listener and failed its tag (or was dropped by
    // the kernel, counted too); only then is "nothing accepted" a fact, not a race.
    let all_seen = wait_until(Duration::from_secs(60), || {
        let s = l.status();
        s["counters"]["bad_tag"].as_u64().unwrap_or(0) + s["kernel_drops"].as_u64().unwrap_or(0)
            >= frames
    });
    assert!(all_seen, "{frames} frames sent; status {}", l.status());
    assert_eq!(l.status_counter("symbols_accepted"), 0, "{}", l.status());
    assert!(l.poll_outcomes().is_empty(), "{:?}", l.outcomes);
    let quarantine = store.join("quarantine");
    assert_eq!(std::fs::read_dir(&quarantine).unwrap().count(), 0);

    send(&recv_key);
    let outcomes = l.wait_outcomes(1, Duration::from_secs(120)).to_vec();
    assert_eq!(outcomes[0]["outcome"], "accepted", "{outcomes:?}");
    assert_eq!(outcomes[0]["bundle_id"], bundle.id.as_str());
    assert_eq!(l.stop().0, 0);
}

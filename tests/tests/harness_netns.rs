//! The namespace diode emulator itself: low → high crosses, high → low is dropped and counted,
//! emulated loss moves its counter, and teardown leaves nothing behind.
//! Needs root, `ip`, `nft` and `ethtool`: skipped with a reason otherwise, failed under CI=true.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_tests::{DiodeOptions, Netns, Side, require_root_or_skip};

const PORT: u16 = 9400;

/// Receive on the high side until `n` datagrams arrived or the link has been quiet for 500 ms.
fn receive(d: &Netns, n: u64) -> std::thread::JoinHandle<u64> {
    let addr = SocketAddr::from((d.rx_addr, PORT));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = d
        .run_in(Side::Rx, move || {
            let s = UdpSocket::bind(addr).expect("bind on the high side");
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut got = 0;
            let mut buf = [0u8; 2048];
            while got < n {
                match s.recv(&mut buf) {
                    Ok(_) => got += 1,
                    Err(_) => break,
                }
            }
            got
        })
        .expect("thread in rx namespace");
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("receiver ready");
    h
}

fn send(d: &Netns, side: Side, to: SocketAddr, n: u64) -> Vec<std::io::Result<usize>> {
    d.run_in(side, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        (0..n)
            .map(|i| {
                if i % 50 == 49 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                s.send_to(&[0x5a; 200], to)
            })
            .collect()
    })
    .expect("thread in namespace")
    .join()
    .expect("sender thread")
}

fn ns_list() -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

#[test]
fn diode_is_one_way_and_counts() {
    if !require_root_or_skip("diode_is_one_way_and_counts") {
        return;
    }
    let mut d = Netns::up(&DiodeOptions::default()).expect("diode up");
    assert!(ns_list().contains(&d.tx_ns));
    let st = d.status().unwrap();
    assert!(st.up);
    assert_eq!(
        st.egress_to_low_side_packets, 0,
        "nothing may have left the high side yet"
    );

    // Low → high arrives.
    let rx = receive(&d, 100);
    let sent = send(&d, Side::Tx, SocketAddr::from((d.rx_addr, PORT)), 100);
    assert!(sent.iter().all(|r| r.is_ok()), "{sent:?}");
    assert_eq!(
        rx.join().unwrap(),
        100,
        "every datagram low → high must arrive on a lossless diode"
    );
    assert_eq!(d.status().unwrap().egress_to_low_side_packets, 0);

    // High → low is dropped in the high side's output hook and counted (sendto sees EPERM).
    let back = send(&d, Side::Rx, SocketAddr::from((d.tx_addr, PORT)), 5);
    assert!(
        back.iter().all(|r| r.is_err()),
        "high → low must fail: {back:?}"
    );
    let st = d.status().unwrap();
    assert_eq!(st.egress_to_low_side_packets, 5, "{st:?}");
    let json = d.status_json().unwrap();
    assert_eq!(json["egress_to_low_side_packets"], 5);
    assert_eq!(json["loss_drops"], 0);

    let (tx, rx) = (d.tx_ns.clone(), d.rx_ns.clone());
    d.down().unwrap();
    d.down().unwrap(); // idempotent
    let l = ns_list();
    assert!(
        !l.contains(&tx) && !l.contains(&rx),
        "namespaces left behind: {l}"
    );
}

#[test]
fn diode_loss_is_counted() {
    if !require_root_or_skip("diode_loss_is_counted") {
        return;
    }
    let d = Netns::up(&DiodeOptions {
        loss_pct: Some(20.0),
        ..Default::default()
    })
    .expect("diode up");
    let rx = receive(&d, 1000);
    let t = Instant::now();
    let sent = send(&d, Side::Tx, SocketAddr::from((d.rx_addr, PORT)), 1000);
    assert!(sent.iter().all(|r| r.is_ok()));
    let got = rx.join().unwrap();
    let st = d.status().unwrap();
    assert!(
        st.loss_drops > 100 && st.loss_drops < 300,
        "{st:?} after {:?}",
        t.elapsed()
    );
    assert_eq!(
        got + st.loss_drops,
        1000,
        "every datagram either arrives or is counted as lost"
    );
    assert_eq!(st.egress_to_low_side_packets, 0);
}

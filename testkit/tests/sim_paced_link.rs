//! The pacer through the simulated link (the token bucket itself is tested in
//! `common/tests/sim_pacer.rs`): a paced transfer takes the virtual time its wire bytes allow.

use std::time::Duration;

use sluice_common::transport::pacer::IP_UDP_OVERHEAD;
use sluice_common::transport::recv::{Receiver, ReceiverConfig};
use sluice_common::transport::send::{Sender, SenderConfig};
use sluice_testkit::impair::ImpairConfig;
use sluice_testkit::sim::{Outcome, Sim, key, oid};

/// A paced sender through the simulated link: the virtual time the transfer takes matches its
/// wire bytes (frames + 28 bytes IP/UDP each) divided by the rate, less one burst.
#[test]
fn paced_sender_holds_its_rate_end_to_end() {
    let rate = 20_000_000u64;
    let mut sim = Sim::new(
        Receiver::new(ReceiverConfig::new(key())),
        ImpairConfig::default(),
    );
    sim.frame_time = Duration::ZERO;
    let mut c = SenderConfig::new(key(), [1; 16], 1414, 742 * 1414);
    c.rate_bytes_per_sec = Some(rate);
    let s = sim.add_sender(Sender::new(c, sim.now, 0).expect("sender"));
    let len = 8u64 << 20;
    sim.queue(s, oid(1), len, 1);
    let t0 = sim.now;
    sim.run();
    let elapsed = sim.now - t0 - Duration::from_secs(3); // minus the receiver's settle
    let st = sim.senders[s].sender.stats();
    let wire = st.bytes + st.frames * IP_UDP_OVERHEAD as u64;
    let burst = 64 * (1414 + 58 + IP_UDP_OVERHEAD as u64);
    let expected = Duration::from_secs_f64((wire - burst) as f64 / rate as f64);
    let ratio = elapsed.as_secs_f64() / expected.as_secs_f64();
    assert!(
        (0.97..1.03).contains(&ratio),
        "elapsed {elapsed:?} expected {expected:?}"
    );
    assert_eq!(sim.log(&oid(1)).outcomes, vec![Outcome::Complete { len }]);
}

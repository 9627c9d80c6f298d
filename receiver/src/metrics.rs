//! Prometheus text exposition and the status page on a management address (`--metrics ADDR`).
//!
//! This endpoint answers HTTP on a TCP socket the operator binds to a management interface or
//! loopback; it is never on the diode-facing interface, which stays receive-only. The server
//! itself (hyper on a small tokio runtime of its own, with per-connection deadlines and a
//! connection cap) lives in [`crate::http`]; this module keeps the listener's side of it: the
//! page the listener loop refreshes and the exposition builder.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::status_view::TransferView;

/// The latest rendered exposition text, replaced by the listener loop as counters move, and
/// the store the status page reports on.
#[derive(Clone, Default)]
pub struct MetricsPage {
    text: Arc<Mutex<String>>,
    store: Option<Arc<PathBuf>>,
    transfers: Arc<Mutex<Option<Vec<TransferView>>>>,
}

impl MetricsPage {
    /// A page that also serves `/` and `/status.json` from what the listener persists in
    /// `store` (see [`crate::status_view`]).
    pub fn for_store(store: &Path) -> Self {
        MetricsPage {
            store: Some(Arc::new(store.to_path_buf())),
            ..MetricsPage::default()
        }
    }

    pub fn set(&self, text: String) {
        if let Ok(mut page) = self.text.lock() {
            *page = text;
        }
    }

    /// Transfers in flight as the listener loop sees them (live block states, loss, repair
    /// margin), replacing the page's own view from the checkpoints in staging. Not called yet:
    /// the pipeline does not expose per-block state (see `crate::status_view`).
    pub fn set_transfers(&self, transfers: Vec<TransferView>) {
        if let Ok(mut t) = self.transfers.lock() {
            *t = Some(transfers);
        }
    }

    pub(crate) fn transfers(&self) -> Option<Vec<TransferView>> {
        self.transfers.lock().ok().and_then(|t| t.clone())
    }

    pub(crate) fn get(&self) -> String {
        self.text.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub(crate) fn store(&self) -> Option<PathBuf> {
        self.store.as_deref().cloned()
    }
}

/// Builds exposition text: `# HELP`/`# TYPE` once per family, then samples.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        self.family(name, help, "counter");
        self.text.push_str(&format!("{name} {value}\n"));
        self
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, help, "gauge");
        self.text.push_str(&format!("{name} {value}\n"));
        self
    }

    /// One family with a label per sample, e.g. bundles rejected by reason.
    pub fn labelled_counter(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        samples: &[(String, u64)],
    ) -> &mut Self {
        self.family(name, help, "counter");
        for (value_label, value) in samples {
            let escaped = value_label.replace('\\', "\\\\").replace('"', "\\\"");
            self.text
                .push_str(&format!("{name}{{{label}=\"{escaped}\"}} {value}\n"));
        }
        self
    }

    fn family(&mut self, name: &str, help: &str, kind: &str) {
        self.text
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::serve;
    use std::io::{Read, Write};
    use std::net::SocketAddr;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// GETs /metrics every `pause` until the server answers 200 or `within` has passed: the 200
    /// answer, or empty. Both slow-client tests wait this way for a slot to free up.
    fn metrics_once_served(addr: SocketAddr, pause: Duration, within: Duration) -> String {
        let start = Instant::now();
        let mut answered = String::new();
        while start.elapsed() < within {
            std::thread::sleep(pause);
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
            let _ = s.read_to_string(&mut answered);
            if answered.starts_with("HTTP/1.1 200") {
                break;
            }
            answered.clear();
        }
        answered
    }

    #[test]
    fn serves_the_current_page_and_404s_the_rest() {
        let page = MetricsPage::default();
        let mut exposition = Exposition::default();
        exposition
            .counter("sluice_frames_ok_total", "Frames accepted.", 7)
            .labelled_counter(
                "sluice_bundles_rejected_total",
                "Bundles rejected by reason.",
                "reason",
                &[("bad_signature".into(), 2)],
            );
        page.set(exposition.finish());
        let addr = serve("127.0.0.1:0".parse().unwrap(), page).unwrap();
        let get = |path: &str| get(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        let ok = get("/metrics");
        assert!(ok.starts_with("HTTP/1.1 200"));
        assert!(ok.contains("sluice_frames_ok_total 7\n"));
        assert!(ok.contains("sluice_bundles_rejected_total{reason=\"bad_signature\"} 2\n"));
        assert!(get("/admin").starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn read_only_and_a_slow_client_cannot_hold_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let page = MetricsPage::for_store(dir.path());
        page.set("sluice_datagrams_total 1\n".into());
        let addr = serve("127.0.0.1:0".parse().unwrap(), page).unwrap();
        let post = get(
            addr,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        // Slow clients that never finish their request: more than the connection cap of them.
        let idle: Vec<TcpStream> = (0..crate::http::MAX_CONNECTIONS + 4)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
                s
            })
            .collect();
        // Each is cut off at the deadline, so the server answers again soon after.
        let start = Instant::now();
        let answered =
            metrics_once_served(addr, Duration::from_millis(200), Duration::from_secs(15));
        assert!(answered.contains("sluice_datagrams_total 1"), "{answered}");
        assert!(start.elapsed() < crate::http::CONNECTION_DEADLINE + Duration::from_secs(5));
        drop(idle);
        // The store-derived gauges follow the listener's.
        assert!(answered.contains("sluice_audit_chain_ok 1"), "{answered}");
        let json = get(addr, "GET /status.json HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            json.starts_with("HTTP/1.1 200") && json.contains("application/json"),
            "{json}"
        );
        let html = get(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            html.contains("Content-Security-Policy") || html.contains("content-security-policy")
        );
        assert!(html.contains("<h1>Sluice receiver</h1>"), "{html}");
    }

    #[test]
    fn live_transfers_from_the_listener_replace_the_checkpoint_view() {
        use crate::status_view::BlockState;
        let dir = tempfile::tempdir().unwrap();
        let page = MetricsPage::for_store(dir.path());
        page.set_transfers(vec![TransferView {
            object: "0f".repeat(16),
            blocks: vec![
                BlockState::Complete,
                BlockState::Decoding,
                BlockState::Missing,
            ],
            blocks_total: 3,
            blocks_missing: 2,
            ..TransferView::default()
        }]);
        let addr = serve("127.0.0.1:0".parse().unwrap(), page).unwrap();
        let json = get(addr, "GET /status.json HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(json.contains("\"block_map\": \"cdm\""), "{json}");
        let html = get(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(html.contains("<span class=\"decoding\"></span>"), "{html}");
        assert!(html.contains("1 / 3"), "{html}");
    }

    #[test]
    fn clients_sending_one_byte_per_second_are_cut_off_and_others_are_served() {
        let page = MetricsPage::default();
        page.set("sluice_datagrams_total 5\n".into());
        let addr = serve("127.0.0.1:0".parse().unwrap(), page).unwrap();
        // More trickling clients than connection slots, each sending a never-ending request
        // head one byte per second, until the server closes on it.
        let trickle: Vec<_> = (0..crate::http::MAX_CONNECTIONS + 2)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    let head = b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
                    let mut sent = 0;
                    for b in head {
                        if s.write_all(&[*b]).is_err() {
                            break;
                        }
                        sent += 1;
                        std::thread::sleep(Duration::from_secs(1));
                        // A closed connection shows as EOF on a non-blocking peek.
                        s.set_nonblocking(true).unwrap();
                        let mut one = [0u8; 1];
                        let closed = matches!(s.read(&mut one), Ok(0));
                        s.set_nonblocking(false).unwrap();
                        if closed {
                            break;
                        }
                    }
                    sent
                })
            })
            .collect();
        // A normal client is answered while they trickle.
        let answered =
            metrics_once_served(addr, Duration::from_millis(500), Duration::from_secs(30));
        assert!(answered.contains("sluice_datagrams_total 5"), "{answered}");
        // Every trickler was cut off long before its head was complete: the server's total
        // deadline per connection, not the client, decided when the connection ended.
        for t in trickle {
            let sent = t.join().unwrap();
            assert!(
                sent < 40,
                "a one-byte-per-second client held a connection for {sent} bytes"
            );
        }
    }
}

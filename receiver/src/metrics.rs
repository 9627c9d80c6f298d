//! Prometheus text exposition on a management address (`--metrics ADDR`).
//!
//! This endpoint answers HTTP on a TCP socket the operator binds to a management interface or
//! loopback; it is never on the diode-facing interface, which stays receive-only. It is a few
//! dozen lines over std because it serves one read-only page: a web framework would be more code
//! to trust than the page itself. Requests are bounded (read at most 8 KiB, 2 s timeouts, one at
//! a time), so a misbehaving scraper cannot hold the receiver's memory or threads.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The latest rendered exposition text, replaced by the listener loop as counters move.
#[derive(Clone, Default)]
pub struct MetricsPage(Arc<Mutex<String>>);

impl MetricsPage {
    pub fn set(&self, text: String) {
        if let Ok(mut page) = self.0.lock() {
            *page = text;
        }
    }

    fn get(&self) -> String {
        self.0.lock().map(|p| p.clone()).unwrap_or_default()
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

/// Serves `page` on `addr` from a background thread until the process exits.
pub fn serve(addr: SocketAddr, page: MetricsPage) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &page);
            }
        })?;
    Ok(bound)
}

fn answer(mut stream: TcpStream, page: &MetricsPage) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut request = [0u8; 8192];
    let mut len = 0;
    while len < request.len() {
        let n = stream.read(&mut request[len..])?;
        if n == 0 {
            break;
        }
        len += n;
        if request[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let first_line = request[..len].split(|&b| b == b'\n').next().unwrap_or(&[]);
    let (status, body) =
        if first_line.starts_with(b"GET /metrics ") || first_line.starts_with(b"GET / ") {
            ("200 OK", page.get())
        } else {
            (
                "404 Not Found",
                "only GET /metrics is served here\n".to_string(),
            )
        };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let get = |path: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let ok = get("/metrics");
        assert!(ok.starts_with("HTTP/1.1 200"));
        assert!(ok.contains("sluice_frames_ok_total 7\n"));
        assert!(ok.contains("sluice_bundles_rejected_total{reason=\"bad_signature\"} 2\n"));
        assert!(get("/admin").starts_with("HTTP/1.1 404"));
    }
}

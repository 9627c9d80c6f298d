//! Is the OCI registry up and speaking the distribution API? Checked before any target of a
//! bundle is touched, so a registry that is down, still starting, or not a registry at all
//! leaves the bundle in `publish` with nothing published (instead of failing at `skopeo copy`
//! after the apt target already went out).
//!
//! The check is the distribution spec's API version check: `GET /v2/` must answer `200` (no
//! authentication) or `401` (authentication required; skopeo brings the credentials). A plain
//! TCP connect is not enough: a proxy, a half-started registry or another service on the port
//! accepts connections and fails the push.
//!
//! With `tls_verify = false` the check speaks plain HTTP itself (std only). A registry that
//! answers it as a TLS server, and every registry with `tls_verify = true`, is checked through
//! skopeo instead (this crate has no TLS stack): containers/image pings `/v2/` before any other
//! request and reports a failed ping as "pinging container registry …", which is what marks the
//! registry down; any other answer (such as "manifest unknown") means `/v2/` answered.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use super::tool;

/// Connect, write and read timeout of the check, each. Worst case a dead registry costs one
/// pass this long per resolved address before the bundle is left waiting.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of the answer read at most. Only the status line is used; the rest (headers, body) is
/// never read, so a hostile or broken server costs at most this buffer.
pub const MAX_PING_ANSWER: usize = 4096;

/// What `GET /v2/` over plain HTTP gave.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// 200 or 401: a registry.
    Registry,
    /// The server speaks TLS (Go's "HTTP request to an HTTPS server" 400, or no HTTP at all).
    Tls,
    /// Any other status line.
    Other(String),
}

/// `HOST:PORT` of `registry` (port 443 if none).
fn host_port(registry: &str) -> String {
    if registry
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        registry.to_string()
    } else {
        format!("{registry}:443")
    }
}

/// The first address that accepts a TCP connection.
fn connect(registry: &str) -> Result<(TcpStream, SocketAddr), String> {
    let addrs = host_port(registry).to_socket_addrs().map_err(|e| {
        format!("registry {registry}: cannot resolve: {e} (check `registry =` in the config)")
    })?;
    let mut last = String::from("no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, PING_TIMEOUT) {
            Ok(s) => return Ok((s, a)),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!(
        "registry {registry} unreachable: {last} (start the registry; the bundle is retried on the next pass)"
    ))
}

/// Classifies the first bytes a server answered to `GET /v2/`.
fn classify(head: &[u8]) -> Answer {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..line_end]);
    let mut parts = line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Answer::Tls;
    };
    if !version.starts_with("HTTP/") {
        // A TLS alert or anything else that is not HTTP.
        return Answer::Tls;
    }
    match code {
        "200" | "401" => Answer::Registry,
        "400" if String::from_utf8_lossy(head).contains("HTTPS server") => Answer::Tls,
        _ => Answer::Other(line.trim().to_string()),
    }
}

/// `GET /v2/` over plain HTTP.
fn ping_http(registry: &str) -> Result<Answer, String> {
    let (mut s, addr) = connect(registry)?;
    let io = |e: std::io::Error| format!("registry {registry} ({addr}): GET /v2/: {e}");
    s.set_read_timeout(Some(PING_TIMEOUT)).map_err(io)?;
    s.set_write_timeout(Some(PING_TIMEOUT)).map_err(io)?;
    let req = format!(
        "GET /v2/ HTTP/1.1\r\nHost: {registry}\r\nUser-Agent: sluice-promote\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).map_err(io)?;
    let mut head = Vec::with_capacity(MAX_PING_ANSWER);
    let mut buf = [0u8; 512];
    while head.len() < MAX_PING_ANSWER && !head.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n.min(MAX_PING_ANSWER - head.len())]),
            Err(e) => return Err(io(e)),
        }
    }
    if head.is_empty() {
        return Err(format!(
            "registry {registry} ({addr}) closed the connection without answering GET /v2/ (is it still starting?)"
        ));
    }
    // Go's TLS server puts its hint in the body; read a little more when it says 400.
    if head.starts_with(b"HTTP/1.0 400") || head.starts_with(b"HTTP/1.1 400") {
        let mut rest = [0u8; 256];
        if let Ok(n) = s.read(&mut rest) {
            head.extend_from_slice(&rest[..n.min(MAX_PING_ANSWER.saturating_sub(head.len()))]);
        }
    }
    Ok(classify(&head))
}

/// The registry answers the distribution API check through skopeo, over TLS. `reference` is
/// any image reference in the registry (`REGISTRY/PREFIX/NAME:TAG`).
fn ping_skopeo(
    registry: &str,
    reference: &str,
    tls_verify: bool,
    env: &[(&str, &Path)],
) -> Result<(), String> {
    connect(registry)?;
    match tool(
        &[
            "skopeo",
            "inspect",
            "--raw",
            &format!("--tls-verify={tls_verify}"),
            &format!("docker://{reference}"),
        ],
        env,
        None,
    ) {
        Ok(_) => Ok(()),
        Err(e) if e.contains("pinging container registry") => Err(format!(
            "registry {registry} does not answer the registry API (GET /v2/ over TLS): {e}"
        )),
        // "manifest unknown", "name unknown": the API answered, the image is simply not there.
        Err(_) => Ok(()),
    }
}

/// Ok when `registry` answers `GET /v2/` with 200 or 401; Err(reason, with what to do) when it
/// is down or is not a registry. `reference` and `env` are used only for a TLS registry.
pub fn check(
    registry: &str,
    tls_verify: bool,
    reference: &str,
    env: &[(&str, &Path)],
) -> Result<(), String> {
    if tls_verify {
        return ping_skopeo(registry, reference, tls_verify, env);
    }
    match ping_http(registry)? {
        Answer::Registry => Ok(()),
        Answer::Tls => ping_skopeo(registry, reference, tls_verify, env),
        Answer::Other(line) => Err(format!(
            "registry {registry} answered GET /v2/ with {line:?}, not 200 or 401: not (yet) a working registry (is `registry =` the registry's HOST:PORT, is it still starting?)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server on loopback answering `answer` to the first request; its port.
    fn serve_once(answer: &'static [u8]) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = vec![0u8; 1024];
            let n = s.read(&mut req).unwrap();
            req.truncate(n);
            let _ = s.write_all(answer);
            req
        });
        (addr, h)
    }

    #[test]
    fn classify_status_lines() {
        assert_eq!(classify(b"HTTP/1.1 200 OK\r\n\r\n{}"), Answer::Registry);
        assert_eq!(
            classify(b"HTTP/1.1 401 Unauthorized\r\nWww-Authenticate: x\r\n"),
            Answer::Registry
        );
        assert_eq!(
            classify(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"),
            Answer::Tls
        );
        assert_eq!(classify(b"\x15\x03\x01\x00\x02\x02\x46"), Answer::Tls);
        assert_eq!(
            classify(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Answer::Other("HTTP/1.1 503 Service Unavailable".into())
        );
        assert_eq!(
            classify(b"HTTP/1.1 404 Not Found"),
            Answer::Other("HTTP/1.1 404 Not Found".into())
        );
    }

    #[test]
    fn a_registry_answering_200_or_401_passes() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\nDocker-Distribution-Api-Version: registry/2.0\r\nContent-Length: 2\r\n\r\n{}"[..],
            &b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"[..],
        ] {
            let (addr, h) = serve_once(answer);
            check(&addr, false, "unused", &[]).unwrap();
            let req = String::from_utf8(h.join().unwrap()).unwrap();
            assert!(req.starts_with("GET /v2/ HTTP/1.1\r\n"), "{req}");
            assert!(req.contains(&format!("Host: {addr}\r\n")), "{req}");
        }
    }

    #[test]
    fn a_listener_that_is_not_a_registry_fails_with_its_answer() {
        let (addr, h) =
            serve_once(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        let e = check(&addr, false, "unused", &[]).unwrap_err();
        h.join().unwrap();
        assert!(e.contains("GET /v2/"), "{e}");
        assert!(e.contains("503 Service Unavailable"), "{e}");
        assert!(e.contains("not 200 or 401"), "{e}");
    }

    #[test]
    fn a_server_that_closes_without_answering_fails() {
        let (addr, h) = serve_once(b"");
        let e = check(&addr, false, "unused", &[]).unwrap_err();
        h.join().unwrap();
        assert!(e.contains("without answering GET /v2/"), "{e}");
    }

    #[test]
    fn nothing_listening_is_unreachable() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = check(&format!("127.0.0.1:{port}"), false, "unused", &[]).unwrap_err();
        assert!(e.contains("unreachable"), "{e}");
    }

    #[test]
    fn an_endless_answer_is_read_only_up_to_the_bound() {
        // No CRLF at all: the reader stops at MAX_PING_ANSWER instead of buffering it all.
        static LONG: [u8; 3 * MAX_PING_ANSWER] = [b'x'; 3 * MAX_PING_ANSWER];
        let (addr, h) = serve_once(&LONG);
        let r = ping_http(&addr);
        h.join().unwrap();
        assert_eq!(r, Ok(Answer::Tls), "not HTTP, so handed to the TLS check");
    }
}

//! The management HTTP endpoint (`listen --metrics ADDR`): `/metrics` (Prometheus text),
//! `/status.json` and `/` (a self-refreshing HTML status page), read-only.
//!
//! hyper's HTTP/1 server on its own single-threaded tokio runtime, on its own thread: nothing
//! here runs on, or waits for, the packet path. The listener loop only replaces the exposition
//! text ([`MetricsPage::set`]); the status snapshot is read from what the listener persists
//! (see [`view`]) by one blocking-pool thread, at most every [`SNAPSHOT_FRESH`] (and never more
//! than a tenth of the time, for stores whose audit log takes long to check), however many
//! clients ask.
//!
//! Bounds, so a slow or hostile client cannot hold the server: every connection has a total
//! deadline ([`CONNECTION_DEADLINE`], headers included, slowloris or slow reader alike), at
//! most [`MAX_CONNECTIONS`] are served at once (more are closed at accept), request heads are
//! capped by hyper's smallest read buffer, bodies are never read, and only GET and HEAD are
//! answered. Nothing changes state.

pub mod page;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Mutex, Semaphore};

use crate::metrics::{Exposition, MetricsPage};
use crate::status_view::{self as view, StatusView};

/// Longest a connection may live, from accept to the last byte written.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// Longest the request head may take to arrive.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(2);
/// Connections served at once; more are closed as they are accepted.
pub const MAX_CONNECTIONS: usize = 16;
/// A status snapshot younger than this is served as is.
pub const SNAPSHOT_FRESH: Duration = Duration::from_secs(1);
/// A snapshot that took T to build stays fresh for at least this many times T.
const SNAPSHOT_DUTY: u32 = 10;

struct Shared {
    page: MetricsPage,
    /// The last snapshot, when it was built and how long building it took.
    snapshot: Mutex<Option<(Instant, Duration, Arc<StatusView>)>>,
}

/// Binds `addr` and serves from a background thread until the process exits.
pub fn serve(addr: SocketAddr, page: MetricsPage) -> io::Result<SocketAddr> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(1)
        .thread_name("metrics-http")
        .build()?;
    let listener = {
        let _context = runtime.enter();
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(std_listener)?
    };
    let bound = listener.local_addr()?;
    let shared = Arc::new(Shared {
        page,
        snapshot: Mutex::new(None),
    });
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || runtime.block_on(accept_loop(listener, shared)))?;
    Ok(bound)
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::debug!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(respond(req, &shared).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .keep_alive(false)
                .max_buf_size(8192)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
            drop(slot);
        });
    }
}

async fn respond(req: Request<Incoming>, shared: &Arc<Shared>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "read-only: GET or HEAD only\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            let mut text = shared.page.get();
            if let Some(view) = snapshot(shared).await {
                text.push_str(&store_metrics(&view));
            }
            with_type(
                StatusCode::OK,
                text,
                "text/plain; version=0.0.4; charset=utf-8",
            )
        }
        "/status.json" => match snapshot(shared).await {
            Some(view) => with_type(
                StatusCode::OK,
                serde_json::to_string_pretty(&view.to_json()).unwrap_or_default(),
                "application/json",
            ),
            None => plain(StatusCode::NOT_FOUND, "no store to report on\n"),
        },
        "/" => {
            let view = snapshot(shared).await.unwrap_or_default();
            let mut r = with_type(
                StatusCode::OK,
                page::render(&view),
                "text/html; charset=utf-8",
            );
            // Defence in depth behind the escaping: no script, no outside resource may load.
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
                     form-action 'none'; frame-ancestors 'none'",
                ),
            );
            r
        }
        _ => plain(
            StatusCode::NOT_FOUND,
            "served here: /, /status.json, /metrics\n",
        ),
    }
}

/// The current snapshot, rebuilt off the async thread when older than [`SNAPSHOT_FRESH`].
/// `None` when the page has no store (tests of the bare exposition).
async fn snapshot(shared: &Arc<Shared>) -> Option<Arc<StatusView>> {
    let dir = shared.page.store()?;
    let shared = Arc::clone(shared);
    // In a task of its own: a client cut off at its deadline does not throw away a slow build
    // (the next client gets it instead of starting another).
    let refresh = tokio::spawn(async move {
        let mut cached = shared.snapshot.lock().await;
        if let Some((at, took, view)) = cached.as_ref()
            && at.elapsed() < SNAPSHOT_FRESH.max(*took * SNAPSHOT_DUTY)
        {
            return Some(Arc::clone(view));
        }
        let previous = cached.as_ref().map(|(_, _, v)| Arc::clone(v));
        let started = Instant::now();
        let live = shared.page.transfers();
        let built = tokio::task::spawn_blocking(move || {
            view::build(Path::new(&dir), previous.as_deref(), live)
        })
        .await
        .ok()?;
        let built = Arc::new(built);
        *cached = Some((Instant::now(), started.elapsed(), Arc::clone(&built)));
        Some(built)
    });
    refresh.await.ok().flatten()
}

/// Gauges read from the store rather than counted by the listener loop.
pub fn store_metrics(v: &StatusView) -> String {
    let mut e = Exposition::default();
    if let Some(free) = v.store.free_bytes {
        e.gauge(
            "sluice_store_free_bytes",
            "Bytes available to the listener on the store's filesystem.",
            free as f64,
        );
    }
    if let Some(size) = v.store.size_bytes {
        e.gauge(
            "sluice_store_size_bytes",
            "Size of the store's filesystem in bytes.",
            size as f64,
        );
    }
    e.gauge(
        "sluice_audit_chain_ok",
        "1 when audit.jsonl's hash chain verifies, 0 when it is broken.",
        f64::from(u8::from(v.audit.chain_ok)),
    )
    .gauge(
        "sluice_audit_records",
        "Records in audit.jsonl.",
        v.audit.records as f64,
    )
    .gauge(
        "sluice_quarantine_bundles",
        "Bundles held in quarantine.",
        v.store.quarantine_entries as f64,
    )
    .gauge(
        "sluice_staging_bytes",
        "Bytes of partial objects in staging.",
        v.store.staging_bytes as f64,
    )
    .gauge(
        "sluice_sent_not_received_bundles",
        "Bundles the sender's heartbeat ledger lists as sent over 10 minutes ago with no decision here.",
        v.sent_not_received.len() as f64,
    )
    .gauge(
        "sluice_transfer_blocks_missing",
        "Blocks still missing, summed over the transfers in flight.",
        v.transfers.iter().map(|t| t.blocks_missing).sum::<u64>() as f64,
    )
    .gauge(
        "sluice_listener_up",
        "1 when the listener refreshed state/status.json within the last 10 seconds.",
        f64::from(u8::from(v.listener_up)),
    );
    e.finish()
}

fn with_type(
    status: StatusCode,
    body: String,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(status, body.to_owned(), "text/plain; charset=utf-8")
}

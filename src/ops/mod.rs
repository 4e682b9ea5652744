//! The operations HTTP listener: `/metrics` (Prometheus text format),
//! `/healthz` (the process serves) and `/readyz` (the broker can do its
//! job: listeners bound, log recovered, ACLs and credentials loaded, the
//! upstream reachable in gateway mode).
//!
//! Bounded like the Kafka listeners, because a scraper may be hostile: at
//! most `ops.max_connections` connections (at the limit a newcomer takes
//! the place of the oldest one still waiting for its request head, else it
//! is closed at accept), one request per connection (no keep-alive to hold
//! a slot), a request head within `ops.request_timeout_ms` and at most
//! `ops.max_header_bytes`, and a whole connection within three times that.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::{parse_host_port, OpsConfig};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::tls::TlsAcceptorHandle;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("cannot bind the ops listener on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error(
        "ops.tls is set but the broker has no server certificate (no SSL or SASL_SSL listener)"
    )]
    NoTls,
}

/// What `/readyz` checks.
pub struct Readiness {
    /// Every Kafka listener is bound.
    pub listeners: AtomicBool,
    /// The log was opened and recovered (`None` in gateway mode).
    pub log: Option<AtomicBool>,
    /// The ACL file was loaded.
    pub acls: AtomicBool,
    /// The credential store was loaded (`None` without SASL listeners).
    pub credentials: Option<AtomicBool>,
    /// Gateway mode: the upstream, probed when asked.
    pub upstream: Option<Arc<Gateway>>,
}

impl Readiness {
    /// Each check and its state ("ok" or what is wrong), and whether all
    /// are ok.
    pub async fn check(&self) -> (bool, BTreeMap<&'static str, String>) {
        let flag = |b: &AtomicBool, what: &str| {
            if b.load(Ordering::Acquire) {
                "ok".to_string()
            } else {
                format!("not {what}")
            }
        };
        let mut checks = BTreeMap::new();
        checks.insert("listeners", flag(&self.listeners, "bound"));
        if let Some(log) = &self.log {
            checks.insert("log", flag(log, "recovered"));
        }
        checks.insert("acls", flag(&self.acls, "loaded"));
        if let Some(c) = &self.credentials {
            checks.insert("credentials", flag(c, "loaded"));
        }
        if let Some(g) = &self.upstream {
            checks.insert(
                "upstream",
                match g.probe().await {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("unreachable: {e}"),
                },
            );
        }
        let ready = checks.values().all(|v| v == "ok");
        (ready, checks)
    }
}

/// Everything a request handler needs.
pub struct OpsState {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    /// Scrapes encoding at once: each walks every partition, so parallel
    /// scrapers wait instead of taking a blocking thread each.
    pub scrapes: Semaphore,
}

impl OpsState {
    pub fn new(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> OpsState {
        OpsState {
            metrics,
            readiness,
            scrapes: Semaphore::new(2),
        }
    }
}

/// The bound ops listener, before its accept loop runs.
pub struct OpsListener {
    listener: TcpListener,
    pub bound: SocketAddr,
    pub tls: Option<Arc<TlsAcceptorHandle>>,
    cfg: OpsConfig,
}

impl OpsListener {
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

pub async fn bind(
    cfg: &OpsConfig,
    tls: Option<Arc<TlsAcceptorHandle>>,
) -> Result<OpsListener, OpsError> {
    let bind_err = |source| OpsError::Bind {
        address: cfg.address.clone(),
        source,
    };
    let tls = match (cfg.tls, tls) {
        (false, _) => None,
        (true, Some(t)) => Some(t),
        (true, None) => return Err(OpsError::NoTls),
    };
    let (host, port) = parse_host_port(&cfg.address)
        .map_err(|m| bind_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, m)))?;
    let listener = TcpListener::bind((host.as_str(), port))
        .await
        .map_err(bind_err)?;
    let bound = listener.local_addr().map_err(bind_err)?;
    Ok(OpsListener {
        listener,
        bound,
        tls,
        cfg: cfg.clone(),
    })
}

/// Connections still waiting for their request head, oldest first, with
/// the signal that displaces them.
#[derive(Default)]
struct Waiting {
    next: u64,
    queue: std::collections::VecDeque<(u64, tokio::sync::oneshot::Sender<()>)>,
}

impl Waiting {
    fn lock(w: &std::sync::Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
        w.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remove(w: &std::sync::Mutex<Waiting>, id: u64) {
        Waiting::lock(w).queue.retain(|(i, _)| *i != id);
    }
}

pub fn spawn(ops: OpsListener, state: Arc<OpsState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let OpsListener {
            listener, tls, cfg, ..
        } = ops;
        let slots = Arc::new(Semaphore::new(cfg.max_connections));
        let waiting = Arc::new(std::sync::Mutex::new(Waiting::default()));
        let request_timeout = Duration::from_millis(cfg.request_timeout_ms);
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::debug!("ops accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                // Full: the newcomer takes the place of the oldest
                // connection that has not sent its request yet, so idle
                // connections cannot lock a scraper out until they time
                // out. When every connection is busy with a request, the
                // newcomer is closed at once.
                Err(_) => {
                    let victim = Waiting::lock(&waiting).queue.pop_front();
                    match victim {
                        Some((_, evict)) => {
                            let _ = evict.send(());
                            tokio::time::timeout(
                                Duration::from_millis(100),
                                slots.clone().acquire_owned(),
                            )
                            .await
                            .ok()
                            .and_then(Result::ok)
                        }
                        None => None,
                    }
                }
            };
            let Some(slot) = slot else {
                // A zero linger resets: no TIME_WAIT left behind.
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                continue;
            };
            let (evict, evicted) = tokio::sync::oneshot::channel();
            let id = {
                let mut w = Waiting::lock(&waiting);
                w.next += 1;
                let id = w.next;
                w.queue.push_back((id, evict));
                id
            };
            let state = state.clone();
            let tls = tls.clone();
            let waiting = waiting.clone();
            let max_header_bytes = cfg.max_header_bytes;
            tokio::spawn(async move {
                let _slot = slot;
                let started = {
                    let waiting = waiting.clone();
                    move || Waiting::remove(&waiting, id)
                };
                let served = serve(
                    stream,
                    tls,
                    state,
                    request_timeout,
                    max_header_bytes,
                    started,
                );
                tokio::select! {
                    r = tokio::time::timeout(request_timeout * 3, served) => {
                        if r.is_err() {
                            tracing::debug!(%peer, "ops connection closed: too slow");
                        }
                    }
                    // Err: the request arrived and the signal was dropped.
                    Ok(()) = evicted => {
                        tracing::debug!(%peer, "ops connection displaced by a newer one")
                    }
                }
                Waiting::remove(&waiting, id);
            });
        }
    })
}

/// `started` is called when the request head has arrived.
async fn serve(
    stream: tokio::net::TcpStream,
    tls: Option<Arc<TlsAcceptorHandle>>,
    state: Arc<OpsState>,
    request_timeout: Duration,
    max_header_bytes: usize,
    started: impl Fn() + Send + Sync + 'static,
) {
    let _ = stream.set_nodelay(true);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(request_timeout)
        .max_buf_size(max_header_bytes)
        .keep_alive(false);
    let started = Arc::new(started);
    let svc = hyper::service::service_fn(move |req| {
        started();
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(&state, req).await) }
    });
    let result = match tls {
        None => http.serve_connection(TokioIo::new(stream), svc).await,
        Some(tls) => {
            let accepted = tokio::time::timeout(
                request_timeout,
                crate::tls::ServerTlsStream::accept(stream, tls.server_config()),
            )
            .await;
            match accepted {
                Ok(Ok(s)) => http.serve_connection(TokioIo::new(s), svc).await,
                _ => return,
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!("ops connection ended: {e}");
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn route(state: &OpsState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n");
    }
    match req.uri().path() {
        "/metrics" => {
            // Reads every partition: off the runtime's worker threads.
            let Ok(_turn) = state.scrapes.acquire().await else {
                return reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "shutting down\n");
            };
            let metrics = state.metrics.clone();
            match tokio::task::spawn_blocking(move || metrics.encode()).await {
                Ok(Ok(text)) => reply(StatusCode::OK, crate::metrics::CONTENT_TYPE, text),
                Ok(Err(e)) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
            }
        }
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n"),
        "/readyz" => {
            let (ready, checks) = state.readiness.check().await;
            let body = serde_json::json!({ "ready": ready, "checks": checks });
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, "application/json", format!("{body}\n"))
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found (try /metrics, /healthz, /readyz)\n",
        ),
    }
}

//! `GET /metrics` (docs/metrics.md): the daemon's metrics for the hospital's Prometheus — on
//! the web endpoint (behind its `Host` check; no token, the metrics hold no personal data)
//! and, with `metrics.listen`, on a listener of its own that serves nothing else (its `Host`
//! checked the same way while it is loopback). The exposition is the Prometheus text format
//! (0.0.4), or OpenMetrics for a scraper whose `Accept` asks for it ([`Format`]); what it
//! holds is [`scrape::render`]'s.

use super::super::scrape;
use super::super::shared::{Shared, Shutdown};
use super::WebError;
use super::guard;
use super::settings::MetricsSection;
use crate::metrics::Format;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

/// `metrics.listen`'s listener, bound, not yet serving.
pub struct MetricsListener {
    listener: TcpListener,
    /// The port `Host` must name; none when other hosts are allowed (`allow_remote`).
    host_port: Option<u16>,
}

impl MetricsListener {
    /// Binds `metrics.listen`; `None` when it is not set.
    pub async fn bind(section: &MetricsSection) -> Result<Option<MetricsListener>, WebError> {
        if !section.enabled() {
            return Ok(None);
        }
        let addr = section
            .addr()
            .ok_or_else(|| WebError::MetricsNotLoopback(section.listen.clone()))?;
        let listen_error = |source| WebError::Listen {
            key: "metrics.listen",
            addr,
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
        let local = listener.local_addr().map_err(listen_error)?;
        let loopback = addr.ip().is_loopback();
        if loopback {
            tracing::info!(addr = %local, "metrics listening (GET /metrics)");
        } else {
            tracing::warn!(addr = %local, "metrics listening for other hosts (metrics.allow_remote)");
        }
        Ok(Some(MetricsListener {
            listener,
            host_port: loopback.then_some(local.port()),
        }))
    }

    /// The address it listens on (the port chosen when `metrics.listen` gave port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Serves `GET /metrics` on `metrics` until `shutdown` is signalled.
pub async fn serve(
    metrics: MetricsListener,
    shared: Arc<Shared>,
    shutdown: broadcast::Sender<()>,
    done: mpsc::Sender<()>,
) {
    let MetricsListener {
        listener,
        host_port,
    } = metrics;
    let mut stop = Shutdown::new(shutdown.subscribe());
    let app = Router::new()
        .route("/metrics", get(own_page))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(host_port, check_host))
        .with_state(shared);
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(async move { stop.recv().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "the metrics listener stopped");
    }
    drop(done);
}

/// `Host` names loopback and the listener's port, when it listens on loopback.
async fn check_host(
    State(host_port): State<Option<u16>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match host_port.map(|port| guard::check_host(request.headers(), port)) {
        Some(Err(refusal)) => {
            tracing::warn!(%addr, why = %refusal.why, "metrics request refused");
            (refusal.status, format!("medcard: {}\n", refusal.why)).into_response()
        }
        _ => next.run(request).await,
    }
}

async fn own_page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    answer(shared, &headers).await
}

/// The exposition in the format the scraper's `headers` ask for, rendered off the runtime
/// (the journal and the cache are read).
pub async fn answer(shared: Arc<Shared>, headers: &HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    match tokio::task::spawn_blocking(move || scrape::render(&shared, format)).await {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the metrics could not be rendered");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "medcard: no such page; this listener serves /metrics only\n",
    )
        .into_response()
}

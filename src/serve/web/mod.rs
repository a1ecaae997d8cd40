//! The loopback web endpoint (docs/web.md): for browser-based HIS front ends and
//! self-service kiosks, which cannot open a Unix socket. Off unless `web.listen` is set;
//! bound to 127.0.0.1 / ::1 only.
//!
//! - `GET /ws`: a WebSocket carrying exactly the Unix socket's JSON-RPC: the same request
//!   loop ([`crate::serve::connection::serve_frames`]), methods, errors, notifications and
//!   per-connection limits; one JSON object per text message.
//! - `POST /rpc`: one call, one answer ([`crate::serve::connection::answer_once`]).
//! - `GET /kiosk`: the self-service kiosk page, compiled into the binary ([`kiosk_files`]).
//! - `GET /metrics`: the daemon's metrics for Prometheus ([`metrics`]; no token: they hold
//!   no personal data), also served on `metrics.listen`'s listener of its own.
//!
//! Every request passes the [`guard`] first: `Host` (no DNS rebinding), `Origin` (the
//! allow-list), and the token (none: read-only; the kiosk's; the HIS's). Connections count
//! against `socket.max_connections` like the socket's.

pub mod guard;
pub mod kiosk_files;
pub mod metrics;
pub mod settings;
pub mod tokens;
mod ws;

use super::connection;
use super::peer::{Grant, Peer};
use super::rpc::{self, RequestError, RpcError};
use super::shared::{Shared, Shutdown};
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use guard::{Guard, Refusal};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

/// What the endpoint's handlers share.
#[derive(Clone)]
struct Endpoint {
    shared: Arc<Shared>,
    guard: Arc<Guard>,
    shutdown: broadcast::Sender<()>,
    /// Held by every connection: the server waits until all are dropped.
    done: mpsc::Sender<()>,
}

/// The web endpoint, bound and with its tokens, not yet serving.
pub struct WebListener {
    listener: TcpListener,
    guard: Guard,
}

/// Why the web endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("web.listen {0:?} is not a loopback address like \"127.0.0.1:8765\"")]
    NotLoopback(String),
    #[error(
        "metrics.listen {0:?} is not a loopback address like \"127.0.0.1:9465\" (and \
         metrics.allow_remote is not set)"
    )]
    MetricsNotLoopback(String),
    #[error("cannot listen on {addr} ({key}): {source}")]
    Listen {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("web token: {0}")]
    Token(#[from] tokens::TokenError),
}

impl WebListener {
    /// Reads (or makes) the tokens and binds `web.listen`; `None` when it is not set.
    pub async fn bind(web: &settings::WebSection) -> Result<Option<WebListener>, WebError> {
        if !web.enabled() {
            return Ok(None);
        }
        let addr = web
            .addr()
            .ok_or_else(|| WebError::NotLoopback(web.listen.clone()))?;
        let client = tokens::load_or_make(&web.token_file)?;
        let kiosk = tokens::load_or_make(&web.kiosk_token_file)?;
        let listen_error = |source| WebError::Listen {
            key: "web.listen",
            addr,
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
        let port = listener.local_addr().map_err(listen_error)?.port();
        tracing::info!(%addr, port, "web endpoint listening");
        Ok(Some(WebListener {
            listener,
            guard: Guard::new(port, client, kiosk),
        }))
    }

    /// The address it listens on (the port chosen when `web.listen` gave port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Serves the web endpoint until `shutdown` is signalled.
pub async fn serve(
    web: WebListener,
    shared: Arc<Shared>,
    shutdown: broadcast::Sender<()>,
    done: mpsc::Sender<()>,
) {
    let WebListener { listener, guard } = web;
    let mut stop = Shutdown::new(shutdown.subscribe());
    let max_body = shared.settings().config.socket.max_line_bytes;
    let endpoint = Endpoint {
        shared,
        guard: Arc::new(guard),
        shutdown,
        done,
    };
    let app = Router::new()
        .route("/ws", get(websocket))
        .route("/rpc", post(post_rpc).options(preflight))
        .route("/kiosk", get(kiosk_files::page))
        .route("/kiosk/", get(kiosk_files::page))
        .route("/kiosk/{file}", get(kiosk_files::file))
        .route("/metrics", get(metrics_page))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            endpoint.clone(),
            check_host,
        ))
        .with_state(endpoint);
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(async move { stop.recv().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "the web endpoint stopped");
    }
}

/// Every request: `Host` must name loopback and our port (no DNS rebinding).
async fn check_host(
    State(endpoint): State<Endpoint>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match endpoint.guard.check_host(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refused(addr, refusal),
    }
}

/// `GET /metrics`: after the `Host` check only.
async fn metrics_page(State(endpoint): State<Endpoint>, headers: HeaderMap) -> Response {
    metrics::answer(endpoint.shared.clone(), &headers).await
}

/// The origin check and the token's grant of a request.
fn admit(endpoint: &Endpoint, headers: &HeaderMap, token: Option<&str>) -> Result<Grant, Refusal> {
    let settings = endpoint.shared.settings();
    endpoint
        .guard
        .check_origin(headers, &settings.config.web.allowed_origins)?;
    endpoint.guard.grant(token)
}

/// A refusal as an HTTP answer with a JSON-RPC error (1021) saying why; logged.
fn refused(addr: SocketAddr, refusal: Refusal) -> Response {
    tracing::warn!(%addr, status = %refusal.status, why = %refusal.why, "web request refused");
    let error = RpcError::from(RequestError::WebNotAllowed(refusal.why));
    json_response(refusal.status, rpc::failure(&Value::Null, &error))
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A connection slot for `peer`, or the socket's refusal (1008), logged.
fn connection_slot(
    endpoint: &Endpoint,
    peer: &Peer,
) -> Result<super::shared::ConnectionSlot, RpcError> {
    endpoint.shared.admit_connection(peer).map_err(|refusal| {
        tracing::warn!(%peer, "web connection refused: {refusal}");
        RpcError::from(refusal)
    })
}

/// The refusal of a connection over the limits, as an HTTP 503.
fn unavailable(error: &RpcError) -> Response {
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        rpc::failure(&Value::Null, error),
    )
}

/// `GET /ws`: the WebSocket, after the origin and the token.
async fn websocket(
    State(endpoint): State<Endpoint>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let grant = match admit(&endpoint, &headers, guard::websocket_token(&headers)) {
        Ok(grant) => grant,
        Err(refusal) => return refused(addr, refusal),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let peer = Peer::Web { addr, grant };
    let slot = match connection_slot(&endpoint, &peer) {
        Ok(slot) => slot,
        Err(error) => return unavailable(&error),
    };
    let limit = endpoint.shared.settings().config.socket.max_line_bytes;
    upgrade
        .protocols([guard::PROTOCOL])
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            let (frames, sink) = ws::split(socket);
            let shutdown = Shutdown::new(endpoint.shutdown.subscribe());
            connection::serve_frames(frames, sink, peer, endpoint.shared.clone(), shutdown, None)
                .await;
            drop(slot);
            drop(endpoint.done);
        })
}

/// `POST /rpc`: one JSON-RPC call.
async fn post_rpc(
    State(endpoint): State<Endpoint>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let grant = match admit(&endpoint, &headers, guard::bearer_token(&headers)) {
        Ok(grant) => grant,
        Err(refusal) => return refused(addr, refusal),
    };
    let mut response = match body {
        Ok(body) => answer_post(&endpoint, Peer::Web { addr, grant }, &body).await,
        Err(rejection) => {
            let limit = endpoint.shared.settings().config.socket.max_line_bytes;
            tracing::warn!(%addr, %rejection, "web request body refused");
            let status = rejection.status();
            json_response(
                status,
                rpc::failure(&Value::Null, &RpcError::too_large(limit)),
            )
        }
    };
    allow_origin(&headers, response.headers_mut());
    response
}

async fn answer_post(endpoint: &Endpoint, peer: Peer, body: &[u8]) -> Response {
    let _slot = match connection_slot(endpoint, &peer) {
        Ok(slot) => slot,
        Err(error) => return unavailable(&error),
    };
    match connection::answer_once(&endpoint.shared, &peer, body).await {
        Some(answer) => json_response(StatusCode::OK, answer),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// `OPTIONS /rpc`: a browser's preflight for a cross-origin POST with a token; the origin
/// is checked as for the POST itself.
async fn preflight(
    State(endpoint): State<Endpoint>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = admit(&endpoint, &headers, None) {
        return refused(addr, refusal);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let answer = response.headers_mut();
    allow_origin(&headers, answer);
    answer.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    answer.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    answer.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// Lets the (already checked) calling origin read the answer.
fn allow_origin(request: &HeaderMap, answer: &mut HeaderMap) {
    if let Some(origin) = request.get(header::ORIGIN) {
        answer.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        answer.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "medcard: no such page; the web endpoint serves /ws, /rpc, /kiosk and /metrics\n",
    )
        .into_response()
}

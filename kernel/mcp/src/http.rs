//! MCP over Streamable HTTP: `POST/GET/DELETE /mcp` on the address
//! `[mcp.server] listen` names, each request carrying
//! `Authorization: Bearer <token>`.
//!
//! The protocol itself (sessions, SSE streams, JSON-RPC) is `rmcp`'s
//! [`StreamableHttpService`]; this module owns the listener, the token
//! check (constant time; 401 with `WWW-Authenticate: Bearer` when it is
//! missing or wrong, before anything reaches the MCP layer), the path, and
//! a bound on connections served at once, and a POST's body: at most
//! [`MAX_BODY_BYTES`] (413 beyond), and refused with a JSON-RPC error when
//! it is not a client message ([`jsonrpc`]). `rmcp` checks the `Host` header
//! against the allowed hosts (loopback unless configured otherwise), which
//! keeps DNS rebinding pages out.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use serde_json::Value;

use crate::host::Host;
use crate::jsonrpc;
use crate::server::{ServerSettings, SkillServer};

/// The one path the endpoint answers.
pub const PATH: &str = "/mcp";
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 256;
/// The largest JSON-RPC message body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

type Body = BoxBody<Bytes, Infallible>;

/// The MCP endpoint, bound.
pub struct McpHttpServer {
    listener: TcpListener,
    service: StreamableHttpService<SkillServer, LocalSessionManager>,
    token: Arc<str>,
    stop: CancellationToken,
}

impl McpHttpServer {
    /// Binds `listen` (`host:port`). `allowed_hosts` are the `Host` header
    /// values accepted besides loopback names (a non-loopback bind names
    /// its own).
    pub async fn bind(
        listen: &str,
        host: Arc<dyn Host>,
        settings: ServerSettings,
        token: &str,
        allowed_hosts: Vec<String>,
    ) -> std::io::Result<McpHttpServer> {
        let listener = TcpListener::bind(listen).await?;
        let stop = CancellationToken::new();
        let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        hosts.extend(allowed_hosts);
        let mut config = StreamableHttpServerConfig::default().with_allowed_hosts(hosts);
        config.cancellation_token = stop.child_token();
        config.max_request_body_bytes = MAX_BODY_BYTES;
        let service = StreamableHttpService::new(
            move || Ok(SkillServer::new(Arc::clone(&host), settings)),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        Ok(McpHttpServer {
            listener,
            service,
            token: Arc::from(token),
            stop,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` is cancelled; then ends every MCP session.
    pub async fn serve(self, stop: CancellationToken) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let permit = tokio::select! {
                _ = stop.cancelled() => break,
                permit = Arc::clone(&slots).acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let (stream, peer) = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "MCP endpoint: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let service = self.service.clone();
            let token = Arc::clone(&self.token);
            let conn_stop = self.stop.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let handler = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let service = service.clone();
                    let token = Arc::clone(&token);
                    async move { Ok::<_, Infallible>(answer(&service, &token, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), handler);
                tokio::pin!(conn);
                tokio::select! {
                    r = &mut conn => if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "MCP connection ended with an error");
                    },
                    _ = conn_stop.cancelled() => conn.as_mut().graceful_shutdown(),
                }
            });
        }
        self.stop.cancel();
    }
}

async fn answer(
    service: &StreamableHttpService<SkillServer, LocalSessionManager>,
    token: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    if req.uri().path() != PATH {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the MCP endpoint is /mcp\n",
        );
    }
    if !authorized(&req, token) {
        let mut response = plain(
            StatusCode::UNAUTHORIZED,
            "unauthorized: send Authorization: Bearer <token> (see docs/mcp.md)\n",
        );
        response.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    if req.method() != hyper::Method::POST {
        return service.handle(req).await;
    }
    // A POST carries one message: read it (bounded) and refuse what is
    // not an MCP client message with a JSON-RPC error, as the stdio
    // bridge does, before `rmcp` sees it.
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let too_large = e.downcast_ref::<LengthLimitError>().is_some();
            let (status, message) = if too_large {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the message is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    format!("the request body could not be read: {e}"),
                )
            };
            let error = jsonrpc::error(Value::Null, jsonrpc::INVALID_REQUEST, message);
            return json(status, &error);
        }
    };
    if let Err(error) = jsonrpc::parse_body(&bytes) {
        return json(StatusCode::BAD_REQUEST, &error);
    }
    service
        .handle(Request::from_parts(parts, Full::new(bytes)))
        .await
}

fn json(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Whether `req` carries `Bearer <token>`, compared in constant time.
fn authorized(req: &Request<Incoming>, token: &str) -> bool {
    let Some(given) = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    skillkernel_stdx::secret::constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

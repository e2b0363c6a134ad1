//! The simulator's HTTP surface: routing, the latency/record/auth layers, the single-file
//! and certificate routes, and the response shapes they share.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::sim::catalog::FileRef;
use crate::sim::conn::Connection;
use crate::sim::state::SimState;
use crate::sim::{bulk, token, RequestRecord, API_PREFIX};

/// Where the token endpoint lives, relative to the data-center URL.
pub(super) const TOKEN_PATH: &str = "/api/2/idp/token";
/// Large enough for bulk requests far above the default id limit.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The ids a request named, attached to its response for the request log.
#[derive(Clone, Debug, Default)]
pub(super) struct FileIds(pub(super) Vec<String>);

/// Marks a response that is never sent because its connection was broken.
#[derive(Clone, Copy, Debug)]
struct Broken;

/// Builds the router with every simulated route.
pub(super) fn router(sim: Arc<SimState>) -> Router {
    let notary = Router::new()
        .route("/stored-files", delete(bulk::delete_stored_files))
        .route(
            "/stored-files/{file_id}",
            get(get_stored_file).delete(delete_stored_file),
        )
        .route("/certificates/{cert}", get(get_certificate))
        .route_layer(from_fn_with_state(sim.clone(), require_token));
    Router::new()
        .nest(API_PREFIX, notary)
        .route(TOKEN_PATH, post(token::issue_token))
        .fallback(not_found_route)
        .layer(from_fn_with_state(sim.clone(), observe))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(sim)
}

/// Adds the configured latency, counts deletes, and logs, records and times every request.
async fn observe(
    State(sim): State<Arc<SimState>>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    request: Request,
    next: Next,
) -> Response {
    let arrived = SystemTime::now();
    let method = request.method().clone();
    let uri = request.uri().clone();
    if method == Method::DELETE {
        sim.count_delete_request();
    }

    let mut response = if sim.sleep_unless_stopping(sim.config.latency).await {
        next.run(request).await
    } else {
        broken(&connection)
    };

    let file_ids = response
        .extensions_mut()
        .remove::<FileIds>()
        .unwrap_or_default()
        .0;
    let status = match response.extensions().get::<Broken>() {
        Some(Broken) => 0,
        None => response.status().as_u16(),
    };
    tracing::debug!(%method, path = uri.path(), status, n_ids = file_ids.len(), "sim.request");
    sim.record_time(arrived, method.as_str(), status, file_ids.len());
    if sim.config.record_requests {
        let path = uri.path().to_owned();
        sim.record_request(RequestRecord {
            method: method.to_string(),
            path,
            file_ids,
            status,
        });
    }
    response
}

/// Answers 401 with an empty body unless the request carries a valid bearer token.
async fn require_token(State(sim): State<Arc<SimState>>, request: Request, next: Next) -> Response {
    match bearer_token(request.headers()) {
        Some(token) if sim.is_valid_token(token) => next.run(request).await,
        _ => empty(StatusCode::UNAUTHORIZED),
    }
}

/// `DELETE /stored-files/{id}`: 204, 404 `{}` or 403 empty.
async fn delete_stored_file(
    State(sim): State<Arc<SimState>>,
    Path(file_id): Path<String>,
) -> Response {
    let file_id = file_id.to_ascii_lowercase();
    let mut response = match sim.catalog.resolve_file(&file_id) {
        Some(FileRef::Foreign(_)) => empty(StatusCode::FORBIDDEN),
        Some(file) if sim.delete_file(file) => empty(StatusCode::NO_CONTENT),
        _ => not_found(),
    };
    response.extensions_mut().insert(FileIds(vec![file_id]));
    response
}

/// `GET /stored-files/{id}`: the file with its certificate, 404 `{}` or 403 empty.
async fn get_stored_file(
    State(sim): State<Arc<SimState>>,
    Path(file_id): Path<String>,
) -> Response {
    let file_id = file_id.to_ascii_lowercase();
    let mut response = match sim.catalog.resolve_file(&file_id) {
        Some(FileRef::Foreign(_)) => empty(StatusCode::FORBIDDEN),
        Some(file) if sim.is_file_stored(file) => {
            json_value(StatusCode::OK, &json!({ "file": file.file_json() }))
        }
        _ => not_found(),
    };
    response.extensions_mut().insert(FileIds(vec![file_id]));
    response
}

/// `GET /certificates/{cert}`: any known certificate, also after its file was deleted.
async fn get_certificate(State(sim): State<Arc<SimState>>, Path(cert): Path<String>) -> Response {
    match sim.catalog.resolve_cert(&cert.to_ascii_lowercase()) {
        Some(file) => json_value(
            StatusCode::OK,
            &json!({ "certificate": file.certificate_json() }),
        ),
        None => not_found(),
    }
}

async fn not_found_route() -> Response {
    not_found()
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// A response with no body at all.
pub(super) fn empty(status: StatusCode) -> Response {
    status.into_response()
}

/// 404 with the service's `{}` body.
pub(super) fn not_found() -> Response {
    json_bytes(StatusCode::NOT_FOUND, b"{}".to_vec())
}

/// A JSON response from already-serialised bytes.
pub(super) fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    let content_type = HeaderValue::from_static("application/json");
    (status, [(CONTENT_TYPE, content_type)], body).into_response()
}

/// A JSON response from a value.
pub(super) fn json_value(status: StatusCode, value: &Value) -> Response {
    json_bytes(status, value.to_string().into_bytes())
}

/// The service's error body: `{"domain", "code", "debug": {"message"}}`.
pub(super) fn service_error(status: StatusCode, message: &str) -> Response {
    let code = status
        .canonical_reason()
        .unwrap_or("Error")
        .replace(' ', "");
    let body = json!({ "domain": "NotaryService", "code": code, "debug": { "message": message } });
    json_value(status, &body)
}

/// Breaks the connection; the returned response is never sent and is recorded as status 0.
pub(super) fn broken(connection: &Connection) -> Response {
    connection.break_off();
    let mut response = empty(StatusCode::INTERNAL_SERVER_ERROR);
    response.extensions_mut().insert(Broken);
    response
}

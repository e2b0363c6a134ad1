//! `DELETE /stored-files`: bulk deletion, its validation, and the faults injected into it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sim::catalog::{unrequested_cert, Catalog, FileRef};
use crate::sim::conn::Connection;
use crate::sim::routes::{broken, empty, json_bytes, service_error, FileIds};
use crate::sim::state::SimState;
use crate::sim::Fault;

/// The page an nginx proxy serves when the service behind it is down, byte for byte.
const PROXY_BAD_GATEWAY_HTML: &str = concat!(
    "<html>\r\n",
    "<head><title>502 Bad Gateway</title></head>\r\n",
    "<body>\r\n",
    "<center><h1>502 Bad Gateway</h1></center>\r\n",
    "<hr><center>nginx</center>\r\n",
    "</body>\r\n",
    "</html>\r\n",
);
/// How long a hanging request waits; in practice until the simulator shuts down.
const HANG: Duration = Duration::from_secs(3600);
/// Ids of made-up files that `Fault::UnrequestedEntry` reports; the catalogue has none.
const UNREQUESTED_PREFIX: &str = "0badf00d-0000-4000-a000-";

#[derive(Deserialize)]
struct BulkRequest {
    file_ids: Option<Vec<Value>>,
}

#[derive(Serialize)]
struct DeletedBody<'a> {
    deleted: &'a [DeletedEntry],
}

#[derive(Serialize)]
struct DeletedEntry {
    id: String,
    cert: String,
    name: String,
    size: u64,
    created_at: String,
}

/// Validates the request, takes the next fault, deletes, and answers.
pub(super) async fn delete_stored_files(
    State(sim): State<Arc<SimState>>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_json(&headers) {
        let message = "content-type: expected application/json";
        return service_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, message);
    }
    let file_ids = match parse_file_ids(&body) {
        Ok(file_ids) => file_ids,
        Err(message) => return service_error(StatusCode::BAD_REQUEST, &message),
    };

    let mut response = match check_file_ids(&file_ids, sim.config.max_ids_per_request) {
        Ok(()) => answer(&sim, &connection, &file_ids).await,
        Err(message) => service_error(StatusCode::BAD_REQUEST, &message),
    };
    response.extensions_mut().insert(FileIds(file_ids));
    response
}

fn is_json(headers: &HeaderMap) -> bool {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let mime = content_type
        .and_then(|value| value.split(';').next())
        .unwrap_or_default();
    mime.trim().eq_ignore_ascii_case("application/json")
}

/// The requested ids in lower case; elements that are not strings keep their JSON text.
fn parse_file_ids(body: &[u8]) -> Result<Vec<String>, String> {
    let request: BulkRequest =
        serde_json::from_slice(body).map_err(|error| format!("body: {error}"))?;
    let file_ids = request
        .file_ids
        .unwrap_or_default()
        .into_iter()
        .map(|value| match value {
            Value::String(mut file_id) => {
                file_id.make_ascii_lowercase();
                file_id
            }
            other => other.to_string(),
        });
    Ok(file_ids.collect())
}

fn check_file_ids(file_ids: &[String], max_ids: usize) -> Result<(), String> {
    if file_ids.is_empty() {
        return Err("file_ids: must not be empty".to_owned());
    }
    if max_ids < file_ids.len() {
        return Err(format!(
            "file_ids: at most {max_ids} ids per request, got {}",
            file_ids.len()
        ));
    }
    match file_ids.iter().position(|file_id| !is_uuid(file_id)) {
        Some(idx) => Err(format!("file_ids: invalid UUID at index {idx}")),
        None => Ok(()),
    }
}

/// Whether `text` is a UUID in the hyphenated 8-4-4-4-12 form.
fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(idx, byte)| match idx {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// Answers a valid request, applying the next fault if there is one.
async fn answer(sim: &SimState, connection: &Connection, file_ids: &[String]) -> Response {
    let fault = sim.next_fault();
    if let Some(fault) = &fault {
        tracing::debug!(?fault, "sim.fault_injected");
    }
    match fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            service_error(status, "injected fault")
        }
        Some(Fault::ProxyHtml502) => {
            let content_type = HeaderValue::from_static("text/html");
            (
                StatusCode::BAD_GATEWAY,
                [(CONTENT_TYPE, content_type)],
                PROXY_BAD_GATEWAY_HTML,
            )
                .into_response()
        }
        Some(Fault::TooManyRequests { retry_after }) => too_many_requests(&retry_after),
        Some(Fault::Unauthorized) => empty(StatusCode::UNAUTHORIZED),
        Some(Fault::Hang) => {
            // Nothing is deleted, and the answer never comes: not even at shutdown.
            sim.sleep_unless_stopping(HANG).await;
            broken(connection)
        }
        fault => delete_and_answer(sim, connection, file_ids, fault.as_ref()),
    }
}

fn too_many_requests(retry_after: &str) -> Response {
    let mut response = service_error(StatusCode::TOO_MANY_REQUESTS, "too many requests");
    if let Ok(value) = HeaderValue::from_str(retry_after) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

/// Deletes what the request names and answers 200, shaped by the deletion-side faults.
fn delete_and_answer(
    sim: &SimState,
    connection: &Connection,
    file_ids: &[String],
    fault: Option<&Fault>,
) -> Response {
    let Some(files) = resolve_owned(&sim.catalog, file_ids) else {
        return empty(StatusCode::FORBIDDEN);
    };
    let n_keep = match fault {
        Some(Fault::SkipDelete { skip }) => *skip,
        _ => 0,
    };
    let deleted = sim.delete_files(&files, n_keep);
    tracing::debug!(
        n_requested = file_ids.len(),
        n_deleted = deleted.len(),
        "sim.bulk_deleted"
    );

    let mut entries: Vec<DeletedEntry> = deleted.into_iter().map(describe).collect();
    distort(&mut entries, fault, file_ids);
    let mut body = serde_json::to_vec(&DeletedBody { deleted: &entries })
        .expect("entries of plain strings and numbers always serialise");
    match fault {
        Some(Fault::CloseAfterDelete) => broken(connection),
        Some(Fault::TruncatedJson) => {
            body.truncate(body.len() / 2);
            json_bytes(StatusCode::OK, body)
        }
        Some(Fault::EmptyBody) => json_bytes(StatusCode::OK, Vec::new()),
        _ => json_bytes(StatusCode::OK, body),
    }
}

/// The known files among `file_ids`, or `None` when any belongs to another account.
fn resolve_owned(catalog: &Catalog, file_ids: &[String]) -> Option<Vec<FileRef>> {
    let mut files = Vec::with_capacity(file_ids.len());
    for file_id in file_ids {
        match catalog.resolve_file(file_id) {
            Some(FileRef::Foreign(_)) => return None,
            Some(file) => files.push(file),
            None => (),
        }
    }
    Some(files)
}

fn describe(file: FileRef) -> DeletedEntry {
    DeletedEntry {
        id: file.id(),
        cert: file.cert(),
        name: file.name(),
        size: file.size(),
        created_at: file.created_at(),
    }
}

/// Applies the faults that damage an otherwise correct list of deleted files.
fn distort(entries: &mut Vec<DeletedEntry>, fault: Option<&Fault>, file_ids: &[String]) {
    match fault {
        Some(Fault::Partial { omit }) => entries.truncate(entries.len().saturating_sub(*omit)),
        Some(Fault::UnrequestedEntry) => entries.push(unrequested_entry(file_ids)),
        Some(Fault::UpperCaseIds) => {
            for entry in entries.iter_mut() {
                entry.id.make_ascii_uppercase();
            }
        }
        Some(Fault::BadCert) => {
            if let Some(first) = entries.first_mut() {
                first.cert = "not-a-cert".to_owned();
            }
        }
        _ => (),
    }
}

/// An entry for a made-up file that the request did not name and nobody deleted.
fn unrequested_entry(file_ids: &[String]) -> DeletedEntry {
    let mut n: u64 = 0;
    let id = loop {
        let id = format!("{UNREQUESTED_PREFIX}{n:012x}");
        if !file_ids.contains(&id) {
            break id;
        }
        n += 1;
    };
    DeletedEntry {
        id,
        cert: unrequested_cert(n),
        name: format!("unrequested-{n}.pdf"),
        size: 4242,
        created_at: "2021-06-01T12:00:00.000Z".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_hyphenated_uuids_only() {
        #[track_caller]
        fn case(text: &str, expected: bool) {
            assert_eq!(is_uuid(text), expected, "{text}");
        }

        case("aa95bac7-33fd-4faa-9fa1-f4baeaca82cd", true);
        case("AA95BAC7-33FD-4FAA-9FA1-F4BAECA82CDE", true);
        case("1376fc15-a0aa-4120-9f27-112a0563b46", false);
        case("aa95bac733fd4faa9fa1f4baeaca82cd", false);
        case("{a95bac7-33fd-4faa-9fa1-f4baeaca82cd", false);
        case("aa95bac7-33fd-4faa-9fa1-f4baeaca82cg", false);
    }

    #[test]
    fn parsing_lowercases_ids_and_keeps_non_strings_as_json() {
        let body = br#"{"file_ids": ["AA95BAC7-33FD-4FAA-9FA1-F4BAEACA82CD", 7, null]}"#;

        let file_ids = parse_file_ids(body).unwrap();

        assert_eq!(
            file_ids,
            ["aa95bac7-33fd-4faa-9fa1-f4baeaca82cd", "7", "null"]
        );
        assert_eq!(parse_file_ids(b"{}").unwrap(), Vec::<String>::new());
        assert!(parse_file_ids(b"not json")
            .unwrap_err()
            .starts_with("body: "));
    }

    #[test]
    fn checks_report_the_first_problem() {
        #[track_caller]
        fn case(file_ids: &[&str], expected: Result<(), &str>) {
            let file_ids: Vec<String> = file_ids.iter().map(|id| id.to_string()).collect();
            assert_eq!(
                check_file_ids(&file_ids, 2),
                expected.map_err(str::to_owned)
            );
        }

        let valid = "ba635289-d3a1-45a2-a0ff-a8518607f656";
        case(&[], Err("file_ids: must not be empty"));
        case(
            &[valid, valid, valid],
            Err("file_ids: at most 2 ids per request, got 3"),
        );
        case(&[valid, "nope"], Err("file_ids: invalid UUID at index 1"));
        case(&[valid, valid], Ok(()));
    }

    #[test]
    fn unrequested_entry_avoids_every_requested_id() {
        let file_ids = vec![format!("{UNREQUESTED_PREFIX}000000000000")];

        let entry = unrequested_entry(&file_ids);

        assert_eq!(entry.id, format!("{UNREQUESTED_PREFIX}000000000001"));
        assert!(is_uuid(&entry.id));
        assert_eq!(entry.cert.len(), 64);
    }
}

//! `NotaryClient`: the three Notary calls the runner makes, and what their answers mean.
//!
//! Every answer is classified here (`CallError`), so the runner decides on types, never
//! on message text.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::auth::{Authenticator, Credentials};
use crate::backoff::parse_retry_after;
use crate::error::Error;
use crate::file_id::FileId;

/// Connection settings for `NotaryClient`.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The Notary API root, e.g. `https://eu2-cloud.acronis.com/api/notary/v2`.
    pub base_url: Url,
    /// Where bearer tokens come from.
    pub credentials: Credentials,
    /// Extra trusted root certificates (PEM), for a private CA.
    pub ca_cert: Option<PathBuf>,
    /// Limit for one whole request, answer included.
    pub request_timeout: Duration,
    /// Limit for opening a connection.
    pub connect_timeout: Duration,
    /// Requests per second over all workers, if limited.
    pub max_requests_per_second: Option<f64>,
}

/// A client for the stored-file endpoints.
#[derive(Debug, Clone)]
pub struct NotaryClient {
    http: reqwest::Client,
    base_url: Url,
    auth: Arc<Authenticator>,
    limiter: Option<Arc<RateLimiter>>,
}

/// One element of a bulk delete's `deleted` array.
#[derive(Debug, Clone)]
pub struct DeletedEntry {
    /// The file ID as parsed (the service may use any case).
    pub file_id: FileId,
    /// The `cert` value, if the entry had one.
    pub cert: Option<String>,
    /// The element as received, as JSON text.
    pub raw: String,
}

/// A stored file as `GET /stored-files/{id}` describes it.
#[derive(Debug, Clone)]
pub struct StoredFile {
    /// `certificate_id` (or `certificate.id`).
    pub cert: String,
    /// The `file` object as received.
    pub raw: Value,
}

/// The answer to a single-file delete that is not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SingleDelete {
    /// 204: the file was there and is deleted now.
    Deleted,
    /// 404: no such file (any more).
    NotFound,
}

/// Why a call did not give a usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// Worth retrying: connection trouble, timeouts, 408, 429, 5xx, a garbled 200.
    #[error("{message}")]
    Transient {
        /// One line for the operator.
        message: String,
        /// The service's `Retry-After`, if it gave one.
        retry_after: Option<Duration>,
        /// Whether the service may have acted on the request before it failed.
        maybe_applied: bool,
    },
    /// 400, 403 or 404: the service refused the request as it stands.
    #[error("{message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// One line for the operator.
        message: String,
    },
    /// The service could not be reached at all (connection refused, no route, DNS):
    /// retried like a transient error, but when retries run out the run stops.
    #[error("{0}")]
    Unreachable(String),
    /// 401: the token is wrong, expired or disabled. Nothing more can succeed.
    #[error("{0}")]
    Unauthorized(String),
    /// 402: a quota is exhausted. Nothing more can succeed.
    #[error("{0}")]
    Quota(String),
    /// A status the API does not document for this call.
    #[error("{message}")]
    Unexpected {
        /// One line for the operator.
        message: String,
    },
}

impl CallError {
    /// Whether the same request may succeed later in this run.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CallError::Transient { .. } | CallError::Unreachable(_)
        )
    }

    /// Whether the service may have acted on the request.
    pub fn maybe_applied(&self) -> bool {
        matches!(
            self,
            CallError::Transient {
                maybe_applied: true,
                ..
            }
        )
    }
}

impl NotaryClient {
    /// Builds the HTTP client: rustls with the system's root certificates (or
    /// `SSL_CERT_FILE`) plus `ca_cert`, proxies from the standard environment variables.
    pub fn new(options: ClientOptions) -> Result<NotaryClient, Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .connect_timeout(options.connect_timeout)
            .user_agent(concat!("notary-purge/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry the bearer token to wherever it points.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &options.ca_cert {
            for certificate in read_certificates(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|err| Error::Config(format!("cannot set up HTTP: {err}")))?;
        let limiter = options
            .max_requests_per_second
            .map(|rate| Arc::new(RateLimiter::new(rate)));
        let mut base_url = options.base_url;
        if !base_url.path().ends_with('/') {
            base_url.set_path(&format!("{}/", base_url.path()));
        }
        let auth = Arc::new(Authenticator::new(options.credentials, http.clone()));
        Ok(NotaryClient {
            http,
            base_url,
            auth,
            limiter,
        })
    }

    /// `DELETE /stored-files` with `{"file_ids": [...]}`: the files it says it deleted.
    pub async fn delete_many(&self, file_ids: &[FileId]) -> Result<Vec<DeletedEntry>, CallError> {
        let url = self.url("stored-files");
        let ids: Vec<String> = file_ids.iter().map(FileId::to_canonical).collect();
        let request = self
            .http
            .delete(url)
            .json(&serde_json::json!({ "file_ids": ids }));
        let (status, headers, body) = self.send(request).await?;
        if !status.is_success() {
            return Err(classify_status(status, &headers, &body));
        }
        parse_deleted(&body)
    }

    /// `DELETE /stored-files/{id}`.
    pub async fn delete_one(&self, file_id: &FileId) -> Result<SingleDelete, CallError> {
        let request = self
            .http
            .delete(self.url(&format!("stored-files/{file_id}")));
        let (status, headers, body) = self.send(request).await?;
        match status.as_u16() {
            200..=299 => Ok(SingleDelete::Deleted),
            404 => Ok(SingleDelete::NotFound),
            _ => Err(classify_status(status, &headers, &body)),
        }
    }

    /// `GET /stored-files/{id}`: the file and its certificate, or `None` on 404.
    pub async fn get_file(&self, file_id: &FileId) -> Result<Option<StoredFile>, CallError> {
        let request = self.http.get(self.url(&format!("stored-files/{file_id}")));
        let (status, headers, body) = self.send(request).await?;
        match status.as_u16() {
            200..=299 => parse_stored_file(&body).map(Some),
            404 => Ok(None),
            _ => Err(classify_status(status, &headers, &body)),
        }
    }

    fn url(&self, path: &str) -> Url {
        self.base_url
            .join(path)
            .expect("a relative path joins onto an absolute base URL")
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, HeaderMap, Body), CallError> {
        let mut renewed = false;
        loop {
            let token = self.auth.bearer().await?;
            if let Some(limiter) = &self.limiter {
                limiter.wait().await;
            }
            let attempt = request.try_clone().expect("request bodies are buffered");
            let response = attempt
                .bearer_auth(token.expose())
                .send()
                .await
                .map_err(transport_error)?;
            let status = response.status();
            // A 401 means the request was not carried out: safe to send again, once, with
            // a renewed token.
            if status == StatusCode::UNAUTHORIZED && !renewed && self.auth.reject(&token).await {
                tracing::info!("auth.token_refused");
                renewed = true;
                continue;
            }
            let headers = response.headers().clone();
            let body = read_body(response).await?;
            return Ok((status, headers, Body(body)));
        }
    }
}

/// The largest answer read; a bulk answer for 1,000 files is well under 1 MiB.
const MAX_BODY: usize = 32 << 20;

async fn read_body(mut response: reqwest::Response) -> Result<bytes::Bytes, CallError> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if MAX_BODY < body.len() + chunk.len() {
            return Err(CallError::Transient {
                message: format!("the answer is larger than {} MiB", MAX_BODY >> 20),
                retry_after: None,
                maybe_applied: true,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn read_certificates(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, Error> {
    let pem = std::fs::read(path).map_err(|source| Error::Io {
        context: format!("cannot read CA certificate file `{}`", path.display()),
        source,
    })?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
        Error::Config(format!(
            "`{}` is not a PEM certificate bundle: {err}",
            path.display()
        ))
    })?;
    if certificates.is_empty() {
        return Err(Error::Config(format!(
            "`{}` holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certificates)
}

/// An answer body. No `Debug`, so that nothing prints a whole page by accident.
struct Body(bytes::Bytes);

/// Spaces requests evenly, and never lets more than `rate` start in any one-second
/// window: even spacing alone lets scheduling jitter squeeze one request too many into
/// some window.
#[derive(Debug)]
struct RateLimiter {
    interval: Duration,
    /// How many requests a one-second window may hold.
    per_window: usize,
    schedule: Mutex<Schedule>,
}

#[derive(Debug)]
struct Schedule {
    next: Instant,
    /// The start times of the last `per_window` requests.
    recent: VecDeque<Instant>,
}

/// Slack added to the one-second window, for the time between a slot and the send.
const WINDOW_MARGIN: Duration = Duration::from_millis(5);

impl RateLimiter {
    fn new(rate: f64) -> RateLimiter {
        let per_window = (rate.floor() as usize).clamp(1, 100_000);
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / rate),
            per_window,
            schedule: Mutex::new(Schedule {
                next: Instant::now(),
                recent: VecDeque::with_capacity(per_window),
            }),
        }
    }

    async fn wait(&self) {
        let slot = {
            let mut schedule = self.schedule.lock().await;
            let mut slot = schedule.next.max(Instant::now());
            if schedule.recent.len() == self.per_window {
                let oldest = schedule.recent.pop_front().expect("the window is full");
                slot = slot.max(oldest + Duration::from_secs(1) + WINDOW_MARGIN);
            }
            schedule.recent.push_back(slot);
            schedule.next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

fn transport_error(err: reqwest::Error) -> CallError {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "connection failed"
    };
    let mut message = format!("{kind}: {err}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    // A failed connect never reached the service; anything later may have.
    if err.is_connect() && !err.is_timeout() {
        return CallError::Unreachable(message);
    }
    CallError::Transient {
        message,
        retry_after: None,
        maybe_applied: !err.is_connect(),
    }
}

fn classify_status(status: StatusCode, headers: &HeaderMap, body: &Body) -> CallError {
    let message = describe_answer(status, headers, body);
    match status.as_u16() {
        401 => CallError::Unauthorized(message),
        402 => CallError::Quota(message),
        400 | 403 | 404 => CallError::Refused {
            status: status.as_u16(),
            message,
        },
        408 | 429 | 500..=599 => {
            let retry_after = headers
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, SystemTime::now()));
            CallError::Transient {
                message,
                retry_after,
                // A gateway error or a timeout may come after the service acted.
                maybe_applied: status.as_u16() != 429,
            }
        }
        _ => CallError::Unexpected { message },
    }
}

/// One line about an error answer: the status, and the service's own words if any.
fn describe_answer(status: StatusCode, headers: &HeaderMap, body: &Body) -> String {
    let status_line = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("(unknown status)")
    );
    let is_html = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("html"))
        || body.0.trim_ascii_start().starts_with(b"<");
    if is_html {
        return format!("{status_line} (an HTML page, probably from a proxy)");
    }
    match serde_json::from_slice::<Value>(&body.0) {
        Ok(json) => match service_message(&json) {
            Some(detail) => format!("{status_line}: {detail}"),
            None => status_line,
        },
        Err(_) if body.0.is_empty() => status_line,
        Err(_) => format!("{status_line}: {}", first_line(&body.0)),
    }
}

/// `domain/code: debug.message` from a Notary error body, or a quota `message`.
fn service_message(json: &Value) -> Option<String> {
    let text = |key: &str| json.get(key).and_then(Value::as_str);
    let debug = json.pointer("/debug/message").and_then(Value::as_str);
    match (text("domain"), text("code"), debug, text("message")) {
        (Some(domain), Some(code), Some(debug), _) => Some(format!("{domain}/{code}: {debug}")),
        (_, Some(code), None, None) => Some(code.to_string()),
        (_, _, Some(debug), _) => Some(debug.to_string()),
        (_, _, None, Some(message)) => Some(message.to_string()),
        _ => None,
    }
}

fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(200).collect()
}

fn garbled(what: &str) -> CallError {
    CallError::Transient {
        message: format!("200 OK with {what}"),
        retry_after: None,
        // The service answered 200: it acted, we just cannot read what it did.
        maybe_applied: true,
    }
}

fn parse_deleted(body: &Body) -> Result<Vec<DeletedEntry>, CallError> {
    /// The answer, with each entry kept as received: the archive stores it verbatim, and
    /// not building a tree per entry keeps a large run's CPU for the network.
    #[derive(Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        deleted: Vec<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Entry {
        id: Option<String>,
        cert: Option<String>,
    }

    if body.0.iter().all(u8::is_ascii_whitespace) {
        return Err(garbled("an empty body"));
    }
    let answer: Answer = serde_json::from_slice(&body.0).map_err(|err| {
        let what = match err.classify() {
            serde_json::error::Category::Data => "no `deleted` array".to_string(),
            _ => format!("malformed JSON ({err})"),
        };
        garbled(&what)
    })?;
    let mut deleted = Vec::with_capacity(answer.deleted.len());
    for raw in answer.deleted {
        let entry: Option<Entry> = serde_json::from_str(raw.get()).ok();
        let file_id = entry
            .as_ref()
            .and_then(|entry| entry.id.as_deref()?.parse().ok());
        match (file_id, entry) {
            (Some(file_id), Some(entry)) => deleted.push(DeletedEntry {
                file_id,
                cert: entry.cert,
                raw: raw.get().to_string(),
            }),
            _ => tracing::warn!(entry = raw.get(), "answer.entry_without_id"),
        }
    }
    Ok(deleted)
}

fn parse_stored_file(body: &Body) -> Result<StoredFile, CallError> {
    let json: Value = serde_json::from_slice(&body.0)
        .map_err(|err| garbled(&format!("malformed JSON ({err})")))?;
    let file = json.get("file").unwrap_or(&json);
    let cert = file
        .get("certificate_id")
        .or_else(|| file.pointer("/certificate/id"))
        .and_then(Value::as_str);
    match cert {
        Some(cert) => Ok(StoredFile {
            cert: cert.to_string(),
            raw: file.clone(),
        }),
        None => Err(garbled("a file without `certificate_id`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

    fn body(bytes: &[u8]) -> Body {
        Body(bytes::Bytes::copy_from_slice(bytes))
    }

    fn case(name: &str) -> Body {
        body(&std::fs::read(format!("{CASES}/{name}")).unwrap())
    }

    #[test]
    fn reads_the_guides_answer_and_ignores_unknown_fields() {
        let deleted = parse_deleted(&case("response-200-guide.json")).unwrap();
        let certs: Vec<_> = deleted
            .iter()
            .map(|entry| entry.cert.clone().unwrap())
            .collect();
        assert_eq!(
            certs,
            [
                "66692ad42b5e1c8baed89b225321182537164c46be6cb232f09b0121af8313b7",
                "6cb238637164c46bebaed89b225321182572f09b0121af8313b6692ad42b5e1c"
            ]
        );
    }

    #[test]
    fn a_proxy_page_is_transient_and_summed_up_in_one_line() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, "text/html".parse().unwrap());
        let err = classify_status(
            StatusCode::BAD_GATEWAY,
            &headers,
            &case("response-502-proxy.html"),
        );
        assert!(err.is_retryable());
        let message = err.to_string();
        assert!(message.starts_with("502 Bad Gateway"), "{message}");
        assert!(
            !message.contains('\n') && !message.contains("<html>"),
            "{message}"
        );
    }

    #[test]
    fn a_400_shows_the_services_message() {
        let err = classify_status(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            &case("response-400.json"),
        );
        assert!(matches!(err, CallError::Refused { status: 400, .. }));
        assert_eq!(
            err.to_string(),
            "400 Bad Request: NotaryService/BadRequest: file_ids: invalid UUID at index 1"
        );
    }

    #[test]
    fn garbled_success_answers_are_transient_and_maybe_applied() {
        for bad in [&b""[..], b"  ", b"{\"deleted\": [", b"{}", b"<html>"] {
            let err = parse_deleted(&body(bad)).unwrap_err();
            assert!(err.is_retryable() && err.maybe_applied(), "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limiter_never_fills_a_second_beyond_the_rate() {
        let limiter = RateLimiter::new(50.0);
        let started = Instant::now();
        let mut sent = Vec::new();
        for _ in 0..200 {
            limiter.wait().await;
            sent.push(started.elapsed());
        }

        for (index, at) in sent.iter().enumerate() {
            let in_window = sent[index..]
                .iter()
                .take_while(|later| **later < *at + Duration::from_secs(1))
                .count();
            assert!(
                in_window <= 50,
                "{in_window} requests in the second after {at:?}"
            );
        }
        let rate = 199.0 / sent[199].as_secs_f64();
        assert!((49.0..=50.0).contains(&rate), "{rate}");
    }

    #[test]
    fn statuses_map_to_what_the_runner_must_do() {
        let headers = HeaderMap::new();
        let check = |status: u16| {
            classify_status(StatusCode::from_u16(status).unwrap(), &headers, &body(b""))
        };
        assert!(matches!(check(401), CallError::Unauthorized(_)));
        assert!(matches!(check(402), CallError::Quota(_)));
        assert!(matches!(check(403), CallError::Refused { status: 403, .. }));
        assert!(check(408).is_retryable());
        assert!(check(429).is_retryable() && !check(429).maybe_applied());
        assert!(check(503).is_retryable());
        assert!(matches!(check(409), CallError::Unexpected { .. }));
    }
}

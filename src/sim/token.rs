//! `POST /api/2/idp/token`: the platform token endpoint, for the `client_credentials` grant
//! (HTTP Basic or form credentials) and the `password` grant (any user).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::sim::routes::json_value;
use crate::sim::state::SimState;
use crate::sim::SimConfig;

/// Why a token request was refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// 400 `invalid_request`.
    InvalidRequest(&'static str),
    /// 401 `access_denied`.
    AccessDenied(&'static str),
}

/// Issues a token, or refuses with the IdP's `{"error", "error_description"}` body.
pub(super) async fn issue_token(
    State(sim): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let grant_type = form_value(&form, "grant_type")
        .unwrap_or_default()
        .to_owned();
    let refusal = match check_grant(&sim.config, &headers, &form) {
        Ok(()) => return token_response(&sim),
        Err(refusal) => refusal,
    };

    tracing::debug!(%grant_type, ?refusal, "sim.token_refused");
    let (status, error, description) = match refusal {
        Refusal::InvalidRequest(description) => {
            (StatusCode::BAD_REQUEST, "invalid_request", description)
        }
        Refusal::AccessDenied(description) => {
            (StatusCode::UNAUTHORIZED, "access_denied", description)
        }
    };
    json_value(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

fn token_response(sim: &SimState) -> Response {
    let access_token = sim.issue_token();
    let expires_in = sim.config.token_lifetime.as_secs();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let id_token = format!("sim-id-{}", uuid::Uuid::new_v4().simple());
    let body = json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": expires_in,
        "expires_on": now + expires_in,
        "id_token": id_token,
    });
    json_value(StatusCode::OK, &body)
}

fn check_grant(
    config: &SimConfig,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Result<(), Refusal> {
    match form_value(form, "grant_type") {
        Some("client_credentials") => check_client(config, headers, form),
        Some("password") => {
            let username = form_value(form, "username").unwrap_or_default();
            let password = form_value(form, "password").unwrap_or_default();
            if username.is_empty() || password.is_empty() {
                return Err(Refusal::InvalidRequest(
                    "username and password are required",
                ));
            }
            Ok(())
        }
        Some(_) => Err(Refusal::InvalidRequest("unsupported grant_type")),
        None => Err(Refusal::InvalidRequest("grant_type is required")),
    }
}

/// Accepts the configured client, sent as HTTP Basic or as form fields.
fn check_client(
    config: &SimConfig,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Result<(), Refusal> {
    let from_form = || {
        let client_id = form_value(form, "client_id")?;
        Some((
            client_id.to_owned(),
            form_value(form, "client_secret")?.to_owned(),
        ))
    };
    let Some((client_id, client_secret)) = basic_credentials(headers).or_else(from_form) else {
        return Err(Refusal::AccessDenied("client credentials are required"));
    };
    if client_id != config.client_id || client_secret != config.client_secret {
        return Err(Refusal::AccessDenied("invalid client credentials"));
    }
    Ok(())
}

/// The `(id, secret)` of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(decode_base64(encoded.trim())?).ok()?;
    let (client_id, client_secret) = decoded.split_once(':')?;
    Some((client_id.to_owned(), client_secret.to_owned()))
}

fn form_value<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Splits an `application/x-www-form-urlencoded` body into decoded pairs.
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|byte| *byte == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let split_idx = pair
                .iter()
                .position(|byte| *byte == b'=')
                .unwrap_or(pair.len());
            let value = pair.get(split_idx + 1..).unwrap_or_default();
            (
                decode_form_component(&pair[..split_idx]),
                decode_form_component(value),
            )
        })
        .collect()
}

/// Undoes form encoding: `+` is a space and `%XX` a byte; malformed escapes stay as they are.
fn decode_form_component(encoded: &[u8]) -> String {
    let mut decoded = Vec::with_capacity(encoded.len());
    let mut idx = 0;
    while idx < encoded.len() {
        let escaped = encoded
            .get(idx + 1..idx + 3)
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (encoded[idx], escaped) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                idx += 3;
                continue;
            }
            (b'+', _) => decoded.push(b' '),
            (byte, _) => decoded.push(byte),
        }
        idx += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Decodes standard or URL-safe base64, with or without padding.
fn decode_base64(encoded: &str) -> Option<Vec<u8>> {
    let mut decoded = Vec::with_capacity(encoded.len() * 3 / 4);
    let (mut buffer, mut n_bits) = (0u32, 0u32);
    for byte in encoded.trim_end_matches('=').bytes() {
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(sextet);
        n_bits += 6;
        if 8 <= n_bits {
            n_bits -= 8;
            decoded.push((buffer >> n_bits) as u8);
            buffer &= (1 << n_bits) - 1;
        }
    }
    Some(decoded)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn decodes_base64_with_and_without_padding() {
        assert_eq!(
            decode_base64("c2ltLWNsaWVudDpzaW0tc2VjcmV0").unwrap(),
            b"sim-client:sim-secret"
        );
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI").unwrap(), b"ab");
        assert_eq!(decode_base64("not base64!"), None);
    }

    #[test]
    fn parses_form_bodies() {
        let form = parse_form(b"grant_type=password&username=a%40b.c&password=p+w%2&flag");

        assert_eq!(form_value(&form, "grant_type"), Some("password"));
        assert_eq!(form_value(&form, "username"), Some("a@b.c"));
        assert_eq!(form_value(&form, "password"), Some("p w%2"));
        assert_eq!(form_value(&form, "flag"), Some(""));
    }

    #[test]
    fn client_credentials_need_the_configured_client() {
        let config = SimConfig::new("sim-token");
        let mut headers = HeaderMap::new();
        let grant = parse_form(b"grant_type=client_credentials");

        let missing = check_grant(&config, &headers, &grant);
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic c2ltLWNsaWVudDp3cm9uZw=="),
        );
        let wrong = check_grant(&config, &headers, &grant);
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("basic c2ltLWNsaWVudDpzaW0tc2VjcmV0"),
        );
        let right = check_grant(&config, &headers, &grant);

        assert_eq!(
            missing,
            Err(Refusal::AccessDenied("client credentials are required"))
        );
        assert_eq!(
            wrong,
            Err(Refusal::AccessDenied("invalid client credentials"))
        );
        assert_eq!(right, Ok(()));
    }

    #[test]
    fn password_grant_accepts_any_user() {
        let config = SimConfig::new("sim-token");
        let headers = HeaderMap::new();

        let any_user = check_grant(
            &config,
            &headers,
            &parse_form(b"grant_type=password&username=u&password=p"),
        );
        let no_user = check_grant(&config, &headers, &parse_form(b"grant_type=password"));

        assert_eq!(any_user, Ok(()));
        assert!(matches!(no_user, Err(Refusal::InvalidRequest(_))));
    }
}

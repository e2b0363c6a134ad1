//! Bearer tokens: a static one, or OAuth2 client credentials renewed before they expire.
//!
//! Every request asks `Authenticator::bearer` for the token. With client credentials the
//! first caller after the renewal point fetches a new token while holding the lock, so
//! concurrent workers share one renewal instead of stampeding the token endpoint.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::client::CallError;

/// A secret string (token or client secret). Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// A bearer token.
pub type Token = Secret;

impl Secret {
    /// Wraps a value read from the environment or a file.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value, for the one place that must send it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where bearer tokens come from.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// One token for the whole run (`NOTARY_TOKEN` or a token file).
    Static(Token),
    /// OAuth2 client credentials, exchanged at the platform's token endpoint.
    ClientCredentials {
        /// `{datacenter}/api/2/idp/token`.
        token_url: Url,
        /// The API client's ID.
        client_id: String,
        /// The API client's secret.
        client_secret: Secret,
    },
}

/// Hands out valid bearer tokens, renewing them when needed.
#[derive(Debug)]
pub struct Authenticator {
    credentials: Credentials,
    http: reqwest::Client,
    issued: Mutex<Option<Issued>>,
}

#[derive(Debug, Clone)]
struct Issued {
    token: Token,
    renew_at: Instant,
}

/// The token endpoint's answer (only the keys we use).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
    expires_on: Option<u64>,
}

/// Renew when this much of a token's life is left, or a quarter of a short life.
const RENEW_MARGIN: Duration = Duration::from_secs(15 * 60);

impl Authenticator {
    /// An authenticator using `http` (the Notary client's, same TLS settings) for renewals.
    pub fn new(credentials: Credentials, http: reqwest::Client) -> Authenticator {
        Authenticator {
            credentials,
            http,
            issued: Mutex::new(None),
        }
    }

    /// A token to send now.
    pub async fn bearer(&self) -> Result<Token, CallError> {
        let (token_url, client_id, client_secret) = match &self.credentials {
            Credentials::Static(token) => return Ok(token.clone()),
            Credentials::ClientCredentials {
                token_url,
                client_id,
                client_secret,
            } => (token_url, client_id, client_secret),
        };
        let mut issued = self.issued.lock().await;
        if let Some(current) = issued.as_ref().filter(|i| Instant::now() < i.renew_at) {
            return Ok(current.token.clone());
        }
        let fresh = self
            .request_token(token_url, client_id, client_secret)
            .await?;
        let token = fresh.token.clone();
        *issued = Some(fresh);
        Ok(token)
    }

    /// Forgets `token` after the service refused it with 401. Returns whether a new one
    /// can be had (never for a static token).
    pub async fn reject(&self, token: &Token) -> bool {
        if let Credentials::Static(_) = self.credentials {
            return false;
        }
        let mut issued = self.issued.lock().await;
        if issued
            .as_ref()
            .is_some_and(|current| current.token == *token)
        {
            *issued = None;
        }
        true
    }

    async fn request_token(
        &self,
        token_url: &Url,
        client_id: &str,
        client_secret: &Secret,
    ) -> Result<Issued, CallError> {
        let response = self
            .http
            .post(token_url.clone())
            .basic_auth(client_id, Some(client_secret.expose()))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|err| token_trouble(format!("cannot reach the token endpoint: {err}")))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|err| {
            token_trouble(format!("the token endpoint's answer broke off: {err}"))
        })?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(token_trouble(format!(
                "the token endpoint answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(CallError::Unauthorized(format!(
                "the token endpoint refused the client credentials: {status}{}",
                idp_error(&body)
            )));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|err| {
            token_trouble(format!("the token endpoint's answer is not a token: {err}"))
        })?;
        let lifetime = lifetime(&answer, SystemTime::now());
        let margin = RENEW_MARGIN.min(lifetime / 4);
        tracing::info!(lifetime_secs = lifetime.as_secs(), "auth.token_renewed");
        Ok(Issued {
            token: Secret::new(answer.access_token),
            renew_at: Instant::now() + lifetime.saturating_sub(margin),
        })
    }
}

/// The token's remaining life: from `expires_on` when given, else `expires_in`.
fn lifetime(answer: &TokenAnswer, now: SystemTime) -> Duration {
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    match (answer.expires_on, answer.expires_in) {
        (Some(expires_on), _) => Duration::from_secs(expires_on.saturating_sub(now_secs)),
        (None, Some(expires_in)) => Duration::from_secs(expires_in),
        // Neither: assume the platform's documented two hours.
        (None, None) => Duration::from_secs(2 * 60 * 60),
    }
}

fn token_trouble(message: String) -> CallError {
    CallError::Transient {
        message,
        retry_after: None,
        maybe_applied: false,
    }
}

/// `: error (error_description)` from the IdP's error body, if it has one.
fn idp_error(body: &[u8]) -> String {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let text = |key: &str| json.get(key).and_then(|value| value.as_str()).unwrap_or("");
    match (text("error"), text("error_description")) {
        ("", _) => String::new(),
        (error, "") => format!(": {error}"),
        (error, description) => format!(": {error} ({description})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetime_prefers_expires_on() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let answer = |expires_in, expires_on| TokenAnswer {
            access_token: String::new(),
            expires_in,
            expires_on,
        };
        assert_eq!(
            lifetime(&answer(Some(600), Some(1_100)), now),
            Duration::from_secs(100)
        );
        assert_eq!(
            lifetime(&answer(Some(600), None), now),
            Duration::from_secs(600)
        );
        assert_eq!(lifetime(&answer(None, Some(900)), now), Duration::ZERO);
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let credentials = Credentials::ClientCredentials {
            token_url: "https://dc.example/api/2/idp/token".parse().unwrap(),
            client_id: "client".to_string(),
            client_secret: Secret::new("hunter2-secret".to_string()),
        };
        assert!(!format!("{credentials:?}").contains("hunter2"));
        let token = Secret::new("s3cret-token".to_string());
        assert!(!format!("{:?}", Credentials::Static(token)).contains("s3cret"));
    }
}

//! Settings: defaults < config file < environment < flags, resolved into `Settings`.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::auth::{Credentials, Secret};
use crate::backoff::Backoff;
use crate::error::{Error, Result};

/// The environment variable that holds a static bearer token.
pub const TOKEN_ENV: &str = "NOTARY_TOKEN";

/// The environment variable that holds an API client's secret.
pub const CLIENT_SECRET_ENV: &str = "NOTARY_CLIENT_SECRET";

/// The database used when none is configured, relative to the working directory.
pub const DEFAULT_DATABASE: &str = "notary-purge.db";

/// Settings as written in a config file, a flag or an environment variable: each one
/// optional, so that layers can be merged.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// The Notary API root.
    pub base_url: Option<String>,
    /// The SQLite database file.
    pub database: Option<PathBuf>,
    /// A file holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// An API client's ID, for OAuth2 client credentials.
    pub client_id: Option<String>,
    /// A file holding the API client's secret.
    pub client_secret_file: Option<PathBuf>,
    /// The token endpoint; by default `/api/2/idp/token` on the base URL's host.
    pub token_url: Option<String>,
    /// Extra trusted root certificates (PEM), for a private CA.
    pub ca_cert: Option<PathBuf>,
    /// File IDs per bulk request.
    pub chunk_size: Option<u32>,
    /// Requests in flight at once.
    pub concurrency: Option<u32>,
    /// Requests per second over the whole run.
    pub max_requests_per_second: Option<f64>,
    /// Tries per request before its items are marked failed.
    pub max_attempts: Option<u32>,
    /// Ceiling of the first backoff, in milliseconds.
    pub backoff_base_ms: Option<u64>,
    /// Largest backoff ceiling, in milliseconds.
    pub backoff_max_ms: Option<u64>,
    /// Limit for one request, in seconds.
    pub request_timeout_secs: Option<u64>,
    /// Limit for opening a connection, in seconds.
    pub connect_timeout_secs: Option<u64>,
    /// How long a run's hold on its items lasts without renewal, in seconds.
    pub lease_secs: Option<u64>,
    /// Read each file's certificate before deleting it.
    pub capture_certificates: Option<bool>,
    /// Refuse runs over this many items unless `--yes` is given.
    pub confirm_above: Option<u64>,
    /// Allow `http://` to hosts other than loopback.
    pub allow_plain_http: Option<bool>,
}

/// Resolved, validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Notary API root, if configured.
    pub base_url: Option<Url>,
    /// The SQLite database file.
    pub database: PathBuf,
    /// A file holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// An API client's ID, for OAuth2 client credentials.
    pub client_id: Option<String>,
    /// A file holding the API client's secret.
    pub client_secret_file: Option<PathBuf>,
    /// The token endpoint, if set explicitly.
    pub token_url: Option<Url>,
    /// Extra trusted root certificates (PEM).
    pub ca_cert: Option<PathBuf>,
    /// File IDs per bulk request.
    pub chunk_size: u32,
    /// Requests in flight at once.
    pub concurrency: u32,
    /// Requests per second over the whole run.
    pub max_requests_per_second: Option<f64>,
    /// Tries per request.
    pub max_attempts: u32,
    /// Retry timing.
    pub backoff: Backoff,
    /// Limit for one request.
    pub request_timeout: Duration,
    /// Limit for opening a connection.
    pub connect_timeout: Duration,
    /// How long a run's hold on its items lasts without renewal.
    pub lease: Duration,
    /// Read each file's certificate before deleting it.
    pub capture_certificates: bool,
    /// Refuse runs over this many items unless confirmed.
    pub confirm_above: u64,
}

impl Layer {
    /// Reads a TOML config file; unknown keys and wrong types are errors naming the line.
    /// A file others may read is refused, since it says where the secrets are.
    pub fn from_file(path: &Path) -> Result<Layer> {
        check_private(path)?;
        let text = fs::read_to_string(path).map_err(|source| Error::Io {
            context: format!("cannot read config file `{}`", path.display()),
            source,
        })?;
        let layer = Layer::from_toml(path, &text)?;
        // Relative paths in the file mean the file's folder, wherever cron starts us.
        let folder = path.parent().unwrap_or(Path::new("."));
        let near = |file: Option<PathBuf>| file.map(|file| folder.join(file));
        Ok(Layer {
            database: near(layer.database),
            token_file: near(layer.token_file),
            client_secret_file: near(layer.client_secret_file),
            ca_cert: near(layer.ca_cert),
            ..layer
        })
    }

    /// Parses config text; `path` only names it in errors.
    pub fn from_toml(path: &Path, text: &str) -> Result<Layer> {
        toml::from_str(text).map_err(|err| {
            let place = match err.span() {
                Some(span) => format!(":{}", line_of(text, span.start)),
                None => String::new(),
            };
            let message = err.message().trim().replace('\n', " ");
            Error::Config(format!(
                "config file `{}{place}`: {message}; see jobs.example.toml for every key",
                path.display()
            ))
        })
    }

    /// `self` where set, else `lower`.
    pub fn over(self, lower: Layer) -> Layer {
        Layer {
            base_url: self.base_url.or(lower.base_url),
            database: self.database.or(lower.database),
            token_file: self.token_file.or(lower.token_file),
            client_id: self.client_id.or(lower.client_id),
            client_secret_file: self.client_secret_file.or(lower.client_secret_file),
            token_url: self.token_url.or(lower.token_url),
            ca_cert: self.ca_cert.or(lower.ca_cert),
            chunk_size: self.chunk_size.or(lower.chunk_size),
            concurrency: self.concurrency.or(lower.concurrency),
            max_requests_per_second: self
                .max_requests_per_second
                .or(lower.max_requests_per_second),
            max_attempts: self.max_attempts.or(lower.max_attempts),
            backoff_base_ms: self.backoff_base_ms.or(lower.backoff_base_ms),
            backoff_max_ms: self.backoff_max_ms.or(lower.backoff_max_ms),
            request_timeout_secs: self.request_timeout_secs.or(lower.request_timeout_secs),
            connect_timeout_secs: self.connect_timeout_secs.or(lower.connect_timeout_secs),
            lease_secs: self.lease_secs.or(lower.lease_secs),
            capture_certificates: self.capture_certificates.or(lower.capture_certificates),
            confirm_above: self.confirm_above.or(lower.confirm_above),
            allow_plain_http: self.allow_plain_http.or(lower.allow_plain_http),
        }
    }

    /// Fills in defaults and checks every value.
    pub fn resolve(self) -> Result<Settings> {
        let allow_plain_http = self.allow_plain_http.unwrap_or(false);
        let base_url = match &self.base_url {
            Some(text) => Some(check_api_path(parse_url(
                "base_url",
                text,
                allow_plain_http,
            )?)?),
            None => None,
        };
        let token_url = match &self.token_url {
            Some(text) => Some(parse_url("token_url", text, allow_plain_http)?),
            None => None,
        };
        let chunk_size = in_range("chunk_size", self.chunk_size.unwrap_or(100), 1, 1000)?;
        let concurrency = in_range("concurrency", self.concurrency.unwrap_or(4), 1, 256)?;
        let max_attempts = in_range("max_attempts", self.max_attempts.unwrap_or(5), 1, 100)?;
        let max_requests_per_second = match self.max_requests_per_second {
            Some(rate) if !(rate > 0.0 && rate.is_finite()) => {
                return Err(Error::Config(format!(
                    "max_requests_per_second must be a positive number, not {rate}; \
                     leave it out for no limit"
                )))
            }
            other => other,
        };
        Ok(Settings {
            base_url,
            database: self
                .database
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATABASE)),
            token_file: self.token_file,
            client_id: self.client_id,
            client_secret_file: self.client_secret_file,
            token_url,
            ca_cert: self.ca_cert,
            chunk_size,
            concurrency,
            max_requests_per_second,
            max_attempts,
            backoff: Backoff {
                base: Duration::from_millis(self.backoff_base_ms.unwrap_or(500)),
                max: Duration::from_millis(self.backoff_max_ms.unwrap_or(30_000)),
            },
            request_timeout: seconds("request_timeout_secs", self.request_timeout_secs, 60)?,
            connect_timeout: seconds("connect_timeout_secs", self.connect_timeout_secs, 10)?,
            lease: seconds("lease_secs", self.lease_secs, 300)?,
            capture_certificates: self.capture_certificates.unwrap_or(true),
            confirm_above: self.confirm_above.unwrap_or(100_000),
        })
    }
}

impl Settings {
    /// The base URL, or an error saying how to set it.
    pub fn require_base_url(&self) -> Result<&Url> {
        self.base_url.as_ref().ok_or_else(|| {
            Error::Config(
                "no Notary base URL: set `base_url` in the config file, NOTARY_PURGE_BASE_URL \
                 or --base-url (e.g. https://eu2-cloud.acronis.com/api/notary/v2)"
                    .to_string(),
            )
        })
    }

    /// Where tokens come from: `NOTARY_TOKEN`, else `token_file`, else client
    /// credentials (`client_id` with `NOTARY_CLIENT_SECRET` or `client_secret_file`).
    pub fn credentials(&self) -> Result<Credentials> {
        if let Ok(value) = std::env::var(TOKEN_ENV) {
            return non_empty(value, TOKEN_ENV).map(Credentials::Static);
        }
        if let Some(path) = &self.token_file {
            return read_secret(path).map(Credentials::Static);
        }
        let Some(client_id) = &self.client_id else {
            return Err(Error::Config(format!(
                "no credentials: set {TOKEN_ENV}, `token_file`, or `client_id` with \
                 {CLIENT_SECRET_ENV} or `client_secret_file` (see the README)"
            )));
        };
        let client_secret = match (std::env::var(CLIENT_SECRET_ENV), &self.client_secret_file) {
            (Ok(value), _) => non_empty(value, CLIENT_SECRET_ENV)?,
            (Err(_), Some(path)) => read_secret(path)?,
            (Err(_), None) => {
                return Err(Error::Config(format!(
                    "`client_id` is set but its secret is not: set {CLIENT_SECRET_ENV} or \
                     `client_secret_file`"
                )))
            }
        };
        Ok(Credentials::ClientCredentials {
            token_url: self.token_url()?,
            client_id: client_id.clone(),
            client_secret,
        })
    }

    /// The token endpoint: `token_url`, else `/api/2/idp/token` on the base URL's host.
    fn token_url(&self) -> Result<Url> {
        if let Some(url) = &self.token_url {
            return Ok(url.clone());
        }
        let mut url = self.require_base_url()?.clone();
        url.set_path("/api/2/idp/token");
        url.set_query(None);
        Ok(url)
    }
}

fn read_secret(path: &Path) -> Result<Secret> {
    check_private(path)?;
    let value = fs::read_to_string(path).map_err(|source| Error::Io {
        context: format!("cannot read secret file `{}`", path.display()),
        source,
    })?;
    non_empty(value, &format!("secret file `{}`", path.display()))
}

fn non_empty(value: String, origin: &str) -> Result<Secret> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::Config(format!("{origin} is empty")));
    }
    // It goes into an HTTP header: visible ASCII only (the value is never shown).
    if !value.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(Error::Config(format!(
            "{origin} holds spaces, line breaks or other characters a credential cannot have"
        )));
    }
    Ok(Secret::new(value.to_string()))
}

/// Refuses a file that group members may write or others may read (0600 and 0640 pass).
pub fn check_private(path: &Path) -> Result<()> {
    let metadata = fs::metadata(path).map_err(|source| Error::Io {
        context: format!("cannot read `{}`", path.display()),
        source,
    })?;
    if !metadata.is_file() {
        return Err(Error::Config(format!("`{}` is not a file", path.display())));
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o037 != 0 {
        // Name the real file: the advice must not be applied through a symbolic link
        // to something else by mistake.
        let real = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        return Err(Error::Config(format!(
            "`{}` must be private (mode 0600 or 0640), but its mode is {mode:04o}; \
             run `chmod 600 {}`",
            path.display(),
            real.display()
        )));
    }
    Ok(())
}

fn parse_url(name: &str, text: &str, allow_plain_http: bool) -> Result<Url> {
    let url = match Url::parse(text) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) if !text.contains(char::is_whitespace) => {
            return Err(Error::Config(format!(
                "{name} `{text}` has no scheme; write it as `https://{text}`"
            )))
        }
        Err(err) => {
            return Err(Error::Config(format!(
                "{name} `{text}` is not a URL: {err}"
            )))
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Config(format!(
            "{name} must not hold credentials (`user:password@`); use the token settings"
        )));
    }
    let is_loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(domain)) => domain == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback || allow_plain_http => Ok(url),
        "http" => Err(Error::Config(format!(
            "{name} `{text}` uses plain http to a host that is not loopback; use https, \
             or set allow_plain_http = true if you really mean it"
        ))),
        other => Err(Error::Config(format!(
            "{name} `{text}` has scheme `{other}`; use https"
        ))),
    }
}

/// Refuses a base URL without the Notary API's path: there, every call would answer 404
/// `{}`, which for a file means "already gone", and nothing would be deleted.
fn check_api_path(url: Url) -> Result<Url> {
    let path = url.path().trim_end_matches('/');
    let version = path.rsplit_once("/notary/v").map(|(_, version)| version);
    let is_api = version.is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
    if is_api {
        return Ok(url);
    }
    Err(Error::Config(format!(
        "base_url `{url}` does not end with the Notary API's path (`/api/notary/v2`); \
         write it as e.g. https://eu2-cloud.acronis.com/api/notary/v2"
    )))
}

fn in_range(name: &str, value: u32, low: u32, high: u32) -> Result<u32> {
    if value < low || high < value {
        return Err(Error::Config(format!(
            "{name} must be between {low} and {high}, not {value}"
        )));
    }
    Ok(value)
}

fn seconds(name: &str, value: Option<u64>, default: u64) -> Result<Duration> {
    match value.unwrap_or(default) {
        0 => Err(Error::Config(format!("{name} must be at least 1"))),
        secs => Ok(Duration::from_secs(secs)),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(toml_text: &str) -> Result<Layer> {
        Layer::from_toml(Path::new("jobs.toml"), toml_text)
    }

    #[track_caller]
    fn check_error(toml_text: &str, expected: &[&str]) {
        let err = layer(toml_text)
            .and_then(Layer::resolve)
            .unwrap_err()
            .to_string();
        for part in expected {
            assert!(err.contains(part), "{err:?} lacks {part:?}");
        }
    }

    #[test]
    fn the_example_config_is_valid() {
        let example = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/jobs.example.toml"));
        let text = fs::read_to_string(example).unwrap();
        Layer::from_toml(example, &text).unwrap().resolve().unwrap();
    }

    #[test]
    fn bad_configs_are_named_precisely() {
        check_error(
            "chunk_size = 10\nchunksize = 5\n",
            &["jobs.toml:2", "unknown field `chunksize`"],
        );
        check_error("concurrency = \"four\"\n", &["jobs.toml:1", "invalid type"]);
        check_error(
            "base_url = \"example.com/api\"\n",
            &["no scheme", "https://example.com/api"],
        );
        check_error("base_url = \"http://example.com/api\"\n", &["plain http"]);
        check_error(
            "chunk_size = 0\n",
            &["chunk_size must be between 1 and 1000"],
        );
        check_error("max_requests_per_second = -1.0\n", &["positive"]);
    }

    #[test]
    fn higher_layers_win() {
        let file = Layer {
            chunk_size: Some(50),
            concurrency: Some(8),
            ..Layer::default()
        };
        let flags = Layer {
            chunk_size: Some(10),
            ..Layer::default()
        };
        let settings = flags.over(file).resolve().unwrap();
        assert_eq!((settings.chunk_size, settings.concurrency), (10, 8));
        assert_eq!(settings.max_attempts, 5);
    }
}

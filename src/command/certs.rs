//! `certs`: print archived certificates, or stream the whole archive.

use std::io::{self, Write};

use reqwest::Url;

use crate::command::{open_store, Exit, GlobalArgs};
use crate::config::Layer;
use crate::error::{Error, Result};
use crate::file_id::FileId;
use crate::store::{Certificate, Store};

/// Rows read from the database at a time while exporting.
const EXPORT_PAGE: u32 = 1000;

/// Print archived certificates, or export the whole archive
///
/// For each file ID: the certificate ID and its public page
/// (https://{host}/notary/certificate/{cert}, host from the base URL). Exit code 1 if
/// any file has no certificate in the archive.
///
/// Examples:
///
///   notary-purge certs aa95bac7-33fd-4faa-9fa1-f4baeaca82cd
///
///   notary-purge certs --export csv --since 2026-12-01 > certificates.csv
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Export every archived certificate to stdout in this format
    #[arg(long, value_enum, conflicts_with = "file_ids", value_name = "FORMAT")]
    export: Option<ExportFormat>,
    /// With --export: only certificates recorded at or after this UTC time
    /// (2026-12-01 or 2026-12-01T08:00:00Z)
    #[arg(long, requires = "export", value_name = "TIME")]
    since: Option<String>,
    /// File IDs to look up
    #[arg(value_name = "FILE_ID", required_unless_present = "export")]
    file_ids: Vec<String>,
}

/// Export formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values with a header row
    Csv,
    /// One JSON object per line, with the service's raw entry
    Jsonl,
}

/// Runs `certs`.
pub async fn run(global: &GlobalArgs, args: Args) -> Result<Exit> {
    let settings = global.settings(Layer::default())?;
    let store = open_store(&settings).await?;
    if let Some(format) = args.export {
        let since = match &args.since {
            Some(text) => Some(parse_since(text)?),
            None => None,
        };
        export(&store, format, since.as_deref()).await?;
        store.close().await;
        return Ok(Exit::Success);
    }

    let mut n_missing = 0;
    for text in &args.file_ids {
        let Ok(file_id) = text.trim().parse::<FileId>() else {
            eprintln!("error: `{text}` is not a file ID (a UUID)");
            n_missing += 1;
            continue;
        };
        match store.certificate(&file_id.to_canonical()).await? {
            Some(certificate) => {
                let page = page_url(settings.base_url.as_ref(), &certificate.cert);
                outln!("{file_id} {} {page}", certificate.cert);
                if let Some(anomaly) = &certificate.anomaly {
                    eprintln!("{file_id}: note: {anomaly}");
                }
            }
            None => {
                eprintln!("{file_id}: no certificate in the archive");
                n_missing += 1;
            }
        }
    }
    store.close().await;
    Ok(if n_missing > 0 {
        Exit::ItemsFailed
    } else {
        Exit::Success
    })
}

/// Turns `2026-12-01` or `2026-12-01T08:00:00Z` (UTC, optional fraction) into the
/// archive's own time format, so that comparing text compares times.
fn parse_since(text: &str) -> Result<String> {
    let invalid = || {
        Error::Config(format!(
            "--since `{text}` is not a UTC time; write 2026-12-01 or 2026-12-01T08:00:00Z"
        ))
    };
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time.strip_suffix('Z').ok_or_else(invalid)?)),
        None => (text, None),
    };
    let number = |part: &str, digits: usize, low: u32, high: u32| -> Result<u32> {
        let value: u32 = part.parse().map_err(|_| invalid())?;
        let ok = part.len() == digits && low <= value && value <= high;
        ok.then_some(value).ok_or_else(invalid)
    };
    let date_parts: Vec<&str> = date.split('-').collect();
    let [year, month, day] = date_parts[..] else {
        return Err(invalid());
    };
    let (year, month, day) = (
        number(year, 4, 1970, 9999)?,
        number(month, 2, 1, 12)?,
        number(day, 2, 1, 31)?,
    );
    let (hour, minute, second, millis) = match time {
        None => (0, 0, 0, 0),
        Some(time) => {
            let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
            let clock_parts: Vec<&str> = clock.split(':').collect();
            let [hour, minute, second] = clock_parts[..] else {
                return Err(invalid());
            };
            if fraction.is_empty() || !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(invalid());
            }
            let fraction = format!("{fraction:0<3}");
            (
                number(hour, 2, 0, 23)?,
                number(minute, 2, 0, 59)?,
                number(second, 2, 0, 60)?,
                number(&fraction[..3], 3, 0, 999)?,
            )
        }
    };
    Ok(format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z"
    ))
}

/// The certificate's public page, on the host of the base URL.
pub fn page_url(base_url: Option<&Url>, cert: &str) -> String {
    match base_url.and_then(|url| Some((url.scheme(), url.host_str()?, url.port()))) {
        Some((scheme, host, Some(port))) => {
            format!("{scheme}://{host}:{port}/notary/certificate/{cert}")
        }
        Some((scheme, host, None)) => format!("{scheme}://{host}/notary/certificate/{cert}"),
        None => "(set base_url to see the certificate page)".to_string(),
    }
}

async fn export(store: &Store, format: ExportFormat, since: Option<&str>) -> Result<()> {
    let out = io::BufWriter::new(io::stdout().lock());
    match format {
        ExportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            writer
                .write_record(["file_id", "cert", "deleted_at", "batch_id", "anomaly"])
                .map_err(csv_error)?;
            for_each_certificate(store, since, |certificate| {
                write_csv(&mut writer, certificate)
            })
            .await?;
            writer.flush().map_err(write_error)
        }
        ExportFormat::Jsonl => {
            let mut out = out;
            for_each_certificate(store, since, |certificate| {
                write_jsonl(&mut out, certificate).map_err(write_error)
            })
            .await?;
            out.flush().map_err(write_error)
        }
    }
}

/// Walks the archive a page at a time, so memory stays flat however large it is.
async fn for_each_certificate(
    store: &Store,
    since: Option<&str>,
    mut write: impl FnMut(&Certificate) -> Result<()>,
) -> Result<()> {
    let mut after = 0;
    loop {
        let page = store.certificates_page(after, since, EXPORT_PAGE).await?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = *last;
        for (_, certificate) in &page {
            write(certificate)?;
        }
    }
}

fn write_error(err: io::Error) -> Error {
    Error::Io {
        context: "cannot write the export to stdout".to_string(),
        source: err,
    }
}

fn write_csv<W: Write>(writer: &mut csv::Writer<W>, certificate: &Certificate) -> Result<()> {
    let batch_id = certificate
        .batch_id
        .map(|id| id.to_string())
        .unwrap_or_default();
    writer
        .write_record([
            certificate.file_id.as_str(),
            certificate.cert.as_str(),
            certificate.deleted_at.as_str(),
            batch_id.as_str(),
            certificate.anomaly.as_deref().unwrap_or(""),
        ])
        .map_err(csv_error)
}

fn write_jsonl(out: &mut impl Write, certificate: &Certificate) -> io::Result<()> {
    let raw: serde_json::Value =
        serde_json::from_str(&certificate.raw).unwrap_or(serde_json::Value::Null);
    let value = serde_json::json!({
        "file_id": certificate.file_id,
        "cert": certificate.cert,
        "deleted_at": certificate.deleted_at,
        "batch_id": certificate.batch_id,
        "anomaly": certificate.anomaly,
        "raw": raw,
    });
    writeln!(out, "{value}")
}

fn csv_error(err: csv::Error) -> Error {
    match err.into_kind() {
        csv::ErrorKind::Io(source) => write_error(source),
        other => write_error(io::Error::other(format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_utc_dates_and_times_only() {
        let check = |text: &str| parse_since(text).ok();
        assert_eq!(
            check("2026-12-01").as_deref(),
            Some("2026-12-01T00:00:00.000Z")
        );
        assert_eq!(
            check("2026-12-01T08:05:09Z").as_deref(),
            Some("2026-12-01T08:05:09.000Z")
        );
        assert_eq!(
            check("2026-12-01T08:05:09.5Z").as_deref(),
            Some("2026-12-01T08:05:09.500Z")
        );
        let bads = [
            "yesterday",
            "2026-13-45",
            "2026-12-4",
            "2026-12-04T16:00:00+02:00",
            "",
        ];
        for bad in bads
            .into_iter()
            .chain(["2026-12-01T08:05:09.ééZ", "2026-12-01T08:05:09.Z"])
        {
            assert_eq!(check(bad), None, "{bad}");
        }
    }
}

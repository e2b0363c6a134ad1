//! `FileId`: a validated Notary file ID (a UUID in canonical lower-case form).

use std::fmt;
use std::str::FromStr;

/// A Notary file ID: a UUID, stored and sent in lower-case hyphenated form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(uuid::Uuid);

/// Why a string is not a file ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a UUID (expected 8-4-4-4-12 hex digits)")]
pub struct InvalidFileId;

impl FileId {
    /// The canonical text form, e.g. `aa95bac7-33fd-4faa-9fa1-f4baeaca82cd`.
    pub fn to_canonical(&self) -> String {
        self.0.hyphenated().to_string()
    }
}

impl FromStr for FileId {
    type Err = InvalidFileId;

    /// Accepts only the hyphenated form (any case); braces, URNs and the 32-digit
    /// simple form are refused because the service documents none of them.
    fn from_str(text: &str) -> Result<FileId, InvalidFileId> {
        let is_hyphenated = text.len() == 36 && text.as_bytes()[8] == b'-';
        if !is_hyphenated {
            return Err(InvalidFileId);
        }
        uuid::Uuid::try_parse(text)
            .map(FileId)
            .map_err(|_| InvalidFileId)
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Option<&str>) {
        let parsed = input.parse::<FileId>().ok().map(|id| id.to_string());
        assert_eq!(parsed.as_deref(), expected, "input {input:?}");
    }

    #[test]
    fn parses_only_hyphenated_uuids_and_lowercases_them() {
        let id = "aa95bac7-33fd-4faa-9fa1-f4baeaca82cd";
        check(id, Some(id));
        check("AA95BAC7-33FD-4FAA-9FA1-F4BAEACA82CD", Some(id));
        check("1376fc15-a0aa-4120-9f27-112a0563b46", None);
        check("aa95bac733fd4faa9fa1f4baeaca82cd", None);
        check("{aa95bac7-33fd-4faa-9fa1-f4baeaca82cd}", None);
        check("urn:uuid:aa95bac7-33fd-4faa-9fa1-f4baeaca82c", None);
        check("zz95bac7-33fd-4faa-9fa1-f4baeaca82cd", None);
        check("", None);
    }
}

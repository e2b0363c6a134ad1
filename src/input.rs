//! Reading lists of file IDs as people and spreadsheets write them.
//!
//! One ID per line. A UTF-8 byte-order mark, CRLF line ends, blank lines, surrounding
//! white space, `#` comments (whole-line or after an ID) and upper case are all fine.

use std::io::{self, BufRead};

use crate::file_id::FileId;

/// One meaningful line of input: an ID or a line that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number (or argument position) in the input.
    pub line: u64,
    /// The parsed ID, or the offending text.
    pub id: Result<FileId, String>,
}

/// Reads entries from `reader` one line at a time, skipping blanks and comments.
pub struct Entries<R> {
    reader: R,
    line: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> Entries<R> {
    /// Wraps a reader; nothing is read until the first `next`.
    pub fn new(reader: R) -> Entries<R> {
        Entries {
            reader,
            line: 0,
            buf: Vec::new(),
        }
    }
}

impl<R: BufRead> Iterator for Entries<R> {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<io::Result<Entry>> {
        loop {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => (),
                Err(err) => return Some(Err(err)),
            }
            self.line += 1;
            let mut bytes = &self.buf[..];
            if self.line == 1 {
                bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            }
            let text = String::from_utf8_lossy(bytes);
            if let Some(id) = parse_line(&text) {
                return Some(Ok(Entry {
                    line: self.line,
                    id,
                }));
            }
        }
    }
}

/// How much of a line that is not an ID is kept and shown.
const SHOWN_CHARS: usize = 80;

/// Parses one line: `None` for a blank or comment line.
pub fn parse_line(text: &str) -> Option<Result<FileId, String>> {
    let without_comment = match text.find('#') {
        Some(hash) => &text[..hash],
        None => text,
    };
    let candidate = without_comment.trim();
    if candidate.is_empty() {
        return None;
    }
    Some(candidate.parse().map_err(|_| printable(candidate)))
}

/// A bad line as it may be stored and shown: control characters escaped (so that no
/// input can drive the terminal) and cut to a length a person can read.
pub fn printable(text: &str) -> String {
    let cut: String = text.chars().take(SHOWN_CHARS).collect();
    let mut shown = escape_controls(&cut);
    if text.chars().nth(SHOWN_CHARS).is_some() {
        shown.push('…');
    }
    shown
}

/// `text` with its control characters escaped.
pub fn escape_controls(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c.is_control() {
            true => escaped.extend(c.escape_debug()),
            false => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(input: &[u8]) -> Vec<(u64, Result<String, String>)> {
        Entries::new(input)
            .map(|entry| {
                let entry = entry.unwrap();
                (entry.line, entry.id.map(|id| id.to_string()))
            })
            .collect()
    }

    #[test]
    fn skips_bom_comments_blanks_and_crlf() {
        let input =
            b"\xEF\xBB\xBF# header\r\n\r\n  \t\r\nAA95BAC7-33FD-4FAA-9FA1-F4BAEACA82CD # x\r\n";
        let expected = vec![(4, Ok("aa95bac7-33fd-4faa-9fa1-f4baeaca82cd".to_string()))];
        assert_eq!(entries(input), expected);
    }

    #[test]
    fn reports_bad_lines_with_their_number_and_text() {
        let input = b"aa95bac7-33fd-4faa-9fa1-f4baeaca82cd\nnot-an-id\n\xFF\xFE";
        let got = entries(input);
        assert_eq!(got[1], (2, Err("not-an-id".to_string())));
        assert_eq!(got[2].0, 3);
        assert!(got[2].1.is_err());
    }

    #[test]
    fn bad_lines_are_kept_short_and_harmless() {
        let long = "x".repeat(10_000);
        let shown = printable(&long);
        assert_eq!(shown.chars().count(), SHOWN_CHARS + 1);
        assert_eq!(
            printable("x\u{1b}]0;pwned\u{7}\0"),
            "x\\u{1b}]0;pwned\\u{7}\\0"
        );
    }

    #[test]
    fn reads_a_last_line_without_newline() {
        let input = b"aa95bac7-33fd-4faa-9fa1-f4baeaca82cd";
        assert_eq!(entries(input).len(), 1);
    }
}

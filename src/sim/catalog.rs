//! The simulated file catalogue: which file ids exist, who owns them, their metadata and
//! their certificates.
//!
//! Generated and foreign files are never materialised: their ids encode their number, and
//! every other property is computed from that number on demand.

use serde_json::{json, Value};

use crate::sim::GUIDE_FILES;

/// Prefix of generated file ids; the last 12 hex digits are the file number.
pub(super) const GENERATED_PREFIX: &str = "00000000-0000-4000-8000-";
/// Prefix of foreign file ids; the last 12 hex digits are the file number.
pub(super) const FOREIGN_PREFIX: &str = "00000000-0000-4000-9000-";

/// Name, size and creation time of the guide files, as in the guide's example answer.
const GUIDE_META: [(&str, u64, &str); 2] = [
    ("contract-2019.pdf", 48213, "2019-03-14T09:12:44.000Z"),
    ("invoice-0042.pdf", 1022, "2019-04-02T17:01:05.000Z"),
];
/// The contract address shown in the service's example certificate.
const CONTRACT: &str = "0xd10e3Be2bc8f959Bc8C41CF65F60dE721cF89ADF";

// Domains keep the digests of different certificate fields apart.
const CERT_DOMAIN: u64 = 0x6365_7274_6966_6963;
const TXID_DOMAIN: u64 = 0x7478_6964_7478_6964;
const ROOT_DOMAIN: u64 = 0x726f_6f74_726f_6f74;
const PROOF_DOMAIN: u64 = 0x7072_6f6f_6670_726f;
const ETAG_DOMAIN: u64 = 0x6574_6167_6574_6167;
const SENDER_DOMAIN: u64 = 0x7365_6e64_6572_7365;
const UNREQUESTED_DOMAIN: u64 = 0x756e_7265_7175_6573;
/// Seeds of the guide and foreign files sit far away from the generated numbers.
const GUIDE_SEED: u64 = 0xffff_0000_0000_0000;
const FOREIGN_SEED: u64 = 0xfeed_0000_0000_0000;

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
const MIX_A: u64 = 0xbf58_476d_1ce4_e5b9;
const MIX_B: u64 = 0x94d0_49bb_1331_11eb;
const MIX_A_INVERSE: u64 = modular_inverse(MIX_A);
const MIX_B_INVERSE: u64 = modular_inverse(MIX_B);

/// How many files of each synthetic kind the simulator holds.
#[derive(Clone, Copy, Debug)]
pub(super) struct Catalog {
    /// Generated files are numbered `0..generated_files`.
    pub(super) generated_files: u64,
    /// Foreign files are numbered `0..foreign_files`.
    pub(super) foreign_files: u64,
}

/// One file the simulator knows about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum FileRef {
    /// An index into `GUIDE_FILES`.
    Guide(usize),
    /// Generated file number `n`.
    Generated(u64),
    /// Foreign file number `n`, owned by another account.
    Foreign(u64),
}

impl Catalog {
    /// Finds the file with this lower-case id, if the catalogue holds one.
    pub(super) fn resolve_file(&self, file_id: &str) -> Option<FileRef> {
        if let Some(guide_idx) = GUIDE_FILES.iter().position(|(id, _)| *id == file_id) {
            return Some(FileRef::Guide(guide_idx));
        }
        if let Some(n) = file_id
            .strip_prefix(GENERATED_PREFIX)
            .and_then(parse_number)
        {
            return (n < self.generated_files).then_some(FileRef::Generated(n));
        }
        let n = file_id
            .strip_prefix(FOREIGN_PREFIX)
            .and_then(parse_number)?;
        (n < self.foreign_files).then_some(FileRef::Foreign(n))
    }

    /// Finds the file whose certificate has this lower-case id.
    ///
    /// Certificates of foreign files are not known to the caller's account and never resolve.
    pub(super) fn resolve_cert(&self, cert: &str) -> Option<FileRef> {
        if let Some(guide_idx) = GUIDE_FILES.iter().position(|(_, known)| *known == cert) {
            return Some(FileRef::Guide(guide_idx));
        }
        let first_word = cert.get(..16).filter(|_| cert.len() == 64)?;
        let word = u64::from_str_radix(first_word, 16).ok()?;
        let n = unmix(word) ^ CERT_DOMAIN;
        let is_known = n < self.generated_files && digest_hex(n, CERT_DOMAIN) == cert;
        is_known.then_some(FileRef::Generated(n))
    }
}

impl FileRef {
    /// The file id, in lower case.
    pub(super) fn id(self) -> String {
        match self {
            FileRef::Guide(guide_idx) => GUIDE_FILES[guide_idx].0.to_owned(),
            FileRef::Generated(n) => numbered_id(GENERATED_PREFIX, n),
            FileRef::Foreign(n) => numbered_id(FOREIGN_PREFIX, n),
        }
    }

    /// The 64-hex id of the file's certificate.
    pub(super) fn cert(self) -> String {
        match self {
            FileRef::Guide(guide_idx) => GUIDE_FILES[guide_idx].1.to_owned(),
            FileRef::Generated(n) => digest_hex(n, CERT_DOMAIN),
            FileRef::Foreign(n) => digest_hex(FOREIGN_SEED ^ n, CERT_DOMAIN),
        }
    }

    /// The file name.
    pub(super) fn name(self) -> String {
        match self {
            FileRef::Guide(guide_idx) => GUIDE_META[guide_idx].0.to_owned(),
            FileRef::Generated(n) => format!("file-{n}.pdf"),
            FileRef::Foreign(n) => format!("foreign-{n}.pdf"),
        }
    }

    /// The file size in bytes.
    pub(super) fn size(self) -> u64 {
        match self {
            FileRef::Guide(guide_idx) => GUIDE_META[guide_idx].1,
            FileRef::Generated(n) | FileRef::Foreign(n) => 1000 + n % 5000,
        }
    }

    /// The creation time, ISO 8601 with milliseconds, in UTC.
    pub(super) fn created_at(self) -> String {
        let n = match self {
            FileRef::Guide(guide_idx) => return GUIDE_META[guide_idx].2.to_owned(),
            FileRef::Generated(n) | FileRef::Foreign(n) => n,
        };
        let second_of_day = n.wrapping_mul(7919) % 86_400;
        let fields = [
            (2020 + (n / 336) % 6, 4, '-'),
            ((n / 28) % 12 + 1, 2, '-'),
            (n % 28 + 1, 2, 'T'),
            (second_of_day / 3600, 2, ':'),
            (second_of_day / 60 % 60, 2, ':'),
            (second_of_day % 60, 2, '.'),
            (n.wrapping_mul(37) % 1000, 3, 'Z'),
        ];

        // Written by hand: `format!` with seven padded fields dominated bulk answers.
        let mut created_at = String::with_capacity(24);
        for (value, n_digits, separator) in fields {
            for digit_idx in (0..n_digits).rev() {
                let digit = (value / 10u64.pow(digit_idx) % 10) as u8;
                created_at.push(char::from(b'0' + digit));
            }
            created_at.push(separator);
        }
        created_at
    }

    /// The stored-file object returned by `GET /stored-files/{id}`.
    pub(super) fn file_json(self) -> Value {
        json!({
            "id": self.id(),
            "name": self.name(),
            "size": self.size(),
            "created_at": self.created_at(),
            "certificate_id": self.cert(),
            "certificate": self.certificate_json(),
        })
    }

    /// The certificate object, the same embedded in a file and returned on its own.
    pub(super) fn certificate_json(self) -> Value {
        let seed = self.seed();
        json!({
            "id": self.cert(),
            "blockchain": "eth",
            "contract": CONTRACT,
            "sender": format!("0x{}", &digest_hex(seed, SENDER_DOMAIN)[..40]),
            "txid": format!("0x{}", digest_hex(seed, TXID_DOMAIN)),
            "timestamp": 1_573_572_432 + seed % 100_000_000,
            "merkle_root": digest_hex(seed, ROOT_DOMAIN),
            "merkle_proof": format!("[{{\"right\":\"{}\"}}]", digest_hex(seed, PROOF_DOMAIN)),
            "object": {
                "eTag": digest_hex(seed, ETAG_DOMAIN),
                "key": self.name(),
                "sequencer": &digest_hex(seed, ETAG_DOMAIN)[..18],
                "size": self.size(),
            },
        })
    }

    fn seed(self) -> u64 {
        match self {
            FileRef::Guide(guide_idx) => GUIDE_SEED + guide_idx as u64,
            FileRef::Generated(n) => n,
            FileRef::Foreign(n) => FOREIGN_SEED ^ n,
        }
    }
}

/// A certificate-shaped id for a made-up file that the catalogue does not hold.
pub(super) fn unrequested_cert(seed: u64) -> String {
    digest_hex(seed, UNREQUESTED_DOMAIN)
}

/// Sixty-four lower-case hex digits derived from `seed`, distinct per `domain`.
///
/// The first word is `mix(seed ^ domain)`, so `unmix` recovers the seed from it.
pub(super) fn digest_hex(seed: u64, domain: u64) -> String {
    let mut digest = String::with_capacity(64);
    for word_idx in 0..4u64 {
        push_hex(
            &mut digest,
            mix(seed ^ domain ^ word_idx.wrapping_mul(GOLDEN)),
            16,
        );
    }
    digest
}

/// A generated or foreign id: the prefix, then `n` as 12 hex digits.
fn numbered_id(prefix: &str, n: u64) -> String {
    if n >> 48 != 0 {
        return format!("{prefix}{n:012x}");
    }
    let mut file_id = String::with_capacity(36);
    file_id.push_str(prefix);
    push_hex(&mut file_id, n, 12);
    file_id
}

/// Appends the low `n_digits` hex digits of `word`; `format!` is several times slower, and
/// bulk answers call this hundreds of times per request.
fn push_hex(out: &mut String, word: u64, n_digits: u32) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for digit_idx in (0..n_digits).rev() {
        out.push(char::from(DIGITS[(word >> (digit_idx * 4)) as usize & 0xf]));
    }
}

/// Parses the 12 lower-case hex digits that end a generated or foreign id.
fn parse_number(digits: &str) -> Option<u64> {
    let is_number = digits.len() == 12
        && digits
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
    if !is_number {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// The splitmix64 finaliser: a bijection on `u64` that scatters nearby inputs.
pub(super) fn mix(mut word: u64) -> u64 {
    word = (word ^ (word >> 30)).wrapping_mul(MIX_A);
    word = (word ^ (word >> 27)).wrapping_mul(MIX_B);
    word ^ (word >> 31)
}

/// The inverse of [`mix`].
pub(super) fn unmix(mut word: u64) -> u64 {
    word = undo_xor_shift(word, 31).wrapping_mul(MIX_B_INVERSE);
    word = undo_xor_shift(word, 27).wrapping_mul(MIX_A_INVERSE);
    undo_xor_shift(word, 30)
}

/// Inverts `word ^ (word >> shift)`; each round fixes `shift` more high bits.
fn undo_xor_shift(mixed: u64, shift: u32) -> u64 {
    let mut word = mixed;
    for _ in 0..64 / shift {
        word = mixed ^ (word >> shift);
    }
    word
}

/// The inverse of an odd number modulo 2^64, by Newton's iteration.
const fn modular_inverse(odd: u64) -> u64 {
    // An odd number is its own inverse modulo 8; each round doubles the correct low bits.
    let mut inverse = odd;
    let mut round = 0;
    while round < 5 {
        inverse = inverse.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inverse)));
        round += 1;
    }
    inverse
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: Catalog = Catalog {
        generated_files: 1000,
        foreign_files: 3,
    };

    #[test]
    fn unmix_inverts_mix() {
        for word in [
            0,
            1,
            2,
            63,
            1 << 40,
            GOLDEN,
            u64::MAX,
            0x0123_4567_89ab_cdef,
        ] {
            assert_eq!(unmix(mix(word)), word, "word {word:#x}");
        }
    }

    #[test]
    fn resolves_ids_of_every_kind() {
        #[track_caller]
        fn case(file_id: &str, expected: Option<FileRef>) {
            assert_eq!(CATALOG.resolve_file(file_id), expected, "{file_id}");
        }

        case(GUIDE_FILES[1].0, Some(FileRef::Guide(1)));
        case(
            "00000000-0000-4000-8000-000000000000",
            Some(FileRef::Generated(0)),
        );
        case(
            "00000000-0000-4000-8000-0000000003e7",
            Some(FileRef::Generated(999)),
        );
        case("00000000-0000-4000-8000-0000000003e8", None);
        case(
            "00000000-0000-4000-9000-000000000002",
            Some(FileRef::Foreign(2)),
        );
        case("00000000-0000-4000-9000-000000000003", None);
        case("00000000-0000-4000-8000-+00000000001", None);
        case("5a486531-0201-43e0-bd81-d544bb08d0dc", None);
    }

    #[test]
    fn file_ids_round_trip() {
        for file in [
            FileRef::Guide(0),
            FileRef::Generated(77),
            FileRef::Foreign(1),
        ] {
            assert_eq!(CATALOG.resolve_file(&file.id()), Some(file));
        }
    }

    #[test]
    fn certificates_resolve_back_to_their_file() {
        for file in [FileRef::Guide(0), FileRef::Guide(1), FileRef::Generated(0)] {
            assert_eq!(CATALOG.resolve_cert(&file.cert()), Some(file));
        }
        assert_eq!(
            CATALOG.resolve_cert(&FileRef::Generated(999).cert()),
            Some(FileRef::Generated(999))
        );
        assert_eq!(CATALOG.resolve_cert(&FileRef::Generated(1000).cert()), None);
        assert_eq!(CATALOG.resolve_cert(&FileRef::Foreign(0).cert()), None);
        assert_eq!(CATALOG.resolve_cert(&"0".repeat(64)), None);
    }

    #[test]
    fn created_at_is_iso_8601_with_milliseconds() {
        assert_eq!(
            FileRef::Generated(0).created_at(),
            "2020-01-01T00:00:00.000Z"
        );
        assert_eq!(
            FileRef::Generated(123_456).created_at(),
            "2021-06-05T08:54:24.872Z"
        );
    }
}

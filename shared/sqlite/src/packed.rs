//! Record texts as the database keeps them: JSON compressed with LZ4 against a built-in dictionary
//! of typical records (a referral, its queue message, a lead, a contribution, a sync run).
//! Records share their keys and most of their shape, so a referral's ~3 KB shrinks to about a
//! third, and SQLite writes (and checkpoints, and journals) a third of the pages. Since schema
//! version 2; a text column value (written before) reads as it is.

use hunter_core::adapters::lz4_text;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};

/// The first byte of a packed value, then [`lz4_text`]'s layout (the text's length, the LZ4
/// block) against [`DICTIONARY`]. Values once written must stay readable, so a new dictionary
/// needs a new tag, never a changed file.
const LZ4_WITH_DICTIONARY_V1: u8 = 1;

/// Typical records, one JSON document a line.
const DICTIONARY: &[u8] = include_bytes!("record_dictionary.jsonl");

/// `text` packed for a record or message column.
pub(crate) fn pack(text: &str) -> Vec<u8> {
    let mut packed = vec![LZ4_WITH_DICTIONARY_V1];
    lz4_text::pack_into(&mut packed, text, DICTIONARY);
    packed
}

/// Why a stored value does not read as a text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum UnpackError {
    #[error("a packed value of unknown format {0} (written by a newer build?)")]
    UnknownFormat(u8),
    #[error(transparent)]
    Damaged(#[from] lz4_text::UnpackError),
}

/// The text of a packed value.
pub(crate) fn unpack(packed: &[u8]) -> Result<String, UnpackError> {
    match packed.split_first() {
        Some((&LZ4_WITH_DICTIONARY_V1, rest)) => Ok(lz4_text::unpack(rest, DICTIONARY)?),
        Some((&format, _)) => Err(UnpackError::UnknownFormat(format)),
        None => Err(lz4_text::UnpackError::Corrupt.into()),
    }
}

/// A record or message column's text, packed ([`pack`]) or, as written before schema
/// version 2, plain text.
pub(crate) struct StoredText(pub String);

impl FromSql for StoredText {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Blob(packed) => unpack(packed)
                .map(StoredText)
                .map_err(|e| FromSqlError::Other(Box::new(e))),
            _ => String::column_result(value).map(StoredText),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_text_reads_back_as_it_was_packed() {
        let dictionary = std::str::from_utf8(DICTIONARY).unwrap();
        for text in [
            "",
            "{}",
            "ü€ \u{0} \"quoted\" \\",
            dictionary,
            &dictionary.repeat(40),
            &dictionary
                .lines()
                .map(|l| l.replace('a', "ä"))
                .collect::<String>(),
        ] {
            assert_eq!(unpack(&pack(text)).unwrap(), text);
        }
    }

    #[test]
    fn a_record_like_the_dictionarys_packs_to_a_fraction_of_its_text() {
        let referral = std::str::from_utf8(DICTIONARY)
            .unwrap()
            .lines()
            .last()
            .unwrap();
        let other = referral
            .replace("cobalt", "indigo")
            .replace("Cobalt", "Indigo");
        assert!(
            pack(&other).len() * 4 < other.len(),
            "{}",
            pack(&other).len()
        );
    }

    /// A value written by an earlier build reads the same: the dictionary and format of tag 1
    /// are fixed (a changed dictionary file fails this).
    #[test]
    fn a_value_packed_by_an_earlier_build_still_reads() {
        let packed: &[u8] = include_bytes!("../tests/fixtures/packed-v1.bin");
        let text = unpack(packed).unwrap();
        assert_eq!(text, include_str!("../tests/fixtures/packed-v1.json"));
    }

    /// Values of format 1 refer back into the dictionary: an edited file would misread them
    /// (a value's matches may reach only part of it, so the fixture above cannot see every edit).
    #[test]
    fn the_dictionary_of_format_1_is_the_one_it_was_written_with() {
        let fnv1a = DICTIONARY
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            });
        assert_eq!((DICTIONARY.len(), fnv1a), (7610, 0x3f34_451e_007a_1dff));
    }

    #[test]
    fn a_damaged_value_is_an_error_not_a_panic_or_a_huge_allocation() {
        let good = pack(std::str::from_utf8(DICTIONARY).unwrap());
        assert_eq!(unpack(&[]), Err(lz4_text::UnpackError::Corrupt.into()));
        assert_eq!(unpack(&[7, 0, 0, 0, 0]), Err(UnpackError::UnknownFormat(7)));
        assert_eq!(
            unpack(&good[..3]),
            Err(lz4_text::UnpackError::Corrupt.into())
        );
        assert_eq!(
            unpack(&good[..good.len() / 2]),
            Err(lz4_text::UnpackError::Corrupt.into())
        );
        let mut huge = good.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(unpack(&huge), Err(lz4_text::UnpackError::Corrupt.into()));
        let mut longer = good.clone();
        let length = u32::from_le_bytes(good[1..5].try_into().unwrap());
        longer[1..5].copy_from_slice(&(length + 1).to_le_bytes());
        assert_eq!(unpack(&longer), Err(lz4_text::UnpackError::Corrupt.into()));
        let mut flipped = good;
        for byte in flipped.iter_mut().skip(5).step_by(7) {
            *byte ^= 0x5a;
        }
        // Whatever it decodes to, it must not panic.
        let _ = unpack(&flipped);
    }
}

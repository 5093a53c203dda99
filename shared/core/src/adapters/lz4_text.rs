//! Text compressed with LZ4 against a dictionary of similar texts, its length first (four bytes,
//! little-endian): how the embedded stores keep referral payloads and records, which share
//! their keys and most of their shape, in about a third of the room.

/// The most an LZ4 block can expand: each byte of input stands for at most 255 of output.
const MAX_EXPANSION: usize = 255;

/// Appends `text`, compressed against `dictionary`, to `out`.
pub fn pack_into(out: &mut Vec<u8>, text: &str, dictionary: &[u8]) {
    let bytes = text.as_bytes();
    // Texts larger than 4 GiB are stored nowhere (SQLite's limit is 1 GB); such a length
    // would read back as a mismatch, never as a wrong text.
    let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let start = out.len();
    out.extend_from_slice(&length.to_le_bytes());
    out.resize(
        start + 4 + lz4_flex::block::get_maximum_output_size(bytes.len()),
        0,
    );
    // The output holds the most LZ4 can need, so compressing into it cannot fail.
    let written =
        lz4_flex::block::compress_into_with_dict(bytes, &mut out[start + 4..], dictionary)
            .unwrap_or(0);
    out.truncate(start + 4 + written);
}

/// Why packed bytes do not read back as a text.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum UnpackError {
    #[error("a packed value is cut short or corrupt")]
    Corrupt,
    #[error("a packed value is not UTF-8 text")]
    NotText,
}

/// The text [`pack_into`] packed against the same `dictionary`.
pub fn unpack(packed: &[u8], dictionary: &[u8]) -> Result<String, UnpackError> {
    let (length, block) = packed
        .split_first_chunk::<4>()
        .ok_or(UnpackError::Corrupt)?;
    let length = usize::try_from(u32::from_le_bytes(*length)).map_err(|_| UnpackError::Corrupt)?;
    // A corrupt length must not allocate more than the block could ever expand to.
    if length > block.len().saturating_mul(MAX_EXPANSION) {
        return Err(UnpackError::Corrupt);
    }
    let mut text = vec![0; length];
    let written = lz4_flex::block::decompress_into_with_dict(block, &mut text, dictionary)
        .map_err(|_| UnpackError::Corrupt)?;
    if written != length {
        return Err(UnpackError::Corrupt);
    }
    String::from_utf8(text).map_err(|_| UnpackError::NotText)
}

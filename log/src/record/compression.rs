//! The four codecs a RecordBatch may be compressed with, in the framings Kafka clients
//! actually send: gzip (RFC 1952), snappy (raw, or xerial-framed as the Java client writes
//! it), LZ4 (the standard frame format) and zstd.
//!
//! Decompression is always bounded: a batch that claims to inflate past the caller's limit
//! is rejected before that much memory is allocated.

use std::io::{Read, Write};

use super::RecordError;

/// The compression codec named by bits 0-2 of a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Records stored as they are.
    #[default]
    None,
    /// gzip, codec id 1.
    Gzip,
    /// snappy, codec id 2.
    Snappy,
    /// LZ4 frame format, codec id 3.
    Lz4,
    /// zstd, codec id 4.
    Zstd,
}

/// The magic header of xerial snappy-java's stream framing.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
/// The header is the magic followed by two big-endian i32 versions.
const XERIAL_HEADER_BYTES: usize = 16;
/// snappy-java's default block size; chunks we write never exceed it.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

impl Compression {
    /// Decodes the codec from a batch's attributes.
    pub fn from_attributes(attributes: i16) -> Result<Self, RecordError> {
        Self::from_id((attributes & 0x07) as u8)
    }

    /// Decodes a codec id (0-4).
    pub fn from_id(id: u8) -> Result<Self, RecordError> {
        Ok(match id {
            0 => Self::None,
            1 => Self::Gzip,
            2 => Self::Snappy,
            3 => Self::Lz4,
            4 => Self::Zstd,
            other => return Err(RecordError::UnknownCompression(other)),
        })
    }

    /// The codec id stored in attribute bits 0-2.
    pub fn id(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    /// The name Kafka uses in `compression.type`.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    /// Parses a `compression.type` value.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "none" | "uncompressed" => Self::None,
            "gzip" => Self::Gzip,
            "snappy" => Self::Snappy,
            "lz4" => Self::Lz4,
            "zstd" => Self::Zstd,
            _ => return None,
        })
    }

    /// Compresses `input` in the framing Kafka's Java client produces.
    pub fn compress(self, input: &[u8]) -> Vec<u8> {
        match self {
            Self::None => input.to_vec(),
            Self::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::with_capacity(input.len() / 2), flate2::Compression::default());
                write_all_infallible(&mut enc, input);
                enc.finish().unwrap_or_default()
            }
            Self::Snappy => xerial_compress(input),
            Self::Lz4 => {
                let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(input.len() / 2));
                write_all_infallible(&mut enc, input);
                enc.finish().unwrap_or_default()
            }
            Self::Zstd => zstd::bulk::compress(input, 3).unwrap_or_default(),
        }
    }

    /// Decompresses `input`, refusing to produce more than `max_bytes`.
    pub fn decompress(self, input: &[u8], max_bytes: usize) -> Result<Vec<u8>, RecordError> {
        let corrupt =
            |e: &dyn std::fmt::Display| RecordError::Decompression { codec: self.name(), reason: e.to_string() };
        match self {
            Self::None => Ok(input.to_vec()),
            Self::Gzip => read_bounded(flate2::read::GzDecoder::new(input), max_bytes, self),
            Self::Snappy => {
                if input.starts_with(XERIAL_MAGIC) {
                    xerial_decompress(input, max_bytes)
                } else {
                    let len = snap::raw::decompress_len(input).map_err(|e| corrupt(&e))?;
                    if len > max_bytes {
                        return Err(RecordError::DecompressedTooLarge { codec: self.name(), max_bytes });
                    }
                    snap::raw::Decoder::new().decompress_vec(input).map_err(|e| corrupt(&e))
                }
            }
            Self::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(input), max_bytes, self),
            Self::Zstd => {
                let dec = zstd::stream::read::Decoder::with_buffer(input).map_err(|e| corrupt(&e))?;
                read_bounded(dec, max_bytes, self)
            }
        }
    }
}

/// Writing into a `Vec`-backed encoder only fails on allocation failure, which aborts anyway.
fn write_all_infallible(w: &mut impl Write, input: &[u8]) {
    let _ = w.write_all(input);
}

fn read_bounded(reader: impl Read, max_bytes: usize, codec: Compression) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::new();
    reader
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| RecordError::Decompression { codec: codec.name(), reason: e.to_string() })?;
    if out.len() > max_bytes {
        return Err(RecordError::DecompressedTooLarge { codec: codec.name(), max_bytes });
    }
    Ok(out)
}

fn xerial_compress(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(XERIAL_HEADER_BYTES + input.len() / 2);
    out.extend_from_slice(XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes()); // version
    out.extend_from_slice(&1i32.to_be_bytes()); // minimum compatible version
    let mut encoder = snap::raw::Encoder::new();
    for chunk in input.chunks(XERIAL_BLOCK_BYTES) {
        let compressed = encoder.compress_vec(chunk).unwrap_or_default();
        out.extend_from_slice(&(compressed.len() as i32).to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    out
}

fn xerial_decompress(input: &[u8], max_bytes: usize) -> Result<Vec<u8>, RecordError> {
    let corrupt = |reason: String| RecordError::Decompression { codec: "snappy", reason };
    if input.len() < XERIAL_HEADER_BYTES {
        return Err(corrupt("xerial header is truncated".into()));
    }
    let mut pos = XERIAL_HEADER_BYTES;
    let mut out = Vec::new();
    let mut decoder = snap::raw::Decoder::new();
    while pos < input.len() {
        let Some(len_bytes) = input.get(pos..pos + 4) else {
            return Err(corrupt(format!("xerial chunk length truncated at byte {pos}")));
        };
        let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        pos += 4;
        let Some(chunk) = usize::try_from(len).ok().and_then(|len| input.get(pos..pos + len)) else {
            return Err(corrupt(format!("xerial chunk of {len} bytes runs past the end at byte {pos}")));
        };
        pos += chunk.len();
        let chunk_len = snap::raw::decompress_len(chunk).map_err(|e| corrupt(e.to_string()))?;
        if out.len() + chunk_len > max_bytes {
            return Err(RecordError::DecompressedTooLarge { codec: "snappy", max_bytes });
        }
        let start = out.len();
        out.resize(start + chunk_len, 0);
        decoder.decompress(chunk, &mut out[start..]).map_err(|e| corrupt(e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    proptest! {
        #[test]
        fn every_codec_round_trips(data in proptest::collection::vec(any::<u8>(), 0..100_000)) {
            for codec in ALL {
                let packed = codec.compress(&data);
                prop_assert_eq!(&codec.decompress(&packed, data.len()).unwrap(), &data, "{}", codec.name());
            }
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            for codec in ALL {
                let _ = codec.decompress(&data, 1 << 20);
            }
        }
    }

    #[test]
    fn raw_snappy_as_librdkafka_sends_it_is_accepted() {
        let data = b"hello hello hello hello".repeat(100);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(Compression::Snappy.decompress(&raw, data.len()).unwrap(), data);
    }

    #[test]
    fn decompression_bombs_are_refused() {
        let data = vec![0u8; 1 << 20];
        for codec in ALL.into_iter().skip(1) {
            let packed = codec.compress(&data);
            let err = codec.decompress(&packed, 1000).unwrap_err();
            assert!(matches!(err, RecordError::DecompressedTooLarge { .. }), "{}: {err}", codec.name());
        }
    }
}

//! The pure parts of moving a snapshot: digests, etcd's appended sha256, and streaming
//! (de)compression that works chunk by chunk without holding the whole database.

use std::io::Write;

use sha2::{Digest, Sha256};

use super::Compression;

/// Length of the sha256 etcd appends to a snapshot stream.
pub(crate) const DIGEST_LEN: usize = 32;
/// bbolt databases are whole pages; etcd's restore finds the appended digest by the size
/// being a multiple of 512 plus [`DIGEST_LEN`].
const DB_ALIGN: u64 = 512;

/// sha256 and length of the bytes that were stored.
#[derive(Default)]
pub(crate) struct Sha256Count {
    hasher: Sha256,
    bytes: u64,
}

impl Sha256Count {
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }

    /// Length and lowercase hex digest.
    pub(crate) fn finish(self) -> (u64, String) {
        (self.bytes, hex(&self.hasher.finalize()))
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Checks the sha256 etcd appends to the database in a snapshot stream, chunk by chunk:
/// everything but the last 32 bytes seen so far is hashed, those 32 are held back, and at
/// the end they must be the digest of the rest (as `etcdutl snapshot restore` checks).
#[derive(Default)]
pub(crate) struct EtcdDigestCheck {
    hasher: Sha256,
    tail: Vec<u8>,
    bytes: u64,
}

impl EtcdDigestCheck {
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        if data.len() >= DIGEST_LEN {
            self.hasher.update(&self.tail);
            let (body, tail) = data.split_at(data.len() - DIGEST_LEN);
            self.hasher.update(body);
            self.tail.clear();
            self.tail.extend_from_slice(tail);
        } else {
            self.tail.extend_from_slice(data);
            let excess = self.tail.len().saturating_sub(DIGEST_LEN);
            self.hasher.update(&self.tail[..excess]);
            self.tail.drain(..excess);
        }
    }

    /// Every byte seen, digest included.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the stream was a whole database followed by its digest.
    pub(crate) fn finish(self) -> Result<(), String> {
        let db = self.bytes.saturating_sub(DIGEST_LEN as u64);
        if self.tail.len() < DIGEST_LEN || db == 0 {
            return Err(format!(
                "only {} bytes, not a database with its sha256",
                self.bytes
            ));
        }
        if !db.is_multiple_of(DB_ALIGN) {
            return Err(format!(
                "{} bytes is not a whole database followed by its sha256 (truncated?)",
                self.bytes
            ));
        }
        let digest = self.hasher.finalize();
        if digest.as_slice() != self.tail.as_slice() {
            return Err(format!(
                "the database's sha256 is {}, the stream says {}",
                hex(&digest),
                hex(&self.tail)
            ));
        }
        Ok(())
    }
}

/// Compresses chunk by chunk; each call returns what the compressor has produced so far.
pub(crate) enum Encoder {
    Plain,
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

/// zstd's default level: a good ratio at a speed that keeps up with a member's stream.
const ZSTD_LEVEL: i32 = 3;

impl Encoder {
    pub(crate) fn new(compression: Compression) -> std::io::Result<Self> {
        Ok(match compression {
            Compression::None => Encoder::Plain,
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?),
        })
    }

    pub(crate) fn write(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Plain => Ok(data.to_vec()),
            Encoder::Gzip(e) => {
                e.write_all(data)?;
                Ok(std::mem::take(e.get_mut()))
            }
            Encoder::Zstd(e) => {
                e.write_all(data)?;
                Ok(std::mem::take(e.get_mut()))
            }
        }
    }

    pub(crate) fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Plain => Ok(Vec::new()),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

/// Decompresses chunk by chunk; each call returns what the decompressor has produced.
pub(crate) enum Decoder {
    Plain,
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, Vec<u8>>>),
    Failed(String),
}

impl Decoder {
    pub(crate) fn new(compression: Compression) -> Self {
        match compression {
            Compression::None => Decoder::Plain,
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::write::GzDecoder::new(Vec::new()))),
            Compression::Zstd => match zstd::stream::write::Decoder::new(Vec::new()) {
                Ok(d) => Decoder::Zstd(Box::new(d)),
                Err(e) => Decoder::Failed(e.to_string()),
            },
        }
    }

    pub(crate) fn write(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Decoder::Plain => Ok(data.to_vec()),
            Decoder::Gzip(d) => {
                d.write_all(data)?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Zstd(d) => {
                d.write_all(data)?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Failed(e) => Err(std::io::Error::other(e.clone())),
        }
    }

    pub(crate) fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Decoder::Plain => Ok(Vec::new()),
            Decoder::Gzip(d) => (*d).finish(),
            Decoder::Zstd(mut d) => {
                d.flush()?;
                Ok(d.into_inner())
            }
            Decoder::Failed(e) => Err(std::io::Error::other(e)),
        }
    }
}

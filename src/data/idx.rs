//! Strict reader for the IDX format MNIST ships in (raw or gzip-compressed).
//!
//! Header: two zero bytes, a type byte (0x08 = unsigned byte, the only type MNIST uses), the
//! number of dimensions, then each dimension as a big-endian u32; the payload follows.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// Size of each dimension, outermost first.
    pub dims: Vec<usize>,
    /// The payload, row-major.
    pub data: Vec<u8>,
}

/// Decompresses `bytes` if they start with the gzip magic, else returns them as they are.
pub fn maybe_gunzip(bytes: Vec<u8>, what: &str) -> Result<Vec<u8>> {
    if bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{what}: corrupt gzip stream"))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// The sha256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

/// Reads a file (raw or .gz), decompressed.
pub fn read_decompressed(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    maybe_gunzip(bytes, &path.display().to_string())
}

/// Reads and parses an IDX file (raw or .gz).
pub fn read_idx_file(path: &Path) -> Result<IdxArray> {
    Ok(read_idx_file_hashed(path)?.0)
}

/// Reads and parses an IDX file (raw or .gz); returns it with the sha256 of its decompressed
/// bytes (what a known dataset's checksums are of).
pub fn read_idx_file_hashed(path: &Path) -> Result<(IdxArray, String)> {
    let bytes = read_decompressed(path)?;
    let array =
        parse_idx(&bytes).with_context(|| format!("{} is not a valid IDX file", path.display()))?;
    Ok((array, sha256_hex(&bytes)))
}

/// Reads only the dimensions of an IDX file (raw or .gz), without its payload.
pub fn read_idx_header(path: &Path) -> Result<Vec<usize>> {
    let shown = path.display();
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {shown}"))?;
    let mut magic = [0u8; 2];
    let got = file
        .read(&mut magic)
        .with_context(|| format!("cannot read {shown}"))?;
    let start = std::io::Cursor::new(magic[..got].to_vec());
    let mut reader: Box<dyn Read> = if got == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(start.chain(file)))
    } else {
        Box::new(start.chain(file))
    };
    let mut head = vec![0u8; 4];
    let n = read_up_to(&mut reader, &mut head)
        .with_context(|| format!("{shown}: corrupt gzip stream"))?;
    head.truncate(n);
    if n == 4 && head[0] == 0 && head[1] == 0 && head[2] == 0x08 && head[3] > 0 {
        let mut dims = vec![0u8; 4 * head[3] as usize];
        let m = read_up_to(&mut reader, &mut dims)
            .with_context(|| format!("{shown}: corrupt gzip stream"))?;
        head.extend_from_slice(&dims[..m]);
    }
    // The same checks and messages as parse_idx gives a whole file.
    header(&head)
        .map(|(dims, _)| dims)
        .with_context(|| format!("{shown} is not a valid IDX file"))
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_up_to(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Checks the magic and header of IDX bytes and returns (dimensions, header length).
fn header(bytes: &[u8]) -> Result<(Vec<usize>, usize)> {
    if bytes.len() < 4 {
        bail!(
            "file is {} bytes long, shorter than the 4-byte IDX magic",
            bytes.len()
        );
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        bail!(
            "bytes 0-1 are {:#04x} {:#04x}, expected 0x00 0x00 (IDX magic)",
            bytes[0],
            bytes[1]
        );
    }
    if bytes[2] != 0x08 {
        bail!(
            "byte 2 (data type) is {:#04x}, expected 0x08 (unsigned byte)",
            bytes[2]
        );
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 {
        bail!("byte 3 (number of dimensions) is 0, expected at least 1");
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        bail!(
            "file is {} bytes long, but {ndim} dimensions need a {header}-byte header",
            bytes.len()
        );
    }
    let mut dims = Vec::with_capacity(ndim);
    for d in 0..ndim {
        let o = 4 + 4 * d;
        let v = u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize;
        dims.push(v);
    }
    Ok((dims, header))
}

/// Parses IDX bytes (already decompressed), checking magic, dimensions and payload length.
pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray> {
    let (dims, header) = header(bytes)?;
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .context("dimensions overflow")?;
    let payload = bytes.len() - header;
    if payload != expected {
        bail!(
            "payload at byte offset {header} is {payload} bytes, expected {expected} for dimensions {dims:?}{}",
            if payload < expected { " (truncated)" } else { " (trailing bytes)" }
        );
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Serializes an IDX array of unsigned bytes (used by tests and fixture writers).
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(bytes: &[u8]) -> String {
        format!("{:#}", parse_idx(bytes).unwrap_err())
    }

    #[test]
    fn round_trips_a_valid_array() {
        let data: Vec<u8> = (0..24).collect();
        let a = parse_idx(&encode_idx(&[2, 3, 4], &data)).unwrap();
        assert_eq!(a.dims, vec![2, 3, 4]);
        assert_eq!(a.data, data);
    }

    #[test]
    fn reads_gzip_and_raw_files_alike() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("idx-gz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = encode_idx(&[3], &[1, 2, 3]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&raw).unwrap();
        std::fs::write(dir.join("a"), &raw).unwrap();
        std::fs::write(dir.join("a.gz"), gz.finish().unwrap()).unwrap();
        assert_eq!(
            read_idx_file(&dir.join("a")).unwrap(),
            read_idx_file(&dir.join("a.gz")).unwrap()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_the_header_alone_of_raw_and_gzip_files() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("idx-head-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = encode_idx(&[2, 3, 4], &[7; 24]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&raw).unwrap();
        std::fs::write(dir.join("a"), &raw).unwrap();
        std::fs::write(dir.join("a.gz"), gz.finish().unwrap()).unwrap();
        std::fs::write(dir.join("short"), [0u8, 0, 8, 3, 0]).unwrap();
        assert_eq!(read_idx_header(&dir.join("a")).unwrap(), vec![2, 3, 4]);
        assert_eq!(read_idx_header(&dir.join("a.gz")).unwrap(), vec![2, 3, 4]);
        let e = format!("{:#}", read_idx_header(&dir.join("short")).unwrap_err());
        assert!(e.contains("short") && e.contains("16-byte header"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_short_file() {
        assert!(err(&[0, 0]).contains("shorter than the 4-byte IDX magic"));
    }

    #[test]
    fn rejects_bad_magic() {
        assert!(err(&[1, 0, 8, 1, 0, 0, 0, 0]).contains("expected 0x00 0x00"));
    }

    #[test]
    fn rejects_non_byte_type() {
        assert!(err(&[0, 0, 0x0d, 1, 0, 0, 0, 0]).contains("expected 0x08"));
    }

    #[test]
    fn rejects_truncated_header() {
        assert!(err(&[0, 0, 8, 3, 0, 0, 0, 1]).contains("16-byte header"));
    }

    #[test]
    fn rejects_truncated_payload_naming_the_offset() {
        let mut b = encode_idx(&[2, 2], &[1, 2, 3, 4]);
        b.pop();
        let e = err(&b);
        assert!(
            e.contains("byte offset 12") && e.contains("truncated"),
            "{e}"
        );
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut b = encode_idx(&[2], &[1, 2]);
        b.push(9);
        assert!(err(&b).contains("trailing bytes"));
    }

    #[test]
    fn rejects_corrupt_gzip() {
        let e = format!(
            "{:#}",
            maybe_gunzip(vec![0x1f, 0x8b, 1, 2, 3], "x.gz").unwrap_err()
        );
        assert!(e.contains("x.gz: corrupt gzip"), "{e}");
    }
}

//! A finished log file, compressed: independent zstd frames of [`FRAME`] bytes each
//! followed by a seek table, as the zstd "seekable format" lays it out (a skippable
//! frame of (compressed, decompressed) sizes and a footer). A piece is read by
//! decompressing only the frames it lies in, so the index rows' offsets into the
//! uncompressed file keep their meaning; `zstd -d` still reads the whole file.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Uncompressed bytes per frame: the most a read decompresses beyond what it needs.
pub const FRAME: usize = 256 * 1024;
/// zstd's default level: about as fast as the disk, a fraction of the size.
const LEVEL: i32 = 3;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// Number of frames (4), descriptor (1), magic (4).
const FOOTER: u64 = 9;
/// A frame that claims more than this is not one we wrote.
const MAX_FRAME: u32 = 16 << 20;

/// Compresses `raw` into `out`, returning the bytes written. `out` is synced; the
/// caller renames it into place.
pub fn pack(raw: &mut File, out: &mut File) -> io::Result<u64> {
    let mut compressor = zstd::bulk::Compressor::new(LEVEL)?;
    let mut sink = BufWriter::new(&mut *out);
    let mut table = Vec::new();
    let mut buf = vec![0; FRAME];
    let mut written = 0u64;
    loop {
        let n = fill(raw, &mut buf)?;
        if n == 0 {
            break;
        }
        let frame = compressor.compress(&buf[..n])?;
        sink.write_all(&frame)?;
        written += frame.len() as u64;
        table.push((to_u32(frame.len())?, to_u32(n)?));
        if n < FRAME {
            break;
        }
    }
    let size = to_u32(table.len() * 8 + FOOTER as usize)?;
    sink.write_all(&SKIPPABLE_MAGIC.to_le_bytes())?;
    sink.write_all(&size.to_le_bytes())?;
    for (compressed, raw) in &table {
        sink.write_all(&compressed.to_le_bytes())?;
        sink.write_all(&raw.to_le_bytes())?;
    }
    sink.write_all(&to_u32(table.len())?.to_le_bytes())?;
    sink.write_all(&[0])?;
    sink.write_all(&SEEKABLE_MAGIC.to_le_bytes())?;
    sink.flush()?;
    drop(sink);
    out.sync_all()?;
    Ok(written + 8 + u64::from(size))
}

fn to_u32(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| io::Error::other("a log too large to compress"))
}

/// Reads until `buf` is full or the file ends.
fn fill(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Where a frame lies in the compressed file and in the log.
#[derive(Debug, Clone, Copy)]
struct Frame {
    at: u64,
    len: u32,
    raw_at: u64,
    raw_len: u32,
}

/// An open compressed log; keeps the last frame it decompressed, since a reader
/// asks for the pieces of a log in order and many lie in one frame.
#[derive(Debug)]
pub struct PackedLog {
    file: File,
    frames: Vec<Frame>,
    last: Option<(usize, Vec<u8>)>,
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("compressed log: {what}"),
    )
}

impl PackedLog {
    pub fn open(path: &Path) -> io::Result<PackedLog> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        if size < FOOTER + 8 {
            return Err(corrupt("too short"));
        }
        let mut footer = [0; FOOTER as usize];
        file.read_exact_at(&mut footer, size - FOOTER)?;
        let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if word(&footer[5..]) != SEEKABLE_MAGIC || footer[4] != 0 {
            return Err(corrupt("no seek table"));
        }
        let count = u64::from(word(&footer[..4]));
        let table_len = count * 8;
        let Some(table_at) = size.checked_sub(FOOTER + table_len + 8) else {
            return Err(corrupt("seek table larger than the file"));
        };
        let mut table = vec![0; usize::try_from(table_len + 8).map_err(|_| corrupt("size"))?];
        file.read_exact_at(&mut table, table_at)?;
        if word(&table) != SKIPPABLE_MAGIC {
            return Err(corrupt("no seek table frame"));
        }
        let (mut frames, mut at, mut raw_at) = (Vec::new(), 0u64, 0u64);
        for entry in table[8..].chunks_exact(8) {
            let (len, raw_len) = (word(entry), word(&entry[4..]));
            if raw_len > MAX_FRAME {
                return Err(corrupt("frame too large"));
            }
            frames.push(Frame {
                at,
                len,
                raw_at,
                raw_len,
            });
            at += u64::from(len);
            raw_at += u64::from(raw_len);
        }
        if at != table_at {
            return Err(corrupt("frames do not end where the seek table starts"));
        }
        Ok(PackedLog {
            file,
            frames,
            last: None,
        })
    }

    /// The log's uncompressed length.
    pub fn len(&self) -> u64 {
        self.frames
            .last()
            .map_or(0, |f| f.raw_at + u64::from(f.raw_len))
    }

    /// Up to `len` bytes at `offset` of the uncompressed log: fewer if it ends first.
    pub fn read_at(&mut self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let end = offset.saturating_add(len).min(self.len());
        let mut out = Vec::with_capacity(usize::try_from(end.saturating_sub(offset)).unwrap_or(0));
        let mut i = self
            .frames
            .partition_point(|f| f.raw_at + u64::from(f.raw_len) <= offset);
        let mut at = offset;
        while at < end {
            let Some(frame) = self.frames.get(i).copied() else {
                break;
            };
            let data = self.frame(i)?;
            let from = usize::try_from(at - frame.raw_at)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let to = usize::try_from(end - frame.raw_at)
                .unwrap_or(usize::MAX)
                .min(data.len());
            out.extend_from_slice(&data[from..to]);
            at = frame.raw_at + u64::from(frame.raw_len);
            i += 1;
        }
        Ok(out)
    }

    /// Frame `i`, decompressed (or kept from the last read).
    fn frame(&mut self, i: usize) -> io::Result<&[u8]> {
        if self.last.as_ref().is_none_or(|(n, _)| *n != i) {
            let f = self.frames[i];
            let mut compressed = vec![0; f.len as usize];
            self.file.read_exact_at(&mut compressed, f.at)?;
            let data = zstd::bulk::decompress(&compressed, f.raw_len as usize)?;
            if data.len() != f.raw_len as usize {
                return Err(corrupt("a frame's size is not what the seek table says"));
            }
            self.last = Some((i, data));
        }
        Ok(self.last.as_ref().map_or(&[][..], |(_, d)| d.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(raw: &[u8]) -> (PackedLog, std::path::PathBuf, u64) {
        let dir = std::env::temp_dir().join(format!(
            "pbmaster-packed-{}-{}-{}",
            std::process::id(),
            raw.len(),
            super::super::now()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("raw"), raw).expect("raw");
        let mut src = File::open(dir.join("raw")).expect("open");
        let mut out = File::create(dir.join("packed")).expect("create");
        let size = pack(&mut src, &mut out).expect("pack");
        assert_eq!(
            std::fs::metadata(dir.join("packed")).expect("meta").len(),
            size
        );
        (
            PackedLog::open(&dir.join("packed")).expect("reopen"),
            dir,
            size,
        )
    }

    #[test]
    fn any_range_reads_back_the_same_bytes_across_frames() {
        let raw: Vec<u8> = (0..(FRAME * 3 + 1234))
            .map(|i| (i % 251) as u8 ^ (i / 7000) as u8)
            .collect();
        let (mut log, dir, size) = packed(&raw);
        assert!(size < raw.len() as u64 / 4, "compressed to {size}");
        assert_eq!(log.len(), raw.len() as u64);
        let ranges = [
            (0, 10),
            (FRAME as u64 - 3, 6),
            (5, FRAME as u64 * 2 + 17),
            (FRAME as u64 * 3, 1234),
            (FRAME as u64 * 3 + 1000, 5000),
            (raw.len() as u64 + 5, 10),
        ];
        for (offset, len) in ranges {
            let o = (offset as usize).min(raw.len());
            let e = ((offset + len) as usize).min(raw.len());
            assert_eq!(
                log.read_at(offset, len).expect("read"),
                raw[o..e],
                "{offset}+{len}"
            );
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn an_empty_log_packs_and_reads_as_empty() {
        let (mut log, dir, _) = packed(b"");
        assert_eq!(log.len(), 0);
        assert!(log.read_at(0, 10).expect("read").is_empty());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_truncated_or_foreign_file_is_refused_not_misread() {
        let (_, dir, size) = packed(&[7u8; 100_000]);
        let path = dir.join("packed");
        let whole = std::fs::read(&path).expect("read");
        for cut in [1, FOOTER as usize, size as usize - 3] {
            std::fs::write(&path, &whole[..whole.len() - cut]).expect("write");
            assert!(PackedLog::open(&path).is_err(), "cut {cut}");
        }
        std::fs::write(&path, b"plain text that is not compressed at all").expect("write");
        assert!(PackedLog::open(&path).is_err());
        std::fs::remove_dir_all(dir).ok();
    }
}

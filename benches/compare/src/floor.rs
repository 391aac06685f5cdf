//! The machine's floor for one durable write: a ~200-byte `pwrite` followed by `fdatasync`,
//! with nothing else around it, in three kinds of space.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::engines::Res;

pub const WRITE_LEN: usize = 210; // one jessy frame: 24 frame header + 12 entry header + 24 + 150
const SPACE: u64 = 64 << 20;

#[derive(Clone, Copy, Debug)]
pub enum Space {
    /// Blocks written with zeros beforehand (what jessy's `Prealloc::Zeros` does).
    Zeroed,
    /// Blocks reserved with `fallocate(2)` (unwritten extents).
    Fallocated,
    /// Appending to a growing file (each sync also persists the new size).
    Append,
}

impl Space {
    pub fn all() -> [Space; 3] {
        [Space::Zeroed, Space::Fallocated, Space::Append]
    }
    pub fn label(self) -> &'static str {
        match self {
            Space::Zeroed => "pwrite + fdatasync into zero-written space",
            Space::Fallocated => "pwrite + fdatasync into fallocate'd space",
            Space::Append => "pwrite + fdatasync appending (file grows)",
        }
    }
}

/// Latencies of `count` sequential writes of `WRITE_LEN` bytes, each followed by fdatasync.
pub fn measure(dir: &Path, space: Space, count: usize) -> Res<Vec<Duration>> {
    let mut f = FloorFile::new(dir, space)?;
    (0..count).map(|_| f.write_one()).collect()
}

/// A file prepared for floor writes, to interleave them with an engine's own.
pub struct FloorFile {
    file: File,
    path: std::path::PathBuf,
    at: u64,
}

impl FloorFile {
    pub fn new(dir: &Path, space: Space) -> Res<FloorFile> {
        let path = dir.join(format!("floor-{space:?}.dat"));
        let _ = std::fs::remove_file(&path);
        let file: File = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        match space {
            Space::Zeroed => {
                let zeros = vec![0u8; 1 << 20];
                let mut at = 0;
                while at < SPACE {
                    file.write_all_at(&zeros, at)?;
                    at += zeros.len() as u64;
                }
            }
            Space::Fallocated => {
                // SAFETY: a plain syscall on a descriptor we own.
                let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, SPACE as i64) };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error().into());
                }
            }
            Space::Append => {}
        }
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
        Ok(FloorFile { file, path, at: 4096 })
    }

    /// One write of `WRITE_LEN` bytes + fdatasync; its latency.
    pub fn write_one(&mut self) -> Res<Duration> {
        self.write_len(WRITE_LEN)
    }

    /// One write of `len` bytes + fdatasync; its latency.
    pub fn write_len(&mut self, len: usize) -> Res<Duration> {
        let buf = vec![0xA5u8; len];
        if self.at + len as u64 > SPACE {
            self.at = 4096;
        }
        let t = Instant::now();
        self.file.write_all_at(&buf, self.at)?;
        self.file.sync_data()?;
        self.at += len as u64;
        Ok(t.elapsed())
    }
}

impl Drop for FloorFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

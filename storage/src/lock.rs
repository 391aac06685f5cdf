//! One writer per store: an advisory `flock` on `jessy.lock`, which records the holder's pid.
//!
//! `flock` is released by the kernel when the holder dies, however it dies, so a crashed
//! process never leaves a stale lock behind; the pid in the file is only for the message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Holds the lock until dropped.
#[derive(Debug)]
pub(crate) struct LockFile {
    _file: File,
    path: PathBuf,
}

impl LockFile {
    pub fn acquire(path: &Path) -> Result<LockFile> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(Error::io("open lock file", path))?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                    holder: if holder.is_empty() { "unknown".into() } else { holder.to_string() },
                });
            }
            return Err(Error::Io { op: "flock", path: path.to_path_buf(), source: err });
        }
        let pid = format!("pid {}\n", std::process::id());
        file.set_len(0).map_err(Error::io("truncate lock file", path))?;
        file.seek(SeekFrom::Start(0)).map_err(Error::io("seek lock file", path))?;
        file.write_all(pid.as_bytes()).map_err(Error::io("write lock file", path))?;
        Ok(LockFile { _file: file, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("jessy.lock");
        let first = LockFile::acquire(&p).unwrap();
        let err = LockFile::acquire(&p).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        assert_eq!(err.code(), "store_locked");
        drop(first);
        LockFile::acquire(&p).unwrap();
    }
}

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use jessy_storage::{Config, Durability, Store};

/// A config with small regions so tests seal layers quickly.
pub fn small(durability: Durability) -> Config {
    Config::default().initial_size(4096).max_size(16 * 1024).durability(durability).background_compaction(false)
}

pub fn open(dir: &Path, config: Config) -> Store {
    Store::open_with(dir, config).expect("open store")
}

pub fn region(dir: &Path, dim: &str) -> PathBuf {
    dir.join("consciousness").join(dim).join("region.mmap")
}

/// Index just past the last non-zero byte of a file.
pub fn data_end(path: &Path) -> usize {
    let b = std::fs::read(path).unwrap();
    b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1)
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A deterministic value that never ends in a zero byte (so `data_end` finds it).
pub fn value(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| ((i * 31 + j * 7) % 251) as u8 | 1).collect()
}

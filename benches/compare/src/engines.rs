//! One adapter per engine: the same operations, each through that engine's fastest honest path.
//!
//! Every adapter reports the value it read (length plus first byte) so that the compiler cannot
//! drop a read, and the driver checks that every read found its key.

use std::path::{Path, PathBuf};

use crate::workload::{key, value, Key, Val, BULK_BATCH, KEY_LEN, VALUE_LEN};

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Every peer that keeps its own cache gets 1 GiB (redb's and sled's default), more than the
/// data set at N = 1M, so that "warm" reads are warm for everyone. Jessy and LMDB read
/// through the OS page cache (mmap).
pub const CACHE_BYTES: usize = 1 << 30;

/// What an engine is asked to do. `Mode::Bulk` is only used for the bulk load; the store is
/// then closed and reopened in `Mode::Normal` for everything else.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Bulk,
    Normal,
}

pub trait Reader {
    /// Returns a digest of the value (its length plus its first byte), or `None` if absent.
    fn get(&mut self, key: &[u8]) -> Option<usize>;
    /// Reads the 10 entries starting at `start` (key order); returns a digest of them.
    fn scan10(&mut self, start: &[u8]) -> usize;
}

pub trait Engine: Sync {
    /// Loads keys `0..n` (in that order, which is not key order) and makes them durable.
    fn bulk_load(&mut self, n: u64) -> Res<()>;
    /// A reader for the calling thread (a read transaction, where the engine has them).
    fn reader(&self) -> Res<Box<dyn Reader + '_>>;
    /// One put, durable before it returns.
    fn put_durable(&mut self, k: &Key, v: &Val) -> Res<()>;
    /// A batch of puts in one durable commit.
    fn batch_durable(&mut self, kvs: &[(Key, Val)]) -> Res<()>;
    /// A batch of deletes in one durable commit.
    fn delete_durable(&mut self, keys: &[Key]) -> Res<()>;
    /// The engine's own compaction, if it has one; returns what was done (for the notes).
    fn compact(&mut self) -> Res<&'static str>;
    /// Closes the store, syncing whatever the engine syncs on close.
    fn close(self: Box<Self>) -> Res<()>;
    /// The number of keys, where the engine knows it without a scan (checked after reopen).
    fn len(&self) -> Option<u64> {
        None
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Jessy,
    Jessy64,
    Redb,
    Lmdb,
    Sled,
    Fjall,
    #[cfg(feature = "rocksdb")]
    Rocksdb,
}

impl Kind {
    pub fn all() -> Vec<Kind> {
        vec![
            Kind::Jessy,
            Kind::Jessy64,
            Kind::Redb,
            Kind::Lmdb,
            Kind::Sled,
            Kind::Fjall,
            #[cfg(feature = "rocksdb")]
            Kind::Rocksdb,
        ]
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Jessy => "jessy",
            Kind::Jessy64 => "jessy-64m",
            Kind::Redb => "redb",
            Kind::Lmdb => "lmdb",
            Kind::Sled => "sled",
            Kind::Fjall => "fjall",
            #[cfg(feature = "rocksdb")]
            Kind::Rocksdb => "rocksdb",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::all().into_iter().find(|k| k.name() == s)
    }

    pub fn is_jessy(self) -> bool {
        matches!(self, Kind::Jessy | Kind::Jessy64)
    }

    /// The column header: engine and the version of its crate.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Jessy => "jessy (defaults)",
            Kind::Jessy64 => "jessy (64 MiB regions)",
            Kind::Redb => "redb 4.6",
            Kind::Lmdb => "LMDB (heed 0.22)",
            Kind::Sled => "sled 0.34",
            Kind::Fjall => "fjall 3.1",
            #[cfg(feature = "rocksdb")]
            Kind::Rocksdb => "RocksDB 7.8 (rocksdb 0.20)",
        }
    }

    pub fn open(self, dir: &Path, mode: Mode) -> Res<Box<dyn Engine>> {
        Ok(match self {
            Kind::Jessy => Box::new(Jessy::open(dir, mode, None)?),
            Kind::Jessy64 => Box::new(Jessy::open(dir, mode, Some(64 << 20))?),
            Kind::Redb => Box::new(Redb::open(dir)?),
            Kind::Lmdb => Box::new(Lmdb::open(dir)?),
            Kind::Sled => Box::new(Sled::open(dir)?),
            Kind::Fjall => Box::new(Fjall::open(dir)?),
            #[cfg(feature = "rocksdb")]
            Kind::Rocksdb => Box::new(rocks::Rocks::open(dir)?),
        })
    }

    /// How the engine is configured and how each workload reaches the disk, for the report.
    pub fn notes(self) -> &'static str {
        match self {
            Kind::Jessy => {
                "`Config::default()` (1 MiB initial, 10 MiB max regions, background compaction on). \
                 Bulk: store opened with `Durability::None`, `WriteBatch`es of 10,000, then `store.sync()` \
                 (fdatasync). Everything else: reopened with `Durability::Immediate` (one fdatasync per \
                 commit, group commit); individual writes are `put`, batches are `write(WriteBatch)`. \
                 Reads: `get`; ranges: `range(start..).batch_size(10)` read with `next_borrowed` (keys \
                 lent, values zero-copy). Compaction: `dim.compact()`."
            }
            Kind::Jessy64 => "As jessy, with `Config::default().max_size(64 << 20)` (initial size stays 1 MiB).",
            Kind::Redb => {
                "`Builder::new()` defaults (1 GiB cache). Bulk: one write transaction for all N keys, \
                 committed with `Durability::Immediate`. Writes: one transaction per put / per batch, \
                 `Durability::Immediate` (fsync of the file, no 2-phase commit, the default). Reads: one \
                 long-lived read transaction per thread. Compaction: `Database::compact()`."
            }
            Kind::Lmdb => {
                "heed `EnvOpenOptions` defaults, map size 16 GiB. Bulk: one write transaction for all N \
                 keys, committed with sync (LMDB's default: data fdatasync + meta page write). Writes: one \
                 transaction per put / per batch, synced on commit. Reads: one read transaction per thread. \
                 Compaction: `copy_to_file(CompactionOption::Enabled)` into a new file, swapped in, reopened."
            }
            Kind::Sled => {
                "`Config::new()` defaults (1 GiB cache, LowSpace mode, background flush every 500 ms). \
                 Bulk: `apply_batch` of 10,000, then `flush()`. Writes: `insert` / `apply_batch`, then \
                 `flush()` before the next (on Linux that is `sync_file_range`, not fsync: see †). No \
                 compaction call exists (sled reclaims space on its own)."
            }
            Kind::Fjall => {
                "`Database::builder` with a 1 GiB cache (default 32 MiB), `KeyspaceCreateOptions::default`. \
                 Bulk: `WriteBatch`es of 10,000 without durability, then `persist(SyncAll)`. (The sorted \
                 `start_ingestion` path does not apply: keys arrive unsorted.) Writes: `insert` / batch, \
                 then `persist(PersistMode::SyncData)` (fdatasync of the journal). Compaction: \
                 `rotate_memtable_and_wait()` then `major_compact()`."
            }
            #[cfg(feature = "rocksdb")]
            Kind::Rocksdb => {
                "Debian's librocksdb 7.8.3 (system library, through the rocksdb 0.20 crate). `Options` with `increase_parallelism(2)`, LZ4, a 1 GiB LRU block cache and a 10-bit \
                 bloom filter; WAL on. Bulk: `WriteBatch`es of 10,000 with `sync=false`, then \
                 `flush_wal(true)`. Writes: `WriteOptions::set_sync(true)` (fdatasync of the WAL). Reads: \
                 `get_pinned`, ranges with a raw iterator. Compaction: `flush()` then \
                 `compact_range(None, None)`."
            }
        }
    }
}

fn digest(v: &[u8]) -> usize {
    v.len() + v.first().copied().unwrap_or(0) as usize
}

// ---- jessy ------------------------------------------------------------------------------

struct Jessy {
    store: jessy_storage::Store,
    dim: jessy_storage::Dimension,
}

impl Jessy {
    fn open(dir: &Path, mode: Mode, max_size: Option<u64>) -> Res<Jessy> {
        use jessy_storage::{Config, Durability, Store};
        let mut config = Config::default();
        if let Some(m) = max_size {
            config = config.max_size(m);
        }
        let durability = if mode == Mode::Bulk { Durability::None } else { Durability::Immediate };
        let store = Store::open_with(dir, config.durability(durability))?;
        let dim = store.dimension("default")?;
        Ok(Jessy { store, dim })
    }
}

struct JessyReader<'a>(&'a jessy_storage::Dimension);

impl Reader for JessyReader<'_> {
    fn get(&mut self, key: &[u8]) -> Option<usize> {
        self.0.get(key).expect("jessy get").map(|v| digest(&v))
    }
    fn scan10(&mut self, start: &[u8]) -> usize {
        let mut d = 0;
        // `batch_size`: the engine's way of saying how many entries will be read, so that it
        // copies 10 from the index and not its default first batch of 16. `next_borrowed`
        // lends each key, as the peers' iterators do, instead of allocating a `Vec` for it.
        let mut iter = self.0.range(start..).batch_size(10);
        for _ in 0..10 {
            let Some(kv) = iter.next_borrowed() else { break };
            let (k, v) = kv.expect("jessy range");
            d += k.len() + digest(&v);
        }
        d
    }
}

impl Engine for Jessy {
    fn bulk_load(&mut self, n: u64) -> Res<()> {
        let mut i = 0;
        while i < n {
            let mut b = jessy_storage::WriteBatch::new();
            for j in i..(i + BULK_BATCH).min(n) {
                b.push_put(key(j), value(j));
            }
            self.dim.write(b)?;
            i += BULK_BATCH;
        }
        self.store.sync()?;
        Ok(())
    }
    fn reader(&self) -> Res<Box<dyn Reader + '_>> {
        Ok(Box::new(JessyReader(&self.dim)))
    }
    fn put_durable(&mut self, k: &Key, v: &Val) -> Res<()> {
        self.dim.put(k, v)?;
        Ok(())
    }
    fn batch_durable(&mut self, kvs: &[(Key, Val)]) -> Res<()> {
        let mut b = jessy_storage::WriteBatch::new();
        for (k, v) in kvs {
            b.push_put(k, v);
        }
        self.dim.write(b)?;
        Ok(())
    }
    fn delete_durable(&mut self, keys: &[Key]) -> Res<()> {
        let mut b = jessy_storage::WriteBatch::new();
        for k in keys {
            b.push_delete(k);
        }
        self.dim.write(b)?;
        Ok(())
    }
    fn compact(&mut self) -> Res<&'static str> {
        let report = self.dim.compact()?;
        self.store.sync()?;
        Ok(if report.layers_compacted == 0 { "dim.compact(): rewrote no layer" } else { "dim.compact()" })
    }
    fn len(&self) -> Option<u64> {
        Some(self.dim.len() as u64)
    }
    fn close(self: Box<Self>) -> Res<()> {
        let Jessy { store, dim } = *self;
        drop(dim);
        store.close()?;
        Ok(())
    }
}

/// Jessy's dedicated loader for a new dimension (`Store::bulk_load`, written through
/// `proto/` and promoted atomically, durable when `finish` returns): seconds for keys `0..n`.
pub fn jessy_bulk_loader(dir: &Path, kind: Kind, n: u64) -> Res<f64> {
    use jessy_storage::{Config, Store};
    let mut config = Config::default();
    if kind == Kind::Jessy64 {
        config = config.max_size(64 << 20);
    }
    let t = std::time::Instant::now();
    let store = Store::open_with(dir, config)?;
    let mut load = store.bulk_load("bench")?;
    for i in 0..n {
        load.put(key(i), value(i))?;
    }
    let dim = load.finish()?;
    let secs = t.elapsed().as_secs_f64();
    if dim.len() as u64 != n {
        return Err(format!("bulk_load: {} keys, expected {n}", dim.len()).into());
    }
    drop(dim);
    store.close()?;
    Ok(secs)
}

// ---- redb -------------------------------------------------------------------------------

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("bench");

struct Redb {
    db: redb::Database,
}

impl Redb {
    fn open(dir: &Path) -> Res<Redb> {
        std::fs::create_dir_all(dir)?;
        let db = redb::Database::builder().create(dir.join("bench.redb"))?;
        Ok(Redb { db })
    }
    fn commit_with(&self, f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>) -> Res<()>) -> Res<()> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(REDB_TABLE)?;
            f(&mut t)?;
        }
        txn.commit()?;
        Ok(())
    }
}

struct RedbReader {
    table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl Reader for RedbReader {
    fn get(&mut self, key: &[u8]) -> Option<usize> {
        self.table.get(key).expect("redb get").map(|v| digest(v.value()))
    }
    fn scan10(&mut self, start: &[u8]) -> usize {
        let mut d = 0;
        for kv in self.table.range::<&[u8]>(start..).expect("redb range").take(10) {
            let (k, v) = kv.expect("redb range");
            d += k.value().len() + digest(v.value());
        }
        d
    }
}

impl Engine for Redb {
    fn bulk_load(&mut self, n: u64) -> Res<()> {
        self.commit_with(|t| {
            for i in 0..n {
                t.insert(key(i).as_slice(), value(i).as_slice())?;
            }
            Ok(())
        })
    }
    fn reader(&self) -> Res<Box<dyn Reader + '_>> {
        use redb::ReadableDatabase;
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REDB_TABLE)?;
        Ok(Box::new(RedbReader { table }))
    }
    fn put_durable(&mut self, k: &Key, v: &Val) -> Res<()> {
        self.commit_with(|t| {
            t.insert(k.as_slice(), v.as_slice())?;
            Ok(())
        })
    }
    fn batch_durable(&mut self, kvs: &[(Key, Val)]) -> Res<()> {
        self.commit_with(|t| {
            for (k, v) in kvs {
                t.insert(k.as_slice(), v.as_slice())?;
            }
            Ok(())
        })
    }
    fn delete_durable(&mut self, keys: &[Key]) -> Res<()> {
        self.commit_with(|t| {
            for k in keys {
                t.remove(k.as_slice())?;
            }
            Ok(())
        })
    }
    fn compact(&mut self) -> Res<&'static str> {
        let mut rounds = 0;
        while self.db.compact()? && rounds < 10 {
            rounds += 1;
        }
        Ok("Database::compact()")
    }
    fn close(self: Box<Self>) -> Res<()> {
        self.db.close()?;
        Ok(())
    }
}

// ---- LMDB (heed) ------------------------------------------------------------------------

type HeedDb = heed::Database<heed::types::Bytes, heed::types::Bytes>;

struct Lmdb {
    env: Option<heed::Env>,
    db: HeedDb,
    dir: PathBuf,
}

const LMDB_MAP_SIZE: usize = 16 << 30;

impl Lmdb {
    fn open(dir: &Path) -> Res<Lmdb> {
        std::fs::create_dir_all(dir)?;
        // SAFETY: the directory is this benchmark's own; no other process opens it.
        let env = unsafe { heed::EnvOpenOptions::new().map_size(LMDB_MAP_SIZE).open(dir)? };
        let mut wtxn = env.write_txn()?;
        let db: HeedDb = env.create_database(&mut wtxn, None)?;
        wtxn.commit()?;
        Ok(Lmdb { env: Some(env), db, dir: dir.to_path_buf() })
    }
    fn env(&self) -> &heed::Env {
        self.env.as_ref().expect("env open")
    }
}

struct LmdbReader<'a> {
    txn: heed::RoTxn<'a, heed::WithTls>,
    db: HeedDb,
}

impl Reader for LmdbReader<'_> {
    fn get(&mut self, key: &[u8]) -> Option<usize> {
        self.db.get(&self.txn, key).expect("lmdb get").map(digest)
    }
    fn scan10(&mut self, start: &[u8]) -> usize {
        use std::ops::Bound;
        let range = (Bound::Included(start), Bound::Unbounded);
        let mut d = 0;
        for kv in self.db.range(&self.txn, &range).expect("lmdb range").take(10) {
            let (k, v) = kv.expect("lmdb range");
            d += k.len() + digest(v);
        }
        d
    }
}

impl Engine for Lmdb {
    fn bulk_load(&mut self, n: u64) -> Res<()> {
        let env = self.env();
        let mut wtxn = env.write_txn()?;
        for i in 0..n {
            self.db.put(&mut wtxn, &key(i), &value(i))?;
        }
        wtxn.commit()?;
        Ok(())
    }
    fn reader(&self) -> Res<Box<dyn Reader + '_>> {
        Ok(Box::new(LmdbReader { txn: self.env().read_txn()?, db: self.db }))
    }
    fn put_durable(&mut self, k: &Key, v: &Val) -> Res<()> {
        let mut wtxn = self.env().write_txn()?;
        self.db.put(&mut wtxn, k, v)?;
        wtxn.commit()?;
        Ok(())
    }
    fn batch_durable(&mut self, kvs: &[(Key, Val)]) -> Res<()> {
        let mut wtxn = self.env().write_txn()?;
        for (k, v) in kvs {
            self.db.put(&mut wtxn, k, v)?;
        }
        wtxn.commit()?;
        Ok(())
    }
    fn delete_durable(&mut self, keys: &[Key]) -> Res<()> {
        let mut wtxn = self.env().write_txn()?;
        for k in keys {
            self.db.delete(&mut wtxn, k)?;
        }
        wtxn.commit()?;
        Ok(())
    }
    fn compact(&mut self) -> Res<&'static str> {
        let env = self.env.take().expect("env open");
        let tmp = self.dir.join("data2.mdb");
        let mut file = std::fs::File::create_new(&tmp)?;
        env.copy_to_file(&mut file, heed::CompactionOption::Enabled)?;
        file.sync_all()?;
        drop(file);
        env.prepare_for_closing().wait();
        std::fs::rename(&tmp, self.dir.join("data.mdb"))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        let reopened = Lmdb::open(&self.dir)?;
        *self = reopened;
        Ok("copy_to_file(Compaction) + swap")
    }
    fn close(mut self: Box<Self>) -> Res<()> {
        if let Some(env) = self.env.take() {
            env.force_sync()?;
            env.prepare_for_closing().wait();
        }
        Ok(())
    }
}

// ---- sled -------------------------------------------------------------------------------

struct Sled {
    db: sled::Db,
}

impl Sled {
    fn open(dir: &Path) -> Res<Sled> {
        Ok(Sled { db: sled::Config::new().path(dir).open()? })
    }
}

struct SledReader<'a>(&'a sled::Db);

impl Reader for SledReader<'_> {
    fn get(&mut self, key: &[u8]) -> Option<usize> {
        self.0.get(key).expect("sled get").map(|v| digest(&v))
    }
    fn scan10(&mut self, start: &[u8]) -> usize {
        let mut d = 0;
        for kv in self.0.range(start..).take(10) {
            let (k, v) = kv.expect("sled range");
            d += k.len() + digest(&v);
        }
        d
    }
}

impl Engine for Sled {
    fn bulk_load(&mut self, n: u64) -> Res<()> {
        let mut i = 0;
        while i < n {
            let mut b = sled::Batch::default();
            for j in i..(i + BULK_BATCH).min(n) {
                b.insert(&key(j)[..], &value(j)[..]);
            }
            self.db.apply_batch(b)?;
            i += BULK_BATCH;
        }
        self.db.flush()?;
        Ok(())
    }
    fn reader(&self) -> Res<Box<dyn Reader + '_>> {
        Ok(Box::new(SledReader(&self.db)))
    }
    fn put_durable(&mut self, k: &Key, v: &Val) -> Res<()> {
        self.db.insert(k, &v[..])?;
        self.db.flush()?;
        Ok(())
    }
    fn batch_durable(&mut self, kvs: &[(Key, Val)]) -> Res<()> {
        let mut b = sled::Batch::default();
        for (k, v) in kvs {
            b.insert(&k[..], &v[..]);
        }
        self.db.apply_batch(b)?;
        self.db.flush()?;
        Ok(())
    }
    fn delete_durable(&mut self, keys: &[Key]) -> Res<()> {
        let mut b = sled::Batch::default();
        for k in keys {
            b.remove(&k[..]);
        }
        self.db.apply_batch(b)?;
        self.db.flush()?;
        Ok(())
    }
    fn compact(&mut self) -> Res<&'static str> {
        self.db.flush()?;
        Ok("none (no API; flush only)")
    }
    fn close(self: Box<Self>) -> Res<()> {
        self.db.flush()?;
        drop(self);
        Ok(())
    }
}

// ---- fjall ------------------------------------------------------------------------------

struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl Fjall {
    fn open(dir: &Path) -> Res<Fjall> {
        let db = fjall::Database::builder(dir).cache_size(CACHE_BYTES as u64).open()?;
        let ks = db.keyspace("bench", fjall::KeyspaceCreateOptions::default)?;
        Ok(Fjall { db, ks })
    }
    fn batch(&self) -> fjall::OwnedWriteBatch {
        self.db.batch()
    }
}

struct FjallReader<'a>(&'a fjall::Keyspace);

impl Reader for FjallReader<'_> {
    fn get(&mut self, key: &[u8]) -> Option<usize> {
        self.0.get(key).expect("fjall get").map(|v| digest(&v))
    }
    fn scan10(&mut self, start: &[u8]) -> usize {
        let mut d = 0;
        for g in self.0.range(start..).take(10) {
            let (k, v) = g.into_inner().expect("fjall range");
            d += k.len() + digest(&v);
        }
        d
    }
}

impl Engine for Fjall {
    fn bulk_load(&mut self, n: u64) -> Res<()> {
        let mut i = 0;
        while i < n {
            let mut b = self.batch();
            for j in i..(i + BULK_BATCH).min(n) {
                b.insert(&self.ks, key(j).to_vec(), value(j).to_vec());
            }
            b.commit()?;
            i += BULK_BATCH;
        }
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }
    fn reader(&self) -> Res<Box<dyn Reader + '_>> {
        Ok(Box::new(FjallReader(&self.ks)))
    }
    fn put_durable(&mut self, k: &Key, v: &Val) -> Res<()> {
        self.ks.insert(k.to_vec(), v.to_vec())?;
        self.db.persist(fjall::PersistMode::SyncData)?;
        Ok(())
    }
    fn batch_durable(&mut self, kvs: &[(Key, Val)]) -> Res<()> {
        let mut b = self.batch().durability(Some(fjall::PersistMode::SyncData));
        for (k, v) in kvs {
            b.insert(&self.ks, k.to_vec(), v.to_vec());
        }
        b.commit()?;
        Ok(())
    }
    fn delete_durable(&mut self, keys: &[Key]) -> Res<()> {
        let mut b = self.batch().durability(Some(fjall::PersistMode::SyncData));
        for k in keys {
            b.remove(&self.ks, k.to_vec());
        }
        b.commit()?;
        Ok(())
    }
    fn compact(&mut self) -> Res<&'static str> {
        self.ks.rotate_memtable_and_wait()?;
        self.ks.major_compact()?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok("rotate_memtable_and_wait + major_compact")
    }
    fn close(self: Box<Self>) -> Res<()> {
        self.db.persist(fjall::PersistMode::SyncAll)?;
        drop(self);
        Ok(())
    }
}

// ---- RocksDB ----------------------------------------------------------------------------

#[cfg(feature = "rocksdb")]
mod rocks {
    use super::*;
    use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Options, WriteBatch, WriteOptions, DB};

    pub struct Rocks {
        db: DB,
        sync: WriteOptions,
    }

    impl Rocks {
        pub fn open(dir: &Path) -> Res<Rocks> {
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.increase_parallelism(2);
            opts.set_compression_type(DBCompressionType::Lz4);
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&Cache::new_lru_cache(CACHE_BYTES)?);
            table.set_bloom_filter(10.0, false);
            opts.set_block_based_table_factory(&table);
            let db = DB::open(&opts, dir)?;
            let mut sync = WriteOptions::default();
            sync.set_sync(true);
            Ok(Rocks { db, sync })
        }
    }

    struct RocksReader<'a>(&'a DB);

    impl Reader for RocksReader<'_> {
        fn get(&mut self, key: &[u8]) -> Option<usize> {
            self.0.get_pinned(key).expect("rocksdb get").map(|v| digest(&v))
        }
        fn scan10(&mut self, start: &[u8]) -> usize {
            let mut it = self.0.raw_iterator();
            it.seek(start);
            let mut d = 0;
            for _ in 0..10 {
                if !it.valid() {
                    break;
                }
                d += it.key().map_or(0, |k| k.len()) + it.value().map_or(0, digest);
                it.next();
            }
            d
        }
    }

    impl Engine for Rocks {
        fn bulk_load(&mut self, n: u64) -> Res<()> {
            let mut nosync = WriteOptions::default();
            nosync.set_sync(false);
            let mut i = 0;
            while i < n {
                let mut b = WriteBatch::default();
                for j in i..(i + BULK_BATCH).min(n) {
                    b.put(key(j), value(j));
                }
                self.db.write_opt(b, &nosync)?;
                i += BULK_BATCH;
            }
            self.db.flush_wal(true)?;
            Ok(())
        }
        fn reader(&self) -> Res<Box<dyn Reader + '_>> {
            Ok(Box::new(RocksReader(&self.db)))
        }
        fn put_durable(&mut self, k: &Key, v: &Val) -> Res<()> {
            self.db.put_opt(k, v, &self.sync)?;
            Ok(())
        }
        fn batch_durable(&mut self, kvs: &[(Key, Val)]) -> Res<()> {
            let mut b = WriteBatch::default();
            for (k, v) in kvs {
                b.put(k, v);
            }
            self.db.write_opt(b, &self.sync)?;
            Ok(())
        }
        fn delete_durable(&mut self, keys: &[Key]) -> Res<()> {
            let mut b = WriteBatch::default();
            for k in keys {
                b.delete(k);
            }
            self.db.write_opt(b, &self.sync)?;
            Ok(())
        }
        fn compact(&mut self) -> Res<&'static str> {
            self.db.flush()?;
            self.db.compact_range::<&[u8], &[u8]>(None, None);
            Ok("flush + compact_range(None, None)")
        }
        fn close(self: Box<Self>) -> Res<()> {
            self.db.flush_wal(true)?;
            drop(self);
            Ok(())
        }
    }
}

#[allow(dead_code)]
const _SHAPES: (usize, usize) = (KEY_LEN, VALUE_LEN);

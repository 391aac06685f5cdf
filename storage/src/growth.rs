//! Growing the active region ahead of need, on a thread of its own.
//!
//! A region starts at `MMAP_INITIAL_SIZE` and doubles up to `MMAP_MAX_SIZE`. Growing writes
//! zeros over the new part (`IoFile::allocate`; docs/FORMAT.md says why zeros and not
//! `fallocate`), and the next `fdatasync` then has to write those megabytes as well. With
//! durable batches of 100 keys, a growth done by the append that needed it cost that append
//! 0.3 to 1.2 ms of zeros and the next commit's sync 1.4 to 4.3 ms instead of about 0.2,
//! four times per 10 MiB region. Here, once half the region is written, a thread writes the
//! zeros and syncs them, and the writer only maps the longer file when it gets there.
//!
//! The thread writes only past the end the writer uses, so the two never touch the same
//! bytes; a seal, dropping the dimension and closing the store wait for it first, so it
//! never extends a file that has become a sealed layer.

use std::io;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use crate::io::Io;
use crate::segment::Segment;

/// Zeros written (and written back) at a time.
const CHUNK: u64 = 256 << 10;

/// At most one growth per dimension.
#[derive(Default)]
pub(crate) struct Grower(Mutex<Slot>);

#[derive(Default)]
struct Slot {
    running: Option<Growth>,
    /// The layer id of a region whose growth failed: not tried ahead again (a full disk
    /// would otherwise start a thread, and log a warning, on every write), only by the
    /// write that needs the room.
    failed: Option<u32>,
}

struct Growth {
    layer: u32,
    to: u64,
    thread: JoinHandle<io::Result<()>>,
}

impl Grower {
    /// Starts growing `region`'s file to `to` bytes (written and synced), unless a growth
    /// is already under way. Nothing happens if the file cannot be opened or no thread can
    /// be started: the writer then grows the region itself when it needs the room.
    ///
    /// The thread syncs through a handle of its own. Linux reports a failed writeback once
    /// to each open file: through the writer's handle, this thread's failed sync would have
    /// taken the error that the writer's next sync must see (the writer's dirty frames may
    /// be gone, and only that error turns the store read-only), and that sync would have
    /// succeeded.
    pub fn start(&self, io: &dyn Io, region: &Segment, to: u64, dimension: u32) {
        let mut slot = self.0.lock();
        if slot.running.is_some() || slot.failed == Some(region.layer_id) {
            return;
        }
        let Ok(file) = io.open(&region.path(), false) else { return };
        let name = format!("jessy-grow-{}", crate::layout::dir_name(dimension));
        let job = move || {
            // A chunk at a time, each written back before the next: the writer syncs the
            // same file all the while, and each of its syncs would otherwise write whatever
            // zeros are dirty at that moment.
            let mut at = file.len()?;
            while at < to {
                let end = (at + CHUNK).min(to);
                file.allocate(end)?;
                file.write_back(at, end - at)?;
                at = end;
            }
            file.sync_data()
        };
        if let Ok(thread) = std::thread::Builder::new().name(name).spawn(job) {
            slot.running = Some(Growth { layer: region.layer_id, to, thread });
        }
    }

    /// The length a growth of layer `layer`'s region reached, once it has finished (with
    /// `wait`, waiting for it). `None` if there is none, it is still running, or it failed
    /// (then the writer grows the region itself, and reports the error if it fails again).
    pub fn take(&self, layer: u32, wait: bool) -> Option<u64> {
        let mut slot = self.0.lock();
        let running = slot.running.as_ref().is_some_and(|g| !g.thread.is_finished());
        if running && !wait {
            return None;
        }
        let growth = slot.running.take()?;
        let outcome = growth.thread.join();
        if !matches!(outcome, Ok(Ok(()))) {
            slot.failed = Some(growth.layer);
        }
        match outcome {
            Ok(Ok(())) if growth.layer == layer => Some(growth.to),
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "growing the region ahead of need failed; the next write that needs the room grows it");
                None
            }
            Err(_) => {
                tracing::error!("the thread growing the region panicked; the next write that needs the room grows it");
                None
            }
        }
    }

    /// Waits for a growth under way, whatever its outcome.
    pub fn finish(&self) {
        let growth = self.0.lock().running.take();
        if let Some(g) = growth {
            let _ = g.thread.join();
        }
    }
}

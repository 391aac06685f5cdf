//! The operations of the random workloads in `fault_disk_errors.rs` and `fault_kill.rs`
//! (each draws them its own way), what each does to the store, and what it does to a model
//! of it. Values are `tagged` with the operation's number, so a read can say which write
//! it came from.

use std::collections::BTreeMap;

use jessy_storage::{Dimension, WriteBatch};

use super::{answered, tagged};

/// Dimension name -> its contents.
pub type State = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

/// The workload's dimensions; an operation names one by its index here.
pub const DIMS: [&str; 2] = ["default", "aux"];

/// Keys are numbers; each test turns them into bytes its own way (`key` below).
#[derive(Debug, Clone)]
pub enum Op {
    /// Dimension, key, value length.
    Put(usize, u64, usize),
    Delete(usize, u64),
    /// Dimension, then per key a value length or `None` for a delete.
    Batch(usize, Vec<(u64, Option<usize>)>),
    Compact(usize),
}

impl Op {
    /// What the operation does to the model, with values tagged `tag`.
    pub fn apply(&self, state: &mut State, key: fn(u64) -> Vec<u8>, tag: u64) {
        if let Op::Compact(_) = self {
            return;
        }
        let m = state.get_mut(DIMS[self.dim()]).expect("the model holds every dimension");
        match self {
            Op::Put(_, k, len) => {
                m.insert(key(*k), tagged(&key(*k), tag, *len));
            }
            Op::Delete(_, k) => {
                m.remove(&key(*k));
            }
            Op::Batch(_, ops) => {
                for (k, v) in ops {
                    match v {
                        Some(len) => m.insert(key(*k), tagged(&key(*k), tag, *len)),
                        None => m.remove(&key(*k)),
                    };
                }
            }
            Op::Compact(_) => {}
        }
    }

    /// Runs the operation on `dim`, its dimension, with values tagged `tag`.
    /// Every other single write (odd tags) goes through the committer's inbox
    /// (`enqueue_put`, `enqueue_delete`), as the HTTP server's do, so that the fault tests
    /// cover both ways in.
    pub fn run(&self, dim: &Dimension, key: fn(u64) -> Vec<u8>, tag: u64) -> jessy_storage::Result<()> {
        let inbox = tag % 2 == 1;
        match self {
            Op::Put(_, k, len) if inbox => {
                let value = tagged(&key(*k), tag, *len);
                answered(|reply| dim.enqueue_put(key(*k), value, None, reply)).map(drop)
            }
            Op::Delete(_, k) if inbox => answered(|reply| dim.enqueue_delete(key(*k), None, reply)).map(drop),
            Op::Put(_, k, len) => dim.put(key(*k), tagged(&key(*k), tag, *len)).map(drop),
            Op::Delete(_, k) => dim.delete(key(*k)).map(drop),
            Op::Batch(_, ops) => {
                let mut b = WriteBatch::new();
                for (k, v) in ops {
                    match v {
                        Some(len) => b.push_put(key(*k), tagged(&key(*k), tag, *len)),
                        None => b.push_delete(key(*k)),
                    }
                }
                dim.write(b).map(drop)
            }
            Op::Compact(_) => dim.compact().map(drop),
        }
    }

    /// The index in [`DIMS`] of the operation's dimension.
    pub fn dim(&self) -> usize {
        let (Op::Put(d, ..) | Op::Delete(d, _) | Op::Batch(d, _) | Op::Compact(d)) = self;
        *d
    }
}

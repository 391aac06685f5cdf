//! Asking the CPU to start loading memory before it is read. The indexes and the log are
//! far larger than the cache, and the reads that follow are scattered: issued ahead, their
//! cache misses overlap instead of waiting for each other.

/// Asks the CPU to start loading the cache lines that hold `value`.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    prefetch_bytes(value as *const T as *const u8, std::mem::size_of::<T>());
}

/// Asks the CPU to start loading every cache line of `items`, the first and last included
/// when they hold only part of it.
#[inline(always)]
pub(crate) fn prefetch_slice<T>(items: &[T]) {
    prefetch_bytes(items.as_ptr() as *const u8, std::mem::size_of_val(items));
}

/// Asks for every cache line of the `size` bytes at `start`.
#[inline(always)]
fn prefetch_bytes(start: *const u8, size: usize) {
    // A byte every 64 is in every line but perhaps the last; the last byte is in that one
    // (bytes that straddle a line boundary span one line more than `size / 64`).
    let mut at = 0;
    while at < size {
        prefetch_line(start.wrapping_add(at));
        at += 64;
    }
    if size > 0 {
        prefetch_line(start.wrapping_add(size - 1));
    }
}

/// Asks the CPU to start loading the cache line of `byte`. Takes a pointer, not a
/// reference: the byte may be padding, which no reference may point at.
#[inline(always)]
fn prefetch_line(byte: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the program sees, and it never faults,
    // whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(byte as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = byte;
}

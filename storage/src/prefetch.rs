//! Asking the CPU to start loading memory before it is read. The indexes and the log are
//! far larger than the cache, and the reads that follow are scattered: issued ahead, their
//! cache misses overlap instead of waiting for each other.

/// Asks the CPU to start loading the cache lines that hold `value`.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    let start = value as *const T as *const u8;
    let size = std::mem::size_of::<T>();
    let mut at = 0;
    while at < size {
        prefetch_line(start.wrapping_add(at));
        at += 64;
    }
    // The last byte too: an object that straddles a line boundary spans one more line.
    if size > 0 {
        prefetch_line(start.wrapping_add(size - 1));
    }
}

/// Asks the CPU to start loading every cache line of `items`.
#[inline(always)]
pub(crate) fn prefetch_slice<T>(items: &[T]) {
    let start = items.as_ptr() as *const u8;
    let size = std::mem::size_of_val(items);
    // A byte every 64 is in every line but perhaps the last one's; the last byte is in that.
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
pub(crate) fn prefetch_line(byte: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the program sees, and it never faults,
    // whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(byte as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = byte;
}

//! Asking for huge pages under the large in-memory index arrays.
//!
//! The point index's tables and the ordered index's arrays are read at random places: a
//! million keys take about 150 MB of point-index slots and 72 MB of ordered entries and
//! heads. On 4 KiB pages nearly every such read also misses the TLB, and the CPU walks the
//! page tables before it can even start the cache miss; a software prefetch of a slot
//! waited on that walk too. On 2 MiB pages the TLB covers the arrays.
//!
//! Linux gives anonymous memory huge pages where asked with `madvise(MADV_HUGEPAGE)`
//! (transparent huge pages in "madvise" mode, a common default; in "always" mode the advice
//! changes nothing, in "never" mode it is ignored). The advice is only a hint: it changes
//! no contents, and a failure is ignored.

/// A huge page on x86-64 and most arm64 kernels.
const HUGE_PAGE: usize = 2 << 20;

/// An empty vector with room for `n` items, whose memory (where it spans whole huge
/// pages, so never for small vectors) is advised to be backed by huge pages. Advise before
/// the first write: memory already touched keeps its small pages until the kernel's
/// background thread gets to it.
pub(crate) fn vec_with_capacity<T>(n: usize) -> Vec<T> {
    let v = Vec::with_capacity(n);
    advise(v.as_ptr() as usize, v.capacity() * std::mem::size_of::<T>());
    v
}

fn advise(start: usize, len: usize) {
    let first = start.next_multiple_of(HUGE_PAGE);
    let end = start.saturating_add(len) / HUGE_PAGE * HUGE_PAGE;
    if end <= first {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: `first..end` lies inside the vector's allocation, which the caller owns, and
    // is aligned to pages as madvise requires. MADV_HUGEPAGE only changes which page size
    // the kernel uses for those addresses: no byte's value and no mapping's validity
    // changes, whatever the result, so ignoring an error is sound.
    unsafe {
        libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_the_room_asked_for_and_keeps_what_is_written() {
        for n in [0usize, 1, 1000, 3 << 20] {
            let mut v: Vec<u64> = vec_with_capacity(n);
            assert!(v.capacity() >= n);
            v.extend((0..n as u64).map(|i| i * 3));
            assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
        }
    }
}

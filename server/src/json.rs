//! JSON strings written straight into a byte buffer, exactly as `serde_json` writes them.
//!
//! Keys and values in scan pages, and the request fields in log lines, are nearly always plain
//! ASCII that needs no escaping. [`plain`] checks that eight bytes at a time; such a string is
//! then copied as it is. Anything else (non-ASCII text, quotes, backslashes, control characters)
//! goes through `serde_json`, so the output is always what `serde_json` would write.

/// True when every byte is printable ASCII other than `"` and `\`: a JSON string that needs
/// no escaping, and valid UTF-8.
#[inline]
pub(crate) fn plain(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Per byte lane, the high bit of the result is set where the byte is zero.
    #[inline(always)]
    fn zero_lanes(v: u64) -> u64 {
        v.wrapping_sub(ONES) & !v & HIGH
    }
    #[inline(always)]
    fn bad_lanes(w: u64) -> u64 {
        // Non-ASCII; below 0x20 (exact for ASCII lanes, which is all that is left when the
        // first term is zero); `"`; `\`.
        (w & HIGH)
            | (w.wrapping_sub(0x20 * ONES) & !w & HIGH)
            | zero_lanes(w ^ (b'"' as u64 * ONES))
            | zero_lanes(w ^ (b'\\' as u64 * ONES))
    }
    let mut chunks = bytes.chunks_exact(8);
    let mut bad = 0u64;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        bad |= bad_lanes(u64::from_le_bytes(word));
    }
    if bad != 0 {
        return false;
    }
    chunks.remainder().iter().all(|&b| (0x20..0x80).contains(&b) && b != b'"' && b != b'\\')
}

/// Appends `text` as a JSON string.
#[inline]
pub(crate) fn push_str(out: &mut Vec<u8>, text: &str) {
    if plain(text.as_bytes()) {
        push_plain(out, text.as_bytes());
    } else {
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// Appends `bytes` as a JSON string if they are UTF-8; `Err` (nothing written) if not.
#[inline]
pub(crate) fn push_utf8(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), std::str::Utf8Error> {
    if plain(bytes) {
        push_plain(out, bytes);
    } else {
        let text = std::str::from_utf8(bytes)?;
        let _ = serde_json::to_writer(&mut *out, text);
    }
    Ok(())
}

#[inline]
fn push_plain(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn serde(text: &str) -> Vec<u8> {
        serde_json::to_vec(text).unwrap()
    }

    #[test]
    fn every_single_byte_and_char() {
        for b in 0..=255u8 {
            let bytes = [b'a', b, b'z', b'a', b'a', b'a', b'a', b'a', b'a', b'a', b];
            let mut out = Vec::new();
            match std::str::from_utf8(&bytes) {
                Ok(text) => {
                    push_utf8(&mut out, &bytes).unwrap();
                    assert_eq!(out, serde(text), "byte {b:#x}");
                    let mut out = Vec::new();
                    push_str(&mut out, text);
                    assert_eq!(out, serde(text), "byte {b:#x}");
                }
                Err(_) => assert!(push_utf8(&mut out, &bytes).is_err() && out.is_empty(), "byte {b:#x}"),
            }
            assert_eq!(plain(&bytes), (0x20..0x80).contains(&b) && b != b'"' && b != b'\\', "byte {b:#x}");
        }
        for text in ["", "a", "\u{7f}", "\u{80}", "é", "\u{2028}", "\u{1F600}", "</script>", "\0", "\u{1f}\u{20}"] {
            let mut out = Vec::new();
            push_str(&mut out, text);
            assert_eq!(out, serde(text), "{text:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn strings_are_written_as_serde_writes_them(text in "(?s).{0,80}", ascii in "[ -~]{0,80}") {
            for t in [&text, &ascii] {
                let mut out = b"x".to_vec();
                push_str(&mut out, t);
                prop_assert_eq!(&out[1..], &serde(t)[..]);
                let mut out = Vec::new();
                push_utf8(&mut out, t.as_bytes()).unwrap();
                prop_assert_eq!(out, serde(t));
            }
        }

        #[test]
        fn bytes_are_written_as_serde_writes_them_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut out = Vec::new();
            match std::str::from_utf8(&bytes) {
                Ok(text) => {
                    push_utf8(&mut out, &bytes).unwrap();
                    prop_assert_eq!(out, serde(text));
                }
                Err(_) => prop_assert!(push_utf8(&mut out, &bytes).is_err() && out.is_empty()),
            }
        }
    }
}

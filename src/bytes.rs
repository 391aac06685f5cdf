//! How keys and values travel through text: the escapes of `jessy scan` (and of `--escaped`
//! arguments), and the JSON encoding of `jessy dump` / `jessy load` / `jessy scan --json`.
//!
//! **Escapes.** Valid UTF-8 that is printable stays as it is. A backslash is `\\`, tab,
//! newline and carriage return are `\t`, `\n`, `\r`, and every other byte (control
//! characters, bytes that are not valid UTF-8) is `\xHH`. `unescape` reverses it exactly (it
//! also takes `\0`), so a key copied from `jessy scan` output works with `--escaped`.
//!
//! **JSON.** A key or value that is valid UTF-8 is a JSON string in the field `key` /
//! `value`; otherwise it is standard base64 (with padding) in `key_b64` / `value_b64`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// Writes `bytes` with the escapes described in the module docs.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        push_hex(&mut out, b);
                    }
                }
                c => out.push(c),
            }
        }
        for &b in chunk.invalid() {
            push_hex(&mut out, b);
        }
    }
    out
}

fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push_str("\\x");
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 0xf)] as char);
}

/// Reads the escapes back: `\\`, `\t`, `\n`, `\r`, `\0` and `\xHH`; any other backslash
/// sequence is an error.
pub fn unescape(text: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let next = text.get(i + 1).copied();
        let (byte, used) = match next {
            Some(b'\\') => (b'\\', 2),
            Some(b't') => (b'\t', 2),
            Some(b'n') => (b'\n', 2),
            Some(b'r') => (b'\r', 2),
            Some(b'0') => (0, 2),
            Some(b'x') => {
                let hex = text.get(i + 2..i + 4).ok_or_else(|| format!("`\\x` at byte {i} needs two hex digits"))?;
                let hex = std::str::from_utf8(hex).map_err(|_| format!("`\\x` at byte {i} needs two hex digits"))?;
                let byte = u8::from_str_radix(hex, 16).map_err(|_| format!("`\\x{hex}` at byte {i} is not hex"))?;
                (byte, 4)
            }
            Some(other) => {
                return Err(format!(
                    "unknown escape `\\{}` at byte {i}; use \\\\, \\t, \\n, \\r, \\0 or \\xHH",
                    other.escape_ascii()
                ))
            }
            None => return Err("a lone backslash at the end; write \\\\ for a backslash".into()),
        };
        out.push(byte);
        i += used;
    }
    Ok(out)
}

/// Appends `"<name>":"<utf-8>"` or `"<name>_b64":"<base64>"` to a JSON object being written
/// by hand.
pub fn push_json_field(out: &mut String, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            out.push('"');
            out.push_str(name);
            out.push_str("\":");
            push_json_string(out, text);
        }
        Err(_) => {
            out.push('"');
            out.push_str(name);
            out.push_str("_b64\":\"");
            B64.encode_string(bytes, out);
            out.push('"');
        }
    }
}

/// Appends `text` as a JSON string literal.
pub fn push_json_string(out: &mut String, text: &str) {
    // serde_json's escaping is the reference; writing a &str cannot fail.
    out.push_str(&serde_json::Value::from(text).to_string());
}

/// The bytes of a field given as text (`key`) or base64 (`key_b64`): exactly one of the two
/// may be present. `Ok(None)` when neither is.
pub fn from_json(name: &str, text: Option<String>, b64: Option<String>) -> Result<Option<Vec<u8>>, String> {
    match (text, b64) {
        (Some(_), Some(_)) => Err(format!("both `{name}` and `{name}_b64` are set; give one")),
        (Some(text), None) => Ok(Some(text.into_bytes())),
        (None, Some(b64)) => {
            B64.decode(b64.trim()).map(Some).map_err(|e| format!("`{name}_b64` is not valid base64: {e}"))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip() {
        let samples: [&[u8]; 7] = [
            b"plain",
            b"tab\there\nnew\rline",
            b"back\\slash",
            b"\x00\xff\xfe binary \x7f",
            "héllo wörld ✓".as_bytes(),
            b"\xc3",
            b"",
        ];
        for s in samples {
            let e = escape(s);
            assert!(!e.contains('\t') && !e.contains('\n'), "{e}");
            assert_eq!(unescape(e.as_bytes()).unwrap(), s, "{e}");
        }
        assert_eq!(escape(b"a\x00\xffb"), "a\\x00\\xFFb");
        assert_eq!(escape("é".as_bytes()), "é");
    }

    #[test]
    fn unescape_rejects_bad_sequences() {
        assert!(unescape(b"\\q").is_err());
        assert!(unescape(b"\\x4").is_err());
        assert!(unescape(b"\\xZZ").is_err());
        assert!(unescape(b"end\\").is_err());
        assert_eq!(unescape(b"\\0\\x41").unwrap(), b"\0A");
    }

    #[test]
    fn json_fields_pick_text_or_base64() {
        let mut s = String::new();
        push_json_field(&mut s, "key", b"a\"b");
        assert_eq!(s, r#""key":"a\"b""#);
        let mut s = String::new();
        push_json_field(&mut s, "value", b"\xff\x00");
        assert_eq!(s, r#""value_b64":"/wA=""#);
        assert_eq!(from_json("key", None, Some("/wA=".into())).unwrap(), Some(vec![0xff, 0]));
        assert!(from_json("key", Some("a".into()), Some("YQ==".into())).is_err());
        assert!(from_json("key", None, Some("!!".into())).is_err());
        assert_eq!(from_json("key", None, None).unwrap(), None);
    }
}

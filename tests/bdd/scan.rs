//! Steps that scan a prefix page by page and check the pages.

use cucumber::{then, when};
use reqwest::Method;

use super::world::{key_range, JessyWorld};

/// More pages than this means the cursor does not move on.
const MAX_PAGES: usize = 100;

#[when(expr = "I scan the prefix {string} {int} keys at a time")]
async fn i_scan(w: &mut JessyWorld, prefix: String, limit: u32) {
    w.pages.clear();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = format!("prefix={}&limit={limit}", query_escape(&prefix));
        if let Some(cursor) = &cursor {
            query += &format!("&cursor={}", query_escape(cursor));
        }
        let url = w.gateway_url(&format!("/api/v1/dimensions/default/scan?{query}"));
        w.send(Method::GET, url, None).await;
        let reply = w.last();
        assert_eq!(reply.status, 200, "scan page {} failed:\n{reply}", w.pages.len() + 1);
        let page = reply.json();
        let items = page["items"].as_array().unwrap_or_else(|| panic!("no \"items\" array:\n{reply}"));
        let items: Vec<(String, String)> = items
            .iter()
            .map(|item| match (item["key"].as_str(), item["value"].as_str()) {
                (Some(k), Some(v)) => (k.to_string(), v.to_string()),
                _ => panic!("an item without a string key and value: {item}\n{reply}"),
            })
            .collect();
        cursor = match &page["next_cursor"] {
            serde_json::Value::Null => None,
            serde_json::Value::String(c) => Some(c.clone()),
            other => panic!("next_cursor is neither a string nor null: {other}\n{reply}"),
        };
        w.pages.push(items);
        if cursor.is_none() {
            break;
        }
        assert!(w.pages.len() < MAX_PAGES, "still a next_cursor after {MAX_PAGES} pages");
    }
}

#[then(regex = r"^I get (\d+) pages holding ((?:\d+)(?:(?:, | and )\d+)*) keys$")]
async fn i_get_pages(w: &mut JessyWorld, count: usize, sizes: String) {
    let expected: Vec<usize> =
        sizes.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    assert_eq!(expected.len(), count, "the step names {count} pages but {} sizes", expected.len());
    let got: Vec<usize> = w.pages.iter().map(Vec::len).collect();
    assert_eq!(got, expected, "page sizes (the last page is the one without a next_cursor)");
}

#[then(expr = "the keys are {string} to {string}, each exactly once and in order")]
async fn the_keys_are(w: &mut JessyWorld, first: String, last: String) {
    let expected = key_range(&first, &last);
    let got: Vec<&str> = w.pages.iter().flatten().map(|(k, _)| k.as_str()).collect();
    if got != expected {
        let missing: Vec<_> = expected.iter().filter(|k| !got.contains(&k.as_str())).collect();
        let unexpected: Vec<_> = got.iter().filter(|k| !expected.contains(&k.to_string())).collect();
        let mut seen = std::collections::BTreeSet::new();
        let repeated: Vec<_> = got.iter().filter(|k| !seen.insert(**k)).collect();
        panic!(
            "the scan's keys are not {first:?} to {last:?} in order\n  missing: {missing:?}\n  not under the \
             prefix or not stored: {unexpected:?}\n  more than once: {repeated:?}\n  all, in the order received: \
             {got:?}"
        );
    }
}

#[then("each key comes with the value I stored")]
async fn each_key_with_its_value(w: &mut JessyWorld) {
    for (key, value) in w.pages.iter().flatten() {
        let stored = w.stored.get(&("default".to_string(), key.as_bytes().to_vec()));
        assert_eq!(stored.map(Vec::as_slice), Some(value.as_bytes()), "the scan's value of {key:?}");
    }
}

/// Percent-encodes a query value (cursors are base64url, prefixes may hold anything).
fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

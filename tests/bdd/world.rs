//! The state of one scenario: a temporary directory (the data directory and any backup files),
//! jessy-core and jessy-api as child processes, an HTTP client, the last answer, and what the
//! user has stored so far.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Method;

use super::process::Service;

/// Which credentials a `When` step sends. `Given` steps (setting things up) always send the
/// configured token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The token the services were started with, if any.
    Configured,
    /// No `Authorization` header at all.
    Nothing,
    /// `Authorization: Bearer <this>`.
    Token(String),
}

/// What a user stored: (dimension, key) -> value.
pub type Stored = BTreeMap<(String, Vec<u8>), Vec<u8>>;

#[derive(cucumber::World)]
#[world(init = Self::new)]
pub struct JessyWorld {
    pub tmp: tempfile::TempDir,
    pub core: Option<Service>,
    /// jessy-core's address, kept across a restart so the gateway finds it again.
    pub core_addr: Option<String>,
    pub gateway: Option<Service>,
    /// `JESSY_API_TOKEN` of both services.
    pub token: Option<String>,
    pub credentials: Credentials,
    pub client: reqwest::Client,
    /// The answer to the last request.
    pub last: Option<Reply>,
    /// The `ETag` of every successful put, in order.
    pub put_etags: Vec<String>,
    /// What the user stored and has not deleted: (dimension, key) -> value.
    pub stored: Stored,
    /// `stored` as it was when the last snapshot was taken.
    pub at_snapshot: Option<Stored>,
    /// The pages of the last scan, each a list of (key, value).
    pub pages: Vec<Vec<(String, String)>>,
}

impl JessyWorld {
    fn new() -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("reqwest client");
        JessyWorld {
            tmp: tempfile::Builder::new().prefix("jessy-bdd-").tempdir().expect("temporary directory"),
            core: None,
            core_addr: None,
            gateway: None,
            token: None,
            credentials: Credentials::Configured,
            client,
            last: None,
            put_etags: Vec::new(),
            stored: BTreeMap::new(),
            at_snapshot: None,
            pages: Vec::new(),
        }
    }

    /// `MMAP_BASE_PATH` of this scenario's jessy-core.
    pub fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    /// A file the user names in a step ("backup.tar.gz"), next to the data directory.
    pub fn file(&self, name: &str) -> PathBuf {
        assert!(!name.contains('/') && !name.is_empty(), "name a plain file, not a path: {name:?}");
        self.tmp.path().join(name)
    }

    /// Starts `jessy serve` on the data directory: on a free port the first time, on the same
    /// address after a restart.
    pub async fn start_core(&mut self) {
        assert!(self.core.is_none(), "jessy-core is already running");
        let addr = self.core_addr.clone().unwrap_or_else(|| "127.0.0.1:0".to_string());
        let mut cmd = Command::new(super::jessy_bin());
        cmd.args(["serve", "--addr", &addr, "--data"])
            .arg(self.data_dir())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("JESSY_DURABILITY", "immediate");
        if let Some(token) = &self.token {
            cmd.env("JESSY_API_TOKEN", token);
        }
        let core = Service::start("jessy-core", cmd, |line| {
            (line["fields"]["message"] == "listening").then(|| line["fields"]["addr"].as_str().map(str::to_string))?
        })
        .await;
        self.core_addr = Some(core.addr.clone());
        self.core = Some(core);
    }

    /// Starts jessy-api on a free port in front of the running jessy-core.
    pub async fn start_gateway(&mut self) {
        assert!(self.gateway.is_none(), "jessy-api is already running");
        let core_addr = self.core_addr.as_deref().expect("start jessy-core before the gateway");
        let mut cmd = Command::new(super::gateway_bin());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("JESSY_API_ADDR", "127.0.0.1:0")
            .env("JESSY_CORE_URL", format!("http://{core_addr}"));
        if let Some(token) = &self.token {
            cmd.env("JESSY_API_TOKEN", token);
        }
        let gateway = Service::start("jessy-api", cmd, |line| {
            (line["msg"] == "jessy-api listening").then(|| line["addr"].as_str().map(str::to_string))?
        })
        .await;
        self.gateway = Some(gateway);
    }

    /// SIGTERM to jessy-core; it must exit 0.
    pub async fn stop_core(&mut self) {
        let core = self.core.take().expect("jessy-core is not running");
        let log = core.log.clone();
        let status = core.stop().await;
        assert!(status.success(), "jessy-core exited with {status} after SIGTERM; its output:\n{}", log.tail(30));
    }

    pub fn gateway_url(&self, path: &str) -> String {
        let gateway = self.gateway.as_ref().expect("no gateway is running (start with \"Given a running Jessy ...\")");
        format!("http://{}{path}", gateway.addr)
    }

    pub fn core_url(&self, path: &str) -> String {
        let core = self.core.as_ref().expect("jessy-core is not running");
        format!("http://{}{path}", core.addr)
    }

    /// `/api/v1/dimensions/<dim>/keys/<key>` on the gateway, the key percent-encoded.
    pub fn key_url(&self, dim: &str, key: &[u8]) -> String {
        self.gateway_url(&format!("/api/v1/dimensions/{dim}/keys/{}", encode_key(key)))
    }

    /// Sends a request with the credentials the scenario chose and keeps the answer in `last`.
    pub async fn send(&mut self, method: Method, url: String, body: Option<Vec<u8>>) {
        let token = match &self.credentials {
            Credentials::Configured => self.token.clone(),
            Credentials::Nothing => None,
            Credentials::Token(t) => Some(t.clone()),
        };
        let reply = self.request(method, url, body, token.as_deref(), &[]).await;
        self.last = Some(reply);
    }

    /// Sends a request with the configured token (for `Given` steps); does not touch `last`.
    pub async fn send_as_owner(&self, method: Method, url: String, body: Option<Vec<u8>>) -> Reply {
        self.request(method, url, body, self.token.as_deref(), &[]).await
    }

    pub async fn request(
        &self,
        method: Method,
        url: String,
        body: Option<Vec<u8>>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let what = format!("{method} {}", url.split_once("//").map_or(&*url, |(_, rest)| rest));
        let mut request = self.client.request(method, &url);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{what}: no answer: {e:#}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_else(|e| panic!("{what}: reading the body failed: {e:#}")).to_vec();
        Reply { what, status, headers, body }
    }

    /// PUT through the gateway as the owner; it must succeed (204), and is remembered.
    pub async fn store(&mut self, dim: &str, key: &[u8], value: &[u8]) {
        let reply = self.send_as_owner(Method::PUT, self.key_url(dim, key), Some(value.to_vec())).await;
        assert_eq!(reply.status, 204, "storing a key failed:\n{reply}");
        self.put_etags.extend(reply.header("etag").map(str::to_string));
        self.stored.insert((dim.to_string(), key.to_vec()), value.to_vec());
    }

    /// Creates a dimension through the gateway as the owner (201).
    pub async fn create_dimension(&mut self, dim: &str) {
        let reply = self.send_as_owner(Method::PUT, self.gateway_url(&format!("/api/v1/dimensions/{dim}")), None).await;
        assert_eq!(reply.status, 201, "creating the dimension {dim:?} failed:\n{reply}");
    }

    pub fn last(&self) -> &Reply {
        self.last.as_ref().expect("no request has been sent yet in this scenario")
    }

    /// Remembers the outcome of a put or delete the user made in a `When` step.
    pub fn note_write(&mut self, dim: &str, key: &[u8], value: Option<&[u8]>) {
        let reply = self.last();
        if reply.status != 204 {
            return;
        }
        let etag = reply.header("etag").map(str::to_string);
        let id = (dim.to_string(), key.to_vec());
        match value {
            Some(value) => {
                self.stored.insert(id, value.to_vec());
                self.put_etags.extend(etag);
            }
            None => {
                self.stored.remove(&id);
            }
        }
    }

    /// A summary of everything that helps to understand a failure.
    pub fn report(&self) -> String {
        let mut out = format!("  temporary directory (removed now): {}\n", self.tmp.path().display());
        if let Some(reply) = &self.last {
            out += &format!("  last answer: {reply}\n");
        }
        for (name, service) in [("jessy-core", &self.core), ("jessy-api", &self.gateway)] {
            match service {
                Some(service) => {
                    out += &format!(
                        "  {name} (pid {}, {}), last lines:\n{}",
                        service.pid(),
                        service.addr,
                        service.log.tail(15)
                    )
                }
                None => out += &format!("  {name}: not running\n"),
            }
        }
        out
    }
}

impl fmt::Debug for JessyWorld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JessyWorld")
            .field("tmp", &self.tmp.path())
            .field("core", &self.core)
            .field("gateway", &self.gateway)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("credentials", &self.credentials)
            .field("stored keys", &self.stored.len())
            .field("last", &self.last.as_ref().map(|r| format!("{} -> {}", r.what, r.status)))
            .finish_non_exhaustive()
    }
}

/// One HTTP answer, kept whole so a failed expectation can show it.
pub struct Reply {
    /// "PUT 127.0.0.1:41234/api/v1/..."
    pub what: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("the body is not JSON ({e}):\n{self}"))
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} answered {}", self.what, self.status)?;
        for name in ["content-type", "etag", "www-authenticate", "x-request-id"] {
            if let Some(value) = self.header(name) {
                writeln!(f, "    {name}: {value}")?;
            }
        }
        match std::str::from_utf8(&self.body) {
            Ok(text) if text.len() <= 800 => write!(f, "    body: {text:?}"),
            Ok(text) => {
                write!(f, "    body ({} bytes): {:?}...", text.len(), text.chars().take(800).collect::<String>())
            }
            Err(_) => write!(
                f,
                "    body: {} bytes, not UTF-8: {}",
                self.body.len(),
                hex(&self.body[..self.body.len().min(64)])
            ),
        }
    }
}

/// Percent-encodes a key for a path: everything but `A-Za-z0-9-._~:/` becomes `%XX`.
pub fn encode_key(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key {
        if b.is_ascii_alphanumeric() || b"-._~:/".contains(&b) {
            out.push(char::from(b));
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

/// "00 ff 0a" -> [0x00, 0xff, 0x0a]
pub fn parse_hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap_or_else(|e| panic!("{h:?} in {text:?} is not a hex byte: {e}")))
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// "user:00" to "user:24" -> user:00, user:01, ..., user:24 (the width of the number is kept).
pub fn key_range(first: &str, last: &str) -> Vec<String> {
    let split = |key: &str| {
        let digits = key.len() - key.bytes().rev().take_while(u8::is_ascii_digit).count();
        let (prefix, number) = key.split_at(digits);
        assert!(!number.is_empty(), "{key:?} does not end in a number");
        (prefix.to_string(), number.len(), number.parse::<u64>().expect("number"))
    };
    let (prefix, width, from) = split(first);
    let (prefix2, _, to) = split(last);
    assert!(prefix == prefix2 && from <= to, "{first:?} to {last:?} is not a range of keys");
    (from..=to).map(|n| format!("{prefix}{n:0width$}")).collect()
}

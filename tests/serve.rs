//! `jessy serve` as a process: start, write, SIGTERM, exit 0, restart on the same data,
//! read everything back; a second process on the same data fails with the holder's pid.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const JESSY: &str = env!("CARGO_BIN_EXE_jessy");

struct Server {
    child: Child,
    addr: String,
    /// The log lines before "listening", as JSON.
    startup: Vec<serde_json::Value>,
}

impl Server {
    /// Starts `jessy serve` on a free port and waits for its "listening" log line.
    fn start(data: &Path, extra_env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(JESSY);
        cmd.args(["serve", "--addr", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("RUST_LOG", "info")
            .env("JESSY_DURABILITY", "immediate")
            .env_remove("JESSY_API_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn jessy serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut startup = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let out = child.wait_with_output().expect("output");
                    panic!("no listening line; stderr: {}", String::from_utf8_lossy(&out.stderr));
                }
            };
            let json: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            if json["fields"]["message"] == "listening" {
                break json["fields"]["addr"].as_str().expect("addr field").to_string();
            }
            startup.push(json);
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in rx {});
        Server { child, addr, startup }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn sigterm(&self) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit, killing it after `limit`.
    fn wait(mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("jessy serve did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only reached if a test failed midway: do not leave the process behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn sigterm_stops_cleanly_and_a_restart_keeps_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let keys: Vec<String> = (0..60).map(|i| format!("key/{i:03}")).collect();

    let server = Server::start(dir.path(), &[]);
    rt.block_on(async {
        let r = client.put(server.url("/v1/dimensions/users")).send().await.unwrap();
        assert_eq!(r.status(), 201);
        for (i, k) in keys.iter().enumerate() {
            let dim = if i % 2 == 0 { "default" } else { "users" };
            let r = client
                .put(server.url(&format!("/v1/dimensions/{dim}/keys/{k}")))
                .body(format!("value {i}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
        }
    });
    server.sigterm();
    let started = Instant::now();
    let status = server.wait(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    let server = Server::start(dir.path(), &[]);
    rt.block_on(async {
        for (i, k) in keys.iter().enumerate() {
            let dim = if i % 2 == 0 { "default" } else { "users" };
            let r = client.get(server.url(&format!("/v1/dimensions/{dim}/keys/{k}"))).send().await.unwrap();
            assert_eq!(r.status(), 200, "{dim}/{k}");
            assert_eq!(r.text().await.unwrap(), format!("value {i}"));
        }
    });
    server.sigterm();
    assert!(server.wait(Duration::from_secs(10)).success());
}

#[test]
fn a_snapshot_taken_while_serving_restores_with_tar() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let archive = dir.path().join("snapshot.tar.gz");
    let server = Server::start(&dir.path().join("live"), &[]);
    rt.block_on(async {
        assert_eq!(client.put(server.url("/v1/dimensions/users")).send().await.unwrap().status(), 201);
        for i in 0..20 {
            let r =
                client.put(server.url(&format!("/v1/dimensions/users/keys/u{i}"))).body(format!("v{i}")).send().await;
            assert_eq!(r.unwrap().status(), 204);
        }
        let r = client.get(server.url("/v1/snapshot")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/gzip");
        std::fs::write(&archive, r.bytes().await.unwrap()).unwrap();
        // Written after the snapshot: must not be in it.
        let r = client.put(server.url("/v1/dimensions/users/keys/later")).body("x").send().await.unwrap();
        assert_eq!(r.status(), 204);
    });
    server.sigterm();
    assert!(server.wait(Duration::from_secs(10)).success());

    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    let tar = Command::new("tar").arg("-xzf").arg(&archive).arg("-C").arg(&restored).status().expect("run tar");
    assert!(tar.success(), "tar -xzf failed");
    let server = Server::start(&restored, &[]);
    rt.block_on(async {
        for i in 0..20 {
            let r = client.get(server.url(&format!("/v1/dimensions/users/keys/u{i}"))).send().await.unwrap();
            assert_eq!(r.status(), 200, "u{i}");
            assert_eq!(r.text().await.unwrap(), format!("v{i}"));
        }
        let r = client.get(server.url("/v1/dimensions/users/keys/later")).send().await.unwrap();
        assert_eq!(r.status(), 404);
    });
    server.sigterm();
    assert!(server.wait(Duration::from_secs(10)).success());
}

#[test]
fn serving_a_directory_without_a_store_says_it_created_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("not-yet-a-store");
    let created = |server: &Server| {
        server
            .startup
            .iter()
            .find(|l| l["fields"]["message"].as_str().is_some_and(|m| m.starts_with("created a new, empty store at")))
            .cloned()
    };

    let rt = runtime();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let server = Server::start(&data, &[]);
    let line =
        created(&server).unwrap_or_else(|| panic!("no \"created a new, empty store\" line: {:?}", server.startup));
    assert_eq!(line["level"], "WARN", "{line}");
    let message = line["fields"]["message"].as_str().unwrap();
    assert!(message.contains(&data.display().to_string()) && message.contains("MMAP_BASE_PATH"), "{message}");
    rt.block_on(async {
        let r = client.put(server.url("/v1/dimensions/default/keys/k")).body("v").send().await.unwrap();
        assert_eq!(r.status(), 204);
    });
    server.sigterm();
    assert!(server.wait(Duration::from_secs(20)).success());

    // The store is there now: a restart opens it without the warning.
    let server = Server::start(&data, &[]);
    assert_eq!(created(&server), None, "the second start found the store");
    rt.block_on(async {
        let r = client.get(server.url("/v1/dimensions/default/keys/k")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "v");
    });
    server.sigterm();
    assert!(server.wait(Duration::from_secs(20)).success());
}

/// A SIGTERM the moment the "listening" line is out (the signal handlers used to be
/// installed only when serving began, after it) still ends in a clean close, exit 0.
#[test]
fn sigterm_right_after_listening_is_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..5 {
        let server = Server::start(dir.path(), &[]);
        server.sigterm();
        let status = server.wait(Duration::from_secs(20));
        assert!(status.success(), "jessy serve ended with {status} on a SIGTERM right after starting");
    }
}

#[test]
fn a_second_server_on_the_same_data_fails_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path(), &[]);
    let out = Command::new(JESSY)
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .output()
        .expect("run second jessy serve");
    assert_eq!(out.status.code(), Some(2), "second server: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("locked"), "{stderr}");
    assert!(stderr.contains(&first.child.id().to_string()), "names the holder pid {}: {stderr}", first.child.id());
    first.sigterm();
    assert!(first.wait(Duration::from_secs(10)).success());
}

#[test]
fn bad_settings_exit_2_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(JESSY)
        .args(["serve", "--data"])
        .arg(dir.path())
        .env("MMAP_MAX_SIZE", "lots")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MMAP_MAX_SIZE"));

    let out = Command::new(JESSY)
        .args(["serve", "--addr", "not-an-address", "--data"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-an-address"));
}

#[test]
fn help_and_usage_errors() {
    let out = Command::new(JESSY).args(["serve", "--help"]).output().expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--addr") && help.contains("--data") && help.contains("JESSY_ADDR"), "{help}");
    let out = Command::new(JESSY).args(["serve", "--no-such-flag"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

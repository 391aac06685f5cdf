//! Steps that back up, wipe and restore the data directory, and check that the data is back.

use std::process::Command;

use cucumber::{then, when};
use reqwest::Method;

use super::world::{encode_key, hex, JessyWorld, Stored};

#[when(expr = "I download a snapshot through the gateway to {string}")]
async fn i_download_a_snapshot(w: &mut JessyWorld, file: String) {
    let url = w.gateway_url("/api/v1/snapshot");
    w.send(Method::GET, url, None).await;
    let reply = w.last();
    assert_eq!(reply.status, 200, "the snapshot failed:\n{reply}");
    assert_eq!(reply.header("content-type"), Some("application/gzip"), "content type:\n{reply}");
    assert!(
        reply.body.starts_with(&[0x1f, 0x8b]),
        "the snapshot is not gzip: {}",
        hex(&reply.body[..16.min(reply.body.len())])
    );
    let body = reply.body.clone();
    std::fs::write(w.file(&file), body).expect("write the snapshot");
    w.at_snapshot = Some(w.stored.clone());
}

#[when("I wipe the data directory")]
async fn i_wipe_the_data_directory(w: &mut JessyWorld) {
    assert!(w.core.is_none(), "jessy-core is still running: stop it before wiping its data");
    let data = w.data_dir();
    std::fs::remove_dir_all(&data).unwrap_or_else(|e| panic!("remove {}: {e}", data.display()));
    std::fs::create_dir(&data).unwrap_or_else(|e| panic!("create {}: {e}", data.display()));
}

#[then("the data directory is empty")]
async fn the_data_directory_is_empty(w: &mut JessyWorld) {
    let left: Vec<_> =
        std::fs::read_dir(w.data_dir()).expect("read the data directory").map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "left in the data directory: {left:?}");
}

/// The contract's restore command: `tar -xzf backup.tar.gz -C <data dir>`.
#[when(expr = "I restore {string} into the data directory with tar")]
async fn i_restore_with_tar(w: &mut JessyWorld, file: String) {
    let mut tar = Command::new("tar");
    tar.arg("-xzf").arg(w.file(&file)).arg("-C").arg(w.data_dir());
    run(tar, "tar -xzf");
}

/// `jessy <args>` on this scenario's data directory (`MMAP_BASE_PATH`), in the directory that
/// holds the scenario's files. It must succeed.
#[when(expr = "I run {string}")]
async fn i_run(w: &mut JessyWorld, line: String) {
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("jessy"), "only jessy commands can be run: {line:?}");
    let mut cmd = Command::new(super::jessy_bin());
    cmd.args(words)
        .current_dir(w.tmp.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MMAP_BASE_PATH", w.data_dir());
    run(cmd, &line);
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({})\n  stdout: {}\n  stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
}

#[then("every key I stored is back")]
async fn every_key_is_back(w: &mut JessyWorld) {
    let expected = w.stored.clone();
    check_all(w, &expected).await;
}

#[then("every key I stored before the snapshot is back")]
async fn every_key_before_the_snapshot_is_back(w: &mut JessyWorld) {
    let expected = w.at_snapshot.clone().expect("no snapshot was taken in this scenario");
    check_all(w, &expected).await;
}

/// Reads every key through the gateway and lists all that are missing or wrong.
async fn check_all(w: &JessyWorld, expected: &Stored) {
    assert!(!expected.is_empty(), "nothing was stored, so nothing can come back");
    let mut wrong = Vec::new();
    for ((dim, key), value) in expected {
        let reply = w.send_as_owner(Method::GET, w.key_url(dim, key), None).await;
        if reply.status != 200 || &reply.body != value {
            wrong.push(format!(
                "{dim}/{}: {} {:?}",
                encode_key(key),
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} keys did not come back as stored:\n  {}",
        wrong.len(),
        expected.len(),
        wrong.iter().take(10).cloned().collect::<Vec<_>>().join("\n  ")
    );
}

#[then(expr = "the key {string} is not found")]
async fn the_key_is_not_found(w: &mut JessyWorld, key: String) {
    let reply = w.send_as_owner(Method::GET, w.key_url("default", key.as_bytes()), None).await;
    let code = serde_json::from_slice::<serde_json::Value>(&reply.body).map(|j| j["code"].clone()).unwrap_or_default();
    assert!(reply.status == 404 && code == "key_not_found", "expected 404 key_not_found:\n{reply}");
}

//! The real binaries as child processes: started on a free loopback port, their output kept for
//! the failure report, stopped with SIGTERM, and killed when dropped, so that nothing outlives a
//! scenario that failed half-way.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a service may take to say it is listening, and to exit after SIGTERM.
const START_LIMIT: Duration = Duration::from_secs(20);
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// Every line a service wrote, stdout and stderr interleaved as they arrived.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, line: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|line| line.contains(needle))
    }

    /// The last `n` lines, indented, for a failure report.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines();
        let mut out = String::new();
        if lines.len() > n {
            let _ = writeln!(out, "    ... {} earlier lines", lines.len() - n);
        }
        for line in &lines[lines.len().saturating_sub(n)..] {
            let _ = writeln!(out, "    {line}");
        }
        out
    }
}

/// A running `jessy serve` or `jessy-api`.
pub struct Service {
    name: &'static str,
    child: Child,
    /// The address it listens on, as its own "listening" log line says.
    pub addr: String,
    pub log: Log,
    pumps: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {}) on {}", self.name, self.child.id(), self.addr)
    }
}

impl Service {
    /// Spawns `cmd` and waits until a JSON log line on stdout gives `listening(line)` an
    /// address. Panics with the service's output if it exits first or takes too long.
    pub async fn start(
        name: &'static str,
        mut cmd: Command,
        listening: fn(&serde_json::Value) -> Option<String>,
    ) -> Service {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", cmd.get_program()));
        let log = Log::default();
        let pumps = vec![
            pump(child.stdout.take().expect("stdout is piped"), log.clone(), ""),
            pump(child.stderr.take().expect("stderr is piped"), log.clone(), "[stderr] "),
        ];
        let mut service = Service { name, child, addr: String::new(), log, pumps };
        let deadline = Instant::now() + START_LIMIT;
        let mut seen = 0;
        loop {
            let lines = service.log.lines();
            for line in &lines[seen..] {
                if let Some(addr) = serde_json::from_str(line).ok().as_ref().and_then(listening) {
                    service.addr = addr;
                    return service;
                }
            }
            seen = lines.len();
            if let Some(status) = service.child.try_wait().expect("try_wait") {
                service.join_pumps();
                panic!("{name} exited ({status}) before it was listening; its output:\n{}", service.log.tail(40));
            }
            if Instant::now() > deadline {
                service.kill();
                panic!(
                    "{name} did not say it was listening within {START_LIMIT:?}; its output:\n{}",
                    service.log.tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the exit (killing it and panicking after `STOP_LIMIT`).
    pub async fn stop(mut self) -> ExitStatus {
        let pid = i32::try_from(self.child.id()).expect("pid fits in i32");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) on {} failed: {}", self.name, std::io::Error::last_os_error());
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.join_pumps();
                return status;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "{} did not exit within {STOP_LIMIT:?} of SIGTERM; its output:\n{}",
                    self.name,
                    self.log.tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn join_pumps(&mut self) {
        for pump in self.pumps.drain(..) {
            let _ = pump.join();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // A scenario that ended normally stopped its services already; this is for the others.
        self.kill();
    }
}

/// Copies `from` line by line into `log` until the pipe closes.
fn pump(from: impl Read + Send + 'static, log: Log, prefix: &'static str) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            log.push(format!("{prefix}{line}"));
        }
    })
}

/// On Linux the child also gets SIGKILL when this test process dies (a Ctrl-C, a timeout), which
/// `Drop` cannot cover. The signal follows the thread that spawned the child, so the scenarios
/// run on the main thread (see the current-thread runtime in `bdd.rs`).
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe and touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

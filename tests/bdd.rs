//! The Gherkin scenarios of `tests/features/*.feature`, run by cucumber against the real
//! binaries: `jessy serve` (jessy-core) and the Go gateway jessy-api in front of it, each on a
//! free loopback port with a temporary data directory.
//!
//! ```sh
//! cargo test --test bdd                          # every scenario
//! cargo test --test bdd -- --name 'restart'      # scenarios whose name matches a regex
//! JESSY_API_BIN=api/bin/jessy-api cargo test --test bdd   # use a built gateway
//! ```
//!
//! Without `JESSY_API_BIN`, the gateway is built from `api/` with `go build` first.
//! `JESSY_BDD_SKIP=<reason>` runs nothing: it lists every scenario as skipped, with the reason,
//! and succeeds. Only the jessy-test container (docker-compose.yml, an image without Go) sets
//! it; `make test` never does (the Makefile unexports it). Each
//! scenario's processes are killed and its directory removed when the scenario ends, whether it
//! passed or not; a failed one prints the last answer and the services' last log lines.
//! Scenarios tagged `@needs-cli-backup` run only when this `jessy` has `backup` and `restore`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use cucumber::event::ScenarioFinished;
use cucumber::writer::Stats as _;
use cucumber::World as _;

mod bdd {
    pub mod backup;
    pub mod process;
    pub mod scan;
    pub mod setup;
    pub mod values;
    pub mod world;

    /// The `jessy` binary cargo built for this test.
    pub fn jessy_bin() -> &'static str {
        env!("CARGO_BIN_EXE_jessy")
    }

    /// The jessy-api binary, built (or found) before the scenarios start.
    pub fn gateway_bin() -> &'static std::path::Path {
        super::GATEWAY.get().expect("the gateway is located before any scenario runs")
    }
}

use bdd::world::JessyWorld;

static GATEWAY: OnceLock<PathBuf> = OnceLock::new();

/// The diagnostics of the scenarios that failed, printed once all have run.
static REPORTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Scenarios run a few at a time: each starts two processes, and the machine may have 2 cores.
const CONCURRENT_SCENARIOS: usize = 3;

fn main() {
    if let Some(reason) = std::env::var("JESSY_BDD_SKIP").ok().filter(|r| !r.trim().is_empty()) {
        skip_all(reason.trim());
        return;
    }
    GATEWAY.set(gateway()).expect("set once");
    let cli_backup = jessy_has(&["backup", "restore"]);
    if !cli_backup {
        eprintln!(
            "bdd: this jessy has no `backup`/`restore` subcommands yet: skipping the scenarios tagged @needs-cli-backup"
        );
    }
    // One thread: the children get SIGKILL if this process dies (see process.rs), which
    // follows the thread that spawned them, so every spawn happens on this one.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(run(cli_backup));
}

async fn run(cli_backup: bool) {
    let features = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/features");
    // `cargo test -- --nocapture` and the like pass libtest's flags, which cucumber does not
    // know: run every scenario then, rather than fail on the command line.
    let opts = match <cucumber::cli::Opts<_, _, _> as clap::Parser>::try_parse() {
        Ok(opts) => opts,
        Err(e) if !e.use_stderr() => e.exit(), // --help
        Err(e) => {
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            eprintln!("bdd: ignoring the command line ({first}); running every scenario");
            cucumber::cli::Opts::default()
        }
    };
    let writer = JessyWorld::cucumber()
        .max_concurrent_scenarios(CONCURRENT_SCENARIOS)
        .fail_on_skipped()
        .after(|_, _, scenario, finished, world| {
            Box::pin(async move {
                let failed = !matches!(finished, ScenarioFinished::StepPassed | ScenarioFinished::StepSkipped);
                if let (true, Some(world)) = (failed, world) {
                    let report = format!("--- {}: {} ---\n{}", scenario.name, finished_how(finished), world.report());
                    REPORTS.lock().unwrap_or_else(|e| e.into_inner()).push(report);
                }
            })
        })
        .with_cli(opts)
        .filter_run(features, move |_, _, scenario| {
            cli_backup || !scenario.tags.iter().any(|tag| tag == "needs-cli-backup")
        })
        .await;
    // Printed after cucumber's own report, which keeps the scenarios in file order.
    let reports = std::mem::take(&mut *REPORTS.lock().unwrap_or_else(|e| e.into_inner()));
    if !reports.is_empty() {
        eprintln!("\nWhat the services said in the failed scenarios:\n\n{}", reports.join("\n"));
    }
    if writer.execution_has_failed() {
        eprintln!(
            "bdd: {} failed steps, {} hook errors, {} parsing errors",
            writer.failed_steps(),
            writer.hook_errors(),
            writer.parsing_errors()
        );
        std::process::exit(1);
    }
}

fn finished_how(finished: &ScenarioFinished) -> &'static str {
    match finished {
        ScenarioFinished::BeforeHookFailed(_) => "a hook failed",
        ScenarioFinished::StepFailed(..) => "a step failed",
        ScenarioFinished::StepPassed | ScenarioFinished::StepSkipped => "finished",
    }
}

/// `JESSY_API_BIN` if set; otherwise `go build` of `api/` into this test's scratch directory.
fn gateway() -> PathBuf {
    if let Some(path) = std::env::var_os("JESSY_API_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "JESSY_API_BIN={} is not a file: build it with `cd api && go build -o bin/jessy-api .`",
            path.display()
        );
        return path;
    }
    let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("api");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("jessy-api");
    // Built under a name of its own and renamed, so two runs at once never share a half-written file.
    let partial = out.with_file_name(format!("jessy-api.{}.partial", std::process::id()));
    let started = Instant::now();
    let status =
        Command::new("go").args(["build", "-o"]).arg(&partial).arg(".").current_dir(&api).status().unwrap_or_else(
            |e| panic!("cannot run `go build` in {} ({e}); install Go or set JESSY_API_BIN", api.display()),
        );
    assert!(status.success(), "`go build` of the gateway in {} failed ({status})", api.display());
    std::fs::rename(&partial, &out).expect("move the gateway binary into place");
    eprintln!("bdd: built jessy-api in {:.1?}: {}", started.elapsed(), out.display());
    out
}

/// `JESSY_BDD_SKIP` is set: names every scenario not run, and why, on standard error.
fn skip_all(reason: &str) {
    let features = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/features");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&features)
        .unwrap_or_else(|e| panic!("reading {}: {e}", features.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "feature"))
        .collect();
    files.sort();
    let mut skipped = Vec::new();
    for file in &files {
        let feature = cucumber::gherkin::Feature::parse_path(file, cucumber::gherkin::GherkinEnv::default())
            .unwrap_or_else(|e| panic!("parsing {}: {e}", file.display()));
        let name = file.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let scenarios = feature.scenarios.iter().chain(feature.rules.iter().flat_map(|r| r.scenarios.iter()));
        skipped.extend(scenarios.map(|s| format!("{name}: {}", s.name)));
    }
    eprintln!("bdd: SKIPPED all {} Gherkin scenarios, none was run: JESSY_BDD_SKIP is set ({reason}).", skipped.len());
    for scenario in &skipped {
        eprintln!("bdd:   skipped  {scenario}");
    }
    eprintln!(
        "bdd: run them with `make test-bdd` (needs Go, or JESSY_API_BIN=<built jessy-api>) and JESSY_BDD_SKIP unset."
    );
}

/// Whether `jessy <sub> --help` succeeds for each subcommand.
fn jessy_has(subcommands: &[&str]) -> bool {
    subcommands
        .iter()
        .all(|sub| Command::new(bdd::jessy_bin()).args([sub, "--help"]).output().is_ok_and(|out| out.status.success()))
}

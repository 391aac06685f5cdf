package compose

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

var dockerfiles = []struct {
	file       string
	pins       map[string]string // global ARG -> pinned default
	binary     string            // what production runs
	entrypoint []string
	cmd        []string
	build      *regexp.Regexp // the builder's compile step
	devTool    *regexp.Regexp // how development installs its hot-reload tool
	devCmd     string
	env        map[string]string // production ENV defaults
}{
	{
		file:       "Dockerfile",
		pins:       map[string]string{"RUST_VERSION": "1.95"},
		binary:     "jessy",
		entrypoint: []string{"jessy"},
		cmd:        []string{"serve"},
		build:      regexp.MustCompile(`cargo build --release --locked -p jessy\b`),
		devTool:    regexp.MustCompile(`cargo install --locked cargo-watch --version "?\$\{CARGO_WATCH_VERSION\}"?`),
		devCmd:     "cargo",
		env: map[string]string{
			"JESSY_ADDR":        "0.0.0.0:8080",
			"MMAP_BASE_PATH":    "/app/data/mmap",
			"MMAP_INITIAL_SIZE": "1048576",
			"MMAP_MAX_SIZE":     "10485760",
			"JESSY_DURABILITY":  "immediate",
			"RUST_LOG":          "info",
		},
	},
	{
		file:       "api/Dockerfile",
		pins:       map[string]string{"GO_VERSION": "1.26"},
		binary:     "jessy-api",
		entrypoint: []string{"jessy-api"},
		build:      regexp.MustCompile(`CGO_ENABLED=0 go build .*-o /out/jessy-api`),
		devTool:    regexp.MustCompile(`go install github\.com/air-verse/air@\$\{AIR_VERSION\}`),
		devCmd:     "air",
		env: map[string]string{
			"JESSY_API_ADDR": "0.0.0.0:3000",
			"JESSY_CORE_URL": "http://jessy-core:8080",
		},
	},
}

var pinnedTag = regexp.MustCompile(`^[a-z0-9./-]+:[0-9][A-Za-z0-9._-]*$|^[a-z0-9./-]+:[a-z]+-slim$`)

func TestDockerfiles(t *testing.T) {
	for _, tc := range dockerfiles {
		t.Run(tc.file, func(t *testing.T) {
			df := parseDockerfile(t, tc.file)
			var names []string
			for _, st := range df.Stages {
				names = append(names, st.Name)
			}
			if !slices.Equal(names, []string{"development", "builder", "production"}) {
				t.Errorf("stages %v, want [development builder production]", names)
			}
			for arg, want := range tc.pins {
				if got := df.GlobalArgs[arg]; got != want {
					t.Errorf("ARG %s=%q, want %q", arg, got, want)
				}
			}
			for _, st := range df.Stages {
				if st.Parent == nil && (!pinnedTag.MatchString(st.Image) || strings.HasSuffix(st.Image, ":latest")) {
					t.Errorf("stage %s: FROM %s is not a pinned tag", st.Name, st.Image)
				}
				if len(st.All("ADD")) > 0 {
					t.Errorf("stage %s uses ADD; use COPY", st.Name)
				}
			}

			dev, builder, prod := df.Stage("development"), df.Stage("builder"), df.Stage("production")
			if dev == nil || builder == nil || prod == nil {
				t.FailNow()
			}
			if !anyRun(dev, tc.devTool) {
				t.Errorf("development does not install its hot-reload tool (%s)", tc.devTool)
			}
			if in, ok := dev.Last("CMD"); !ok || !strings.HasPrefix(in.Args, `["`+tc.devCmd+`"`) {
				t.Errorf("development CMD %q, want %s in exec form", in.Args, tc.devCmd)
			}
			if !anyRun(builder, tc.build) {
				t.Errorf("builder does not run %s", tc.build)
			}

			// production: only the binary from the builder, non-root, exec-form entrypoint.
			if bins, _ := prod.Binaries(); !bins[tc.binary] {
				t.Errorf("production does not copy %s into /usr/local/bin", tc.binary)
			}
			copiesFromBuilder := false
			for _, in := range prod.All("COPY") {
				copiesFromBuilder = copiesFromBuilder || strings.Contains(in.Args, "--from=builder")
			}
			if !copiesFromBuilder {
				t.Error("production does not COPY --from=builder")
			}
			user, ok := prod.Last("USER")
			if !ok {
				t.Fatal("production has no USER: it would run as root")
			}
			uid, _, _ := strings.Cut(user.Args, ":")
			if n, err := strconv.Atoi(uid); err != nil || n == 0 {
				t.Errorf("production USER %q: want a numeric, non-root uid", user.Args)
			}
			checkExec(t, prod, "ENTRYPOINT", tc.entrypoint)
			checkExec(t, prod, "CMD", tc.cmd)
			env := prod.Env()
			for k, v := range tc.env {
				if env[k] != v {
					t.Errorf("production ENV %s=%q, want %q", k, env[k], v)
				}
			}
			if _, ok := prod.Last("HEALTHCHECK"); !ok {
				t.Error("production has no HEALTHCHECK")
			}
		})
	}
}

// The production image owns its data directory, so a fresh named volume mounted there is
// created writable by the non-root user.
func TestProductionOwnsDataDirectory(t *testing.T) {
	prod := parseDockerfile(t, "Dockerfile").Stage("production")
	if !anyRun(prod, regexp.MustCompile(`mkdir -p /app/data/mmap/consciousness /app/data/mmap/proto /app/data/mmap/temp`)) ||
		!anyRun(prod, regexp.MustCompile(`chown -R jessy:jessy /app`)) ||
		!anyRun(prod, regexp.MustCompile(`useradd .*--uid 10001 .*jessy`)) {
		t.Error("production must create user jessy (uid 10001) owning /app/data/mmap/{consciousness,proto,temp}")
	}
	if user, _ := prod.Last("USER"); user.Args != "10001:10001" {
		t.Errorf("production USER %q, want 10001:10001 (jessy)", user.Args)
	}
}

// The images' toolchains must be able to build the code: the official golang images set
// GOTOOLCHAIN=local, and a crate's rust-version above the image's rustc fails the build.
func TestToolchainPins(t *testing.T) {
	rust := parseDockerfile(t, "Dockerfile").GlobalArgs["RUST_VERSION"]
	m := regexp.MustCompile(`(?m)^rust-version\s*=\s*"([0-9.]+)"`).FindStringSubmatch(readRepoFile(t, "Cargo.toml"))
	if m == nil {
		t.Error("Cargo.toml declares no rust-version")
	} else if versionLess(rust, m[1]) {
		t.Errorf("Cargo.toml rust-version %s is newer than the image's RUST_VERSION %s", m[1], rust)
	} else if d := regexp.MustCompile("`rust-version` ([0-9.]+)").FindStringSubmatch(readRepoFile(t, "docs/DEPLOY.md")); d == nil || d[1] != m[1] {
		t.Errorf("docs/DEPLOY.md's version pins should say `rust-version` %s as Cargo.toml does; found %q", m[1], d)
	}

	goVersion := parseDockerfile(t, "api/Dockerfile").GlobalArgs["GO_VERSION"]
	gomod, err := os.ReadFile(repoFile(t, "api/go.mod"))
	if os.IsNotExist(err) {
		t.Skip("api/go.mod does not exist yet")
	} else if err != nil {
		t.Fatal(err)
	}
	m = regexp.MustCompile(`(?m)^go\s+([0-9.]+)`).FindStringSubmatch(string(gomod))
	if m == nil {
		t.Fatal("api/go.mod has no go line")
	}
	if versionLess(goVersion, majorMinor(m[1])) {
		t.Errorf("api/go.mod says go %s, newer than api/Dockerfile's GO_VERSION %s: the image "+
			"(GOTOOLCHAIN=local) cannot build it; lower the go line or raise GO_VERSION (and AIR_VERSION)",
			m[1], goVersion)
	}
}

// Compose's build args default to the Dockerfiles' pins (one version, written twice).
func TestComposeBuildArgsMatchDockerfilePins(t *testing.T) {
	for file, p := range standard(t) {
		for name, s := range p.Services {
			df, _ := stageOf(t, s)
			defaults := parseDockerfile(t, relTo(repoRoot(t), df.Path)).GlobalArgs
			for arg, v := range s.Build.Args {
				def, ok := defaults[arg]
				if !ok {
					t.Errorf("%s %s: build arg %s is not an ARG of %s", file, name, arg, df.Path)
				} else if v == nil || *v != def {
					t.Errorf("%s %s: build arg %s=%v, Dockerfile default %q", file, name, arg, v, def)
				}
			}
		}
	}
}

func TestDockerignore(t *testing.T) {
	tests := []struct {
		ignore, dockerfile string
		included, excluded []string
	}{
		{
			ignore:     ".dockerignore",
			dockerfile: "Dockerfile",
			included: []string{"Cargo.toml", "Cargo.lock", "src/main.rs", "storage/benches/engine.rs",
				"storage/tests/x.rs", "tests/cli.rs", "data/mmap/README.md"},
			excluded: []string{".git/HEAD", "target/release/jessy", "storage/target/x", "api/main.go",
				"data/mmap/consciousness/D01/region.mmap", "data/mmap/jessy.lock", ".venv-tools/bin/hadolint",
				".env", "backup.tar.gz"},
		},
		{
			ignore:     "api/.dockerignore",
			dockerfile: "api/Dockerfile",
			included:   []string{"go.mod", "go.sum", "main.go", "internal/proxy/proxy.go"},
			excluded:   []string{"bin/jessy-api", "tmp/main", ".env"},
		},
	}
	// Every workspace member's manifest must reach the builder.
	members := regexp.MustCompile(`members\s*=\s*\[([^\]]*)\]`).FindStringSubmatch(readRepoFile(t, "Cargo.toml"))
	if members != nil {
		for _, m := range regexp.MustCompile(`"([^"]+)"`).FindAllStringSubmatch(members[1], -1) {
			tests[0].included = append(tests[0].included, m[1]+"/Cargo.toml", m[1]+"/src/lib.rs")
		}
	}
	for _, tc := range tests {
		t.Run(tc.ignore, func(t *testing.T) {
			f, err := os.Open(repoFile(t, tc.ignore))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			patterns, err := ignorefile.ReadAll(f)
			if err != nil {
				t.Fatal(err)
			}
			pm, err := patternmatcher.New(patterns)
			if err != nil {
				t.Fatal(err)
			}
			ignored := func(p string) bool {
				ok, err := pm.MatchesOrParentMatches(p)
				if err != nil {
					t.Fatal(err)
				}
				return ok
			}
			// What the Dockerfile COPYs from the context must be in it.
			for _, st := range parseDockerfile(t, tc.dockerfile).Stages {
				for _, in := range st.All("COPY") {
					words := strings.Fields(in.Args)
					if strings.HasPrefix(in.Args, "--from=") {
						continue
					}
					for _, src := range words[:len(words)-1] {
						if !strings.HasPrefix(src, "--") && !strings.Contains(src, "*") && src != "." && ignored(src) {
							t.Errorf("%s:%d copies %s, which %s excludes", tc.dockerfile, in.Line, src, tc.ignore)
						}
					}
				}
			}
			for _, p := range tc.included {
				if ignored(p) {
					t.Errorf("%s excludes %s", tc.ignore, p)
				}
			}
			for _, p := range tc.excluded {
				if !ignored(p) {
					t.Errorf("%s does not exclude %s", tc.ignore, p)
				}
			}
		})
	}
}

func TestAirConfig(t *testing.T) {
	air := readRepoFile(t, "api/.air.toml")
	for _, want := range []string{`tmp_dir = "/tmp/air"`, `entrypoint = ["/tmp/air/jessy-api"]`, `cmd = "go build -o /tmp/air/jessy-api ."`} {
		if !strings.Contains(air, want) {
			t.Errorf("api/.air.toml lacks %s (build outputs stay out of the mounted source)", want)
		}
	}
	gw := service(t, standard(t)[devFile], api)
	if !slices.Equal([]string(gw.Command), []string{"air", "-c", ".air.toml"}) || gw.WorkingDir != "/app/api" {
		t.Errorf("jessy-api runs %q in %s, want air -c .air.toml in /app/api", gw.Command, gw.WorkingDir)
	}
}

func TestMakefileDockerTargets(t *testing.T) {
	mk := readRepoFile(t, "Makefile")
	for _, target := range []string{"up", "down", "watch", "logs", "logs-rust", "logs-go", "logs-json",
		"logs-test", "shell-rust", "shell-go", "rebuild"} {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(target) + `:[^\n]*## \S[^\n]*\n((?:\t[^\n]*\n)+)`)
		m := re.FindStringSubmatch(mk)
		if m == nil {
			t.Errorf("Makefile: no target %s with a ## help comment", target)
			continue
		}
		if !strings.Contains(m[1], "$(COMPOSE)") && !strings.Contains(m[1], "$(compose_warm)") {
			t.Errorf("Makefile: %s does not drive $(COMPOSE)", target)
		}
	}
	m := regexp.MustCompile(`(?m)^test-deploy:[^\n]*\n((?:\t[^\n]*\n)+)`).FindStringSubmatch(mk)
	if m == nil || !strings.Contains(m[1], "tests/compose") || !strings.Contains(m[1], "scripts/hadolint.sh") {
		t.Error("Makefile: test-deploy must run tests/compose and scripts/hadolint.sh")
	}
}

func TestDataReadme(t *testing.T) {
	readme := readRepoFile(t, "data/mmap/README.md")
	for _, want := range []string{"consciousness/", "region.mmap", "layers/", "index.json", "proto/", "temp/",
		"jessy.lock", "tar -czf backup.tar.gz -C data/mmap consciousness", "rsync -av data/mmap/",
		"Never edit", "MMAP_BASE_PATH"} {
		if !strings.Contains(readme, want) {
			t.Errorf("data/mmap/README.md does not mention %q", want)
		}
	}
}

func anyRun(st *Stage, re *regexp.Regexp) bool {
	for _, in := range st.All("RUN") {
		if re.MatchString(in.Args) {
			return true
		}
	}
	return false
}

func checkExec(t *testing.T, st *Stage, cmd string, want []string) {
	t.Helper()
	in, ok := st.Last(cmd)
	if want == nil {
		if ok {
			t.Errorf("%s: unexpected %s %s", st.Name, cmd, in.Args)
		}
		return
	}
	if !ok {
		t.Errorf("%s: no %s", st.Name, cmd)
		return
	}
	got, err := ExecForm(in.Args)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("%s: %s %s, want %q in exec form", st.Name, cmd, in.Args, want)
	}
}

func majorMinor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) > 2 {
		parts = parts[:2]
	}
	return strings.Join(parts, ".")
}

// versionLess compares dotted numeric versions: 1.9 < 1.23.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

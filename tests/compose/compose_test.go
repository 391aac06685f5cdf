package compose

import (
	"fmt"
	"net"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

const (
	core = "jessy-core"
	api  = "jessy-api"
	test = "jessy-test"
)

// The long-running services of each file and the environment label each carries.
var longRunning = []struct {
	file, service, environment string
}{
	{devFile, core, "development"},
	{devFile, api, "development"},
	{prodFile, core, "production"},
	{prodFile, api, "production"},
}

func TestComposeFilesLoad(t *testing.T) {
	for _, file := range []string{devFile, prodFile} {
		t.Run(file, func(t *testing.T) {
			withExample := load(t, file, []string{repoFile(t, envFile)}, "test")
			withoutEnv := load(t, file, nil, "test")
			// The ${VAR:-default} defaults in the compose file must be the values of .env.example:
			// a stack started without .env is the documented one.
			for name, s := range withExample.Services {
				if !reflect.DeepEqual(s, withoutEnv.Services[name]) {
					t.Errorf("service %s differs between .env.example and no .env:\n  %+v\n  %+v",
						name, s, withoutEnv.Services[name])
				}
			}
			if !reflect.DeepEqual(withExample.Volumes, withoutEnv.Volumes) ||
				!reflect.DeepEqual(withExample.Networks, withoutEnv.Networks) {
				t.Error("volumes or networks differ between .env.example and no .env")
			}
		})
	}
}

func TestServiceGraph(t *testing.T) {
	tests := []struct {
		file     string
		profiles []string
		enabled  []string
		disabled []string
	}{
		{devFile, nil, []string{api, core}, []string{test}},
		{devFile, []string{"test"}, []string{api, core, test}, nil},
		{prodFile, nil, []string{api, core}, nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/profiles=%v", tc.file, tc.profiles), func(t *testing.T) {
			p := load(t, tc.file, []string{repoFile(t, envFile)}, tc.profiles...)
			if got := sortedKeys(p.Services); !slices.Equal(got, tc.enabled) {
				t.Errorf("enabled services = %v, want %v", got, tc.enabled)
			}
			if got := sortedKeys(p.DisabledServices); !slices.Equal(got, tc.disabled) {
				t.Errorf("disabled services = %v, want %v", got, tc.disabled)
			}
			gw := service(t, p, api)
			dep, ok := gw.DependsOn[core]
			if !ok || dep.Condition != types.ServiceConditionHealthy {
				t.Errorf("jessy-api depends_on = %+v, want jessy-core with condition service_healthy", gw.DependsOn)
			}
			if len(service(t, p, core).DependsOn) != 0 {
				t.Error("jessy-core must not depend on anything")
			}
		})
	}
	// jessy-test is in profile test and only there.
	s := service(t, standard(t)[devFile], test)
	if !slices.Equal(s.Profiles, []string{"test"}) {
		t.Errorf("jessy-test profiles = %v, want [test]", s.Profiles)
	}
	for _, lr := range longRunning {
		if s := service(t, standard(t)[lr.file], lr.service); len(s.Profiles) != 0 {
			t.Errorf("%s %s: profiles %v, want none (always started)", lr.file, lr.service, s.Profiles)
		}
	}
}

func TestVolumes(t *testing.T) {
	type mount struct {
		typ, source, target string
		readOnly            bool
	}
	tests := []struct {
		file    string
		volumes []string // top-level named volumes
		mounts  map[string][]mount
	}{
		{
			file:    devFile,
			volumes: []string{"cargo-cache", "go-cache", "mmap-data", "target-cache", "test-results"},
			mounts: map[string][]mount{
				core: {
					{"bind", ".", "/app", false},
					{"volume", "cargo-cache", "/usr/local/cargo/registry", false},
					{"volume", "target-cache", "/app/target", false},
					{"volume", "mmap-data", "/app/data/mmap", false},
				},
				// The gateway talks to jessy-core over HTTP and never reads the data.
				api: {
					{"bind", "api", "/app/api", false},
					{"volume", "go-cache", "/go/pkg/mod", false},
				},
				test: {
					{"bind", ".", "/app", false},
					{"volume", "cargo-cache", "/usr/local/cargo/registry", false},
					{"volume", "target-cache", "/app/target", false},
					{"volume", "mmap-data", "/app/data/mmap", false},
					{"volume", "test-results", "/app/test-results", false},
				},
			},
		},
		{
			file:    prodFile,
			volumes: []string{"mmap-data"},
			mounts: map[string][]mount{
				core: {{"volume", "mmap-data", "/app/data/mmap", false}},
				api:  nil,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			p := standard(t)[tc.file]
			root := repoRoot(t)
			if got := sortedKeys(p.Volumes); !slices.Equal(got, tc.volumes) {
				t.Errorf("named volumes = %v, want %v", got, tc.volumes)
			}
			for name, want := range tc.mounts {
				var got []mount
				for _, v := range service(t, p, name).Volumes {
					src := v.Source
					if v.Type == types.VolumeTypeBind {
						src = relTo(root, src)
					}
					got = append(got, mount{v.Type, src, v.Target, v.ReadOnly})
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s volumes:\n got  %+v\n want %+v", name, got, want)
				}
			}
		})
	}
}

func TestNetwork(t *testing.T) {
	for file, p := range standard(t) {
		t.Run(file, func(t *testing.T) {
			n, ok := p.Networks["jessy-network"]
			if !ok || n.Driver != "bridge" {
				t.Fatalf("networks = %+v, want jessy-network with driver bridge", p.Networks)
			}
			for name, s := range p.Services {
				if _, ok := s.Networks["jessy-network"]; !ok || len(s.Networks) != 1 {
					t.Errorf("%s networks = %v, want only jessy-network", name, sortedKeys(s.Networks))
				}
			}
		})
	}
}

func TestHealthchecks(t *testing.T) {
	want := map[string]struct{ port, path string }{
		core: {"8080", "/health"},
		api:  {"3000", "/api/health"},
	}
	for _, lr := range longRunning {
		t.Run(lr.file+"/"+lr.service, func(t *testing.T) {
			s := service(t, standard(t)[lr.file], lr.service)
			hc := s.HealthCheck
			if hc == nil || hc.Disable {
				t.Fatal("no health check")
			}
			checkDuration(t, "interval", hc.Interval, 10*time.Second)
			checkDuration(t, "timeout", hc.Timeout, 5*time.Second)
			checkDuration(t, "start_period", hc.StartPeriod, 10*time.Second)
			if hc.Retries == nil || *hc.Retries != 3 {
				t.Errorf("retries = %v, want 3", hc.Retries)
			}
			if len(hc.Test) < 2 || hc.Test[0] != "CMD" {
				t.Fatalf("test = %q, want exec form [CMD, ...]", hc.Test)
			}
			cmd := hc.Test[1:]
			u := healthURL(t, cmd)
			if u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost" {
				t.Errorf("health check host %q: must be the container itself", u.Hostname())
			}
			if u.Port() != want[lr.service].port || u.Path != want[lr.service].path {
				t.Errorf("health check URL %s, want port %s path %s", u, want[lr.service].port, want[lr.service].path)
			}
			// The binary must exist in the image stage the service is built from.
			_, st := stageOf(t, s)
			bins, known := st.Binaries()
			if !known {
				t.Fatalf("stage %s: base image %s is not in the known-image table of dockerfile.go", st.Name, st.BaseImage())
			}
			if !bins[cmd[0]] {
				t.Errorf("health check runs %q, which stage %q (base %s) does not provide; it has %v",
					cmd[0], st.Name, st.BaseImage(), sortedKeys(bins))
			}
			// The image's own HEALTHCHECK (used by plain `docker run`) asks the same thing.
			in, ok := st.Last("HEALTHCHECK")
			if !ok {
				t.Fatalf("stage %s has no HEALTHCHECK", st.Name)
			}
			opts, imgCmd, err := Healthcheck(in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(imgCmd, cmd) {
				t.Errorf("Dockerfile HEALTHCHECK %q differs from compose %q", imgCmd, cmd)
			}
			wantOpts := map[string]string{"interval": "10s", "timeout": "5s", "start-period": "10s", "retries": "3"}
			if !reflect.DeepEqual(opts, wantOpts) {
				t.Errorf("Dockerfile HEALTHCHECK options %v, want %v", opts, wantOpts)
			}
		})
	}
	t.Run("jessy-test", func(t *testing.T) {
		s := service(t, standard(t)[devFile], test)
		if s.HealthCheck == nil || !s.HealthCheck.Disable {
			t.Error("the one-shot test runner must disable the image's health check")
		}
	})
}

func TestCommandsExistInImages(t *testing.T) {
	for file, p := range standard(t) {
		for name, s := range p.Services {
			t.Run(file+"/"+name, func(t *testing.T) {
				_, st := stageOf(t, s)
				bins, _ := st.Binaries()
				cmd := []string(s.Command)
				if len(cmd) == 0 {
					in, ok := st.Last("ENTRYPOINT")
					if !ok {
						in, ok = st.Last("CMD")
					}
					if !ok {
						t.Fatalf("stage %s: no command, entrypoint or CMD", st.Name)
					}
					var err error
					if cmd, err = ExecForm(in.Args); err != nil {
						t.Fatalf("%s:%d: %v", st.Name, in.Line, err)
					}
				}
				if !bins[cmd[0]] {
					t.Errorf("command %q: stage %s does not provide %q (has %v)", cmd, st.Name, cmd[0], sortedKeys(bins))
				}
				if cmd[0] == "cargo" && len(cmd) > 1 && cmd[1] == "watch" && !bins["cargo-watch"] {
					t.Errorf("command %q needs cargo-watch, which stage %s does not install", cmd, st.Name)
				}
			})
		}
	}
}

// The test runner's `cargo test --workspace` includes the Gherkin target (tests/bdd.rs), which
// needs the jessy-api gateway: built with `go build` unless JESSY_API_BIN names one. In an image
// without Go, the target must be told to skip (JESSY_BDD_SKIP, with its reason), or it fails
// every run.
func TestTestRunnerCanRunEveryTarget(t *testing.T) {
	s := service(t, standard(t)[devFile], test)
	cmd := strings.Join(s.Command, " ")
	if !strings.Contains(cmd, "cargo test") {
		t.Fatalf("jessy-test command %q does not run cargo test", cmd)
	}
	if strings.Contains(cmd, "--test ") {
		return // names its targets: the Gherkin target only if asked for
	}
	_, st := stageOf(t, s)
	bins, _ := st.Binaries()
	if bins["go"] {
		return
	}
	if v, _ := envValue(s, "JESSY_API_BIN"); v != "" {
		return
	}
	if v, _ := envValue(s, "JESSY_BDD_SKIP"); strings.TrimSpace(v) == "" {
		t.Errorf("jessy-test runs %q in stage %s, which has no go: the bdd target would fail building the gateway; "+
			"set JESSY_BDD_SKIP to the reason (tests/bdd.rs lists the skipped scenarios)", cmd, st.Name)
	}
}

func TestPortsMatchListenAddresses(t *testing.T) {
	want := map[string]struct {
		addrVar, published string
	}{
		core: {"JESSY_ADDR", "8080"},
		api:  {"JESSY_API_ADDR", "3000"},
	}
	for _, lr := range longRunning {
		t.Run(lr.file+"/"+lr.service, func(t *testing.T) {
			s := service(t, standard(t)[lr.file], lr.service)
			w := want[lr.service]
			addr, ok := envValue(s, w.addrVar)
			if !ok {
				t.Fatalf("%s not set", w.addrVar)
			}
			host, port, err := net.SplitHostPort(addr)
			if err != nil || host != "0.0.0.0" {
				t.Fatalf("%s=%q: want 0.0.0.0:<port> (reachable from the published port)", w.addrVar, addr)
			}
			if len(s.Ports) != 1 {
				t.Fatalf("ports = %+v, want exactly one", s.Ports)
			}
			pc := s.Ports[0]
			if fmt.Sprint(pc.Target) != port {
				t.Errorf("container port %d, but %s listens on %s", pc.Target, w.addrVar, port)
			}
			if pc.Published != w.published || pc.HostIP != "127.0.0.1" || pc.Protocol != "tcp" {
				t.Errorf("published %s:%s/%s, want 127.0.0.1:%s/tcp by default", pc.HostIP, pc.Published, pc.Protocol, w.published)
			}
			_, st := stageOf(t, s)
			if !slices.Contains(st.Exposed(), port) {
				t.Errorf("stage %s EXPOSEs %v, not %s", st.Name, st.Exposed(), port)
			}
			// The image's own default must agree with compose.
			if v := st.Env()[w.addrVar]; v != addr {
				t.Errorf("stage %s ENV %s=%q, compose sets %q", st.Name, w.addrVar, v, addr)
			}
		})
	}
	// The gateway reaches jessy-core by service name on the core's listening port.
	for file, p := range standard(t) {
		url, _ := envValue(service(t, p, api), "JESSY_CORE_URL")
		_, corePort, _ := net.SplitHostPort(mustEnv(t, service(t, p, core), "JESSY_ADDR"))
		if url != "http://jessy-core:"+corePort {
			t.Errorf("%s: JESSY_CORE_URL=%q, want http://jessy-core:%s", file, url, corePort)
		}
	}
}

func TestEnvironment(t *testing.T) {
	wantCore := map[string]string{
		"JESSY_ADDR":        "0.0.0.0:8080",
		"MMAP_BASE_PATH":    "/app/data/mmap",
		"MMAP_INITIAL_SIZE": "1048576",
		"MMAP_MAX_SIZE":     "10485760",
		"JESSY_DURABILITY":  "immediate",
		"RUST_LOG":          "info",
	}
	wantAPI := map[string]string{
		"JESSY_API_ADDR": "0.0.0.0:3000",
		"JESSY_CORE_URL": "http://jessy-core:8080",
	}
	for file, p := range standard(t) {
		for name, want := range map[string]map[string]string{core: wantCore, api: wantAPI} {
			s := service(t, p, name)
			for k, v := range want {
				if got, _ := envValue(s, k); got != v {
					t.Errorf("%s %s: %s=%q, want %q", file, name, k, got, v)
				}
			}
			// The gateway has no data directory: it reaches the store through jessy-core.
			if _, declared := s.Environment["MMAP_BASE_PATH"]; name == api && declared {
				t.Errorf("%s %s: MMAP_BASE_PATH is set, but the gateway never reads it", file, name)
			}
			// JESSY_API_TOKEN: declared, unset by default (an empty token is not "unset").
			if v, declared := s.Environment["JESSY_API_TOKEN"]; !declared {
				t.Errorf("%s %s: JESSY_API_TOKEN is not passed through", file, name)
			} else if v != nil {
				t.Errorf("%s %s: JESSY_API_TOKEN=%q by default, want unset", file, name, *v)
			}
		}
	}
	// Set in .env (or the shell), the token reaches both services.
	dir := t.TempDir()
	withToken := dir + "/token.env"
	writeFile(t, withToken, "JESSY_API_TOKEN=s3cret\nRUST_LOG=debug\n")
	for _, file := range []string{devFile, prodFile} {
		p := load(t, file, []string{repoFile(t, envFile), withToken})
		for _, name := range []string{core, api} {
			if got, _ := envValue(service(t, p, name), "JESSY_API_TOKEN"); got != "s3cret" {
				t.Errorf("%s %s: JESSY_API_TOKEN=%q with it set in .env, want s3cret", file, name, got)
			}
		}
		if got, _ := envValue(service(t, p, core), "RUST_LOG"); got != "debug" {
			t.Errorf("%s: RUST_LOG=%q with RUST_LOG=debug in .env", file, got)
		}
	}
}

func TestRestartPolicy(t *testing.T) {
	for _, lr := range longRunning {
		if got := service(t, standard(t)[lr.file], lr.service).Restart; got != types.RestartPolicyUnlessStopped {
			t.Errorf("%s %s: restart %q, want unless-stopped", lr.file, lr.service, got)
		}
	}
	if got := service(t, standard(t)[devFile], test).Restart; got != types.RestartPolicyNo {
		t.Errorf("jessy-test: restart %q, want no (a one-shot runner)", got)
	}
}

func TestLogging(t *testing.T) {
	want := map[string]string{"max-size": "10m", "max-file": "3", "labels": "service,environment"}
	for file, p := range standard(t) {
		for name, s := range p.Services {
			if s.Logging == nil || s.Logging.Driver != "json-file" || !reflect.DeepEqual(map[string]string(s.Logging.Options), want) {
				t.Errorf("%s %s: logging %+v, want json-file %v", file, name, s.Logging, want)
			}
			// The labels named by the log option exist on the service.
			if s.Labels["service"] != name {
				t.Errorf("%s %s: label service=%q, want %q", file, name, s.Labels["service"], name)
			}
			if s.Labels["environment"] == "" {
				t.Errorf("%s %s: no environment label", file, name)
			}
		}
	}
	for _, lr := range longRunning {
		if got := service(t, standard(t)[lr.file], lr.service).Labels["environment"]; got != lr.environment {
			t.Errorf("%s %s: label environment=%q, want %q", lr.file, lr.service, got, lr.environment)
		}
	}
}

func TestResourceLimits(t *testing.T) {
	for file, p := range standard(t) {
		for name, s := range p.Services {
			if s.Deploy == nil || s.Deploy.Resources.Limits == nil || s.Deploy.Resources.Reservations == nil {
				t.Errorf("%s %s: want deploy.resources limits and reservations", file, name)
				continue
			}
			lim, res := s.Deploy.Resources.Limits, s.Deploy.Resources.Reservations
			if lim.NanoCPUs <= 0 || lim.MemoryBytes <= 0 {
				t.Errorf("%s %s: limits cpus=%v memory=%v, want both set", file, name, lim.NanoCPUs, lim.MemoryBytes)
			}
			if res.NanoCPUs <= 0 || res.NanoCPUs > lim.NanoCPUs || res.MemoryBytes <= 0 || res.MemoryBytes > lim.MemoryBytes {
				t.Errorf("%s %s: reservations cpus=%v memory=%v must be set and within the limits (%v, %v)",
					file, name, res.NanoCPUs, res.MemoryBytes, lim.NanoCPUs, lim.MemoryBytes)
			}
			// The regions are memory-mapped and count against the memory limit: leave room for
			// a few full regions besides the process itself.
			if name == core && int64(lim.MemoryBytes) < 64*10485760 {
				t.Errorf("%s jessy-core: memory limit %d is too small for memory-mapped regions", file, lim.MemoryBytes)
			}
		}
	}
}

func TestBuildTargets(t *testing.T) {
	want := map[string]map[string]string{
		devFile:  {core: "development", api: "development", test: "development"},
		prodFile: {core: "production", api: "production"},
	}
	for file, p := range standard(t) {
		for name, s := range p.Services {
			if s.Build == nil || s.Build.Target != want[file][name] {
				t.Errorf("%s %s: build %+v, want target %s", file, name, s.Build, want[file][name])
			}
		}
	}
	// Production runs what was built: no source bind mounts.
	for name, s := range standard(t)[prodFile].Services {
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				t.Errorf("production %s mounts host path %s", name, v.Source)
			}
		}
		if s.Image == "" {
			t.Errorf("production %s: no image name (needed to tag and push)", name)
		}
	}
}

// composeVarRef matches ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, $NAME.
var composeVarRef = regexp.MustCompile(`\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))`)

func TestEnvExampleCoversComposeVariables(t *testing.T) {
	active, commented := envExample(t)
	for _, file := range []string{devFile, prodFile} {
		text := strings.ReplaceAll(stripComments(readRepoFile(t, file)), "$$", "") // $$ is a literal dollar
		for _, m := range composeVarRef.FindAllStringSubmatch(text, -1) {
			name, op, def := m[1], m[2], m[3]
			if name == "" {
				t.Errorf("%s: $%s: use ${%s:-default}", file, m[4], m[4])
				continue
			}
			v, ok := active[name]
			if !ok {
				t.Errorf("%s uses ${%s}, which .env.example does not set", file, name)
				continue
			}
			if op != ":-" {
				t.Errorf("%s: ${%s%s%s}: use ${%s:-default} so a missing .env works", file, name, op, def, name)
			} else if def != v {
				t.Errorf("%s: default of ${%s} is %q, .env.example says %q", file, name, def, v)
			}
		}
	}
	// Variables passed through without a value are documented, commented out.
	for file, p := range standard(t) {
		for name, s := range p.Services {
			for k, v := range s.Environment {
				if v == nil && !commented[k] && active[k] == "" {
					t.Errorf("%s %s passes %s through; .env.example does not mention it", file, name, k)
				}
			}
		}
	}
}

// The contract's variables and their defaults (shared/CONTRACT.md, "Variables").
var contractVariables = map[string]string{
	"MMAP_BASE_PATH":    "./data/mmap",
	"MMAP_INITIAL_SIZE": "1048576",
	"MMAP_MAX_SIZE":     "10485760",
	"JESSY_ADDR":        "127.0.0.1:8080",
	"JESSY_DURABILITY":  "immediate",
	"JESSY_API_TOKEN":   "", // unset
	"JESSY_API_ADDR":    "127.0.0.1:3000",
	"JESSY_CORE_URL":    "http://127.0.0.1:8080",
	"RUST_LOG":          "info",
}

func TestEnvExampleCoversContract(t *testing.T) {
	active, commented := envExample(t)
	for name, def := range contractVariables {
		v, set := active[name]
		switch {
		case def == "" && set:
			t.Errorf(".env.example sets %s=%q; the contract default is unset (comment it out)", name, v)
		case def == "" && !commented[name]:
			t.Errorf(".env.example does not mention %s", name)
		case def != "" && !set:
			t.Errorf(".env.example does not set %s (contract default %q)", name, def)
		case def != "" && v != def:
			t.Errorf(".env.example: %s=%q, contract default %q", name, v, def)
		}
	}
}

// stripComments drops whole-line YAML comments (they are not interpolated).
func stripComments(yaml string) string {
	var out []string
	for _, line := range strings.Split(yaml, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func checkDuration(t *testing.T, what string, got *types.Duration, want time.Duration) {
	t.Helper()
	if got == nil || time.Duration(*got) != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func mustEnv(t testing.TB, s types.ServiceConfig, name string) string {
	t.Helper()
	v, ok := envValue(s, name)
	if !ok {
		t.Fatalf("%s: %s not set", s.Name, name)
	}
	return v
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

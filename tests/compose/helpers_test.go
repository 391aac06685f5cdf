package compose

import (
	"bufio"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

const (
	devFile  = "docker-compose.yml"
	prodFile = "docker-compose.prod.yml"
	envFile  = ".env.example"
)

// repoRoot is the repository's top directory (this module lives in tests/compose), or
// $JESSY_REPO_ROOT: a copy of the deployment files, to check that the tests catch mistakes.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir := filepath.Join("..", "..")
	if env := os.Getenv("JESSY_REPO_ROOT"); env != "" {
		dir = env
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "Cargo.toml")); err != nil {
		t.Fatalf("repository root not found from %s: %v", root, err)
	}
	return root
}

func repoFile(t testing.TB, rel string) string {
	return filepath.Join(repoRoot(t), filepath.FromSlash(rel))
}

func readRepoFile(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(repoFile(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// load loads a compose file the way `docker compose` does, with the given env files (an empty
// temporary file stands for "no .env") and profiles. The OS environment is not used, so a
// developer's shell or .env cannot change the result.
func load(t testing.TB, file string, envFiles []string, profiles ...string) *types.Project {
	t.Helper()
	root := repoRoot(t)
	if len(envFiles) == 0 {
		empty := filepath.Join(t.TempDir(), "empty.env")
		if err := os.WriteFile(empty, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		envFiles = []string{empty}
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, file)},
		cli.WithWorkingDirectory(root),
		cli.WithEnvFiles(envFiles...),
		cli.WithDotEnv,
		cli.WithProfiles(profiles),
	)
	if err != nil {
		t.Fatalf("%s: options: %v", file, err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("%s: compose loader: %v", file, err)
	}
	return project
}

var (
	projectsOnce sync.Once
	projects     map[string]*types.Project
)

// standard returns both compose files loaded with .env.example and profile "test" active,
// loaded once for all tests.
func standard(t testing.TB) map[string]*types.Project {
	t.Helper()
	projectsOnce.Do(func() {
		env := repoFile(t, envFile)
		projects = map[string]*types.Project{
			devFile:  load(t, devFile, []string{env}, "test"),
			prodFile: load(t, prodFile, []string{env}, "test"),
		}
	})
	if projects == nil {
		t.Fatal("compose files did not load")
	}
	return projects
}

func service(t testing.TB, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(p.ComposeFiles[0]), err)
	}
	return s
}

// stageOf parses the Dockerfile that builds a service (with the service's build args) and
// returns the stage its build targets.
func stageOf(t testing.TB, s types.ServiceConfig) (*Dockerfile, *Stage) {
	t.Helper()
	if s.Build == nil {
		t.Fatalf("%s: no build section", s.Name)
	}
	args := map[string]string{}
	for k, v := range s.Build.Args {
		if v != nil {
			args[k] = *v
		}
	}
	dockerfile := s.Build.Dockerfile
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(s.Build.Context, dockerfile)
	}
	df, err := ParseDockerfile(dockerfile, args)
	if err != nil {
		t.Fatal(err)
	}
	st := df.Stage(s.Build.Target)
	if st == nil {
		t.Fatalf("%s: build target %q is not a stage of %s", s.Name, s.Build.Target, dockerfile)
	}
	return df, st
}

func parseDockerfile(t testing.TB, rel string) *Dockerfile {
	t.Helper()
	df, err := ParseDockerfile(repoFile(t, rel), nil)
	if err != nil {
		t.Fatal(err)
	}
	return df
}

// envExample parses .env.example: active assignments, and names that appear only commented
// out (`# NAME=value`), which document an optional variable that is unset by default.
func envExample(t testing.TB) (active map[string]string, commented map[string]bool) {
	t.Helper()
	active, commented = map[string]string{}, map[string]bool{}
	assign := regexp.MustCompile(`^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$`)
	sc := bufio.NewScanner(strings.NewReader(readRepoFile(t, envFile)))
	for sc.Scan() {
		m := assign.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		if m[1] != "" {
			commented[m[2]] = true
		} else {
			active[m[2]] = m[3]
		}
	}
	return active, commented
}

// healthURL finds the URL a health check command requests.
func healthURL(t testing.TB, cmd []string) *url.URL {
	t.Helper()
	for _, w := range cmd {
		if strings.HasPrefix(w, "http://") || strings.HasPrefix(w, "https://") {
			u, err := url.Parse(w)
			if err != nil {
				t.Fatal(err)
			}
			return u
		}
	}
	t.Fatalf("no URL in health check %q", cmd)
	return nil
}

func envValue(s types.ServiceConfig, name string) (string, bool) {
	v, ok := s.Environment[name]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

// relTo makes a bind mount's source relative to the repository ("." for the root).
func relTo(root, path string) string {
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return path
	}
	return filepath.ToSlash(rel)
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

package compose

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"regexp"
	"strings"
)

// Instruction is one Dockerfile instruction, continuation lines joined.
type Instruction struct {
	Cmd  string // upper case: FROM, RUN, COPY, ...
	Args string // the rest of the instruction, continuation backslashes removed
	Line int    // line of the instruction's first word
}

// Stage is one FROM ... [AS name] block.
type Stage struct {
	Name         string
	Image        string // FROM's image, ARGs expanded
	Parent       *Stage // set when Image names an earlier stage
	Instructions []Instruction
}

// Dockerfile is a parsed Dockerfile: global ARGs (before the first FROM) and the stages.
type Dockerfile struct {
	Path       string
	GlobalArgs map[string]string
	Stages     []*Stage
}

// ParseDockerfile reads a Dockerfile with the build arguments buildArgs overriding the
// defaults of its global ARGs (as `docker build --build-arg` does).
func ParseDockerfile(file string, buildArgs map[string]string) (*Dockerfile, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	df := &Dockerfile{Path: file, GlobalArgs: map[string]string{}}
	var (
		cur      *Stage
		pending  strings.Builder
		startRow int
	)
	flush := func() error {
		text := strings.TrimSpace(pending.String())
		pending.Reset()
		if text == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := Instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: startRow}
		switch {
		case in.Cmd == "FROM":
			st, err := df.newStage(in, buildArgs)
			if err != nil {
				return fmt.Errorf("%s:%d: %w", file, in.Line, err)
			}
			cur = st
		case cur == nil && in.Cmd == "ARG":
			name, def, _ := strings.Cut(in.Args, "=")
			df.GlobalArgs[name] = strings.Trim(def, `"`)
		case cur == nil:
			return fmt.Errorf("%s:%d: %s before the first FROM", file, in.Line, in.Cmd)
		default:
			cur.Instructions = append(cur.Instructions, in)
		}
		return nil
	}

	sc := bufio.NewScanner(f)
	row := 0
	for sc.Scan() {
		row++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && pending.Len() == 0) {
			continue // comments (also inside continuations) and blank lines
		}
		if pending.Len() == 0 {
			startRow = row
		}
		if strings.HasSuffix(trimmed, `\`) {
			pending.WriteString(strings.TrimSuffix(trimmed, `\`))
			pending.WriteString(" ")
			continue
		}
		pending.WriteString(trimmed)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	for name, v := range buildArgs {
		if _, ok := df.GlobalArgs[name]; ok {
			df.GlobalArgs[name] = v
		}
	}
	return df, nil
}

var argRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

func (df *Dockerfile) newStage(in Instruction, buildArgs map[string]string) (*Stage, error) {
	words := strings.Fields(in.Args)
	var rest []string
	for _, w := range words {
		if !strings.HasPrefix(w, "--") { // --platform=...
			rest = append(rest, w)
		}
	}
	if len(rest) != 1 && !(len(rest) == 3 && strings.EqualFold(rest[1], "AS")) {
		return nil, fmt.Errorf("cannot parse FROM %q", in.Args)
	}
	image := argRef.ReplaceAllStringFunc(rest[0], func(ref string) string {
		name := argRef.FindStringSubmatch(ref)[1]
		if v, ok := buildArgs[name]; ok {
			return v
		}
		return df.GlobalArgs[name]
	})
	st := &Stage{Image: image}
	if len(rest) == 3 {
		st.Name = rest[2]
	}
	if parent := df.Stage(image); parent != nil {
		st.Parent = parent
	}
	df.Stages = append(df.Stages, st)
	return st, nil
}

// Stage returns the stage called name, or nil.
func (df *Dockerfile) Stage(name string) *Stage {
	for _, st := range df.Stages {
		if st.Name != "" && st.Name == name {
			return st
		}
	}
	return nil
}

// All returns the stage's instructions of kind cmd, its ancestors' first.
func (st *Stage) All(cmd string) []Instruction {
	var out []Instruction
	if st.Parent != nil {
		out = st.Parent.All(cmd)
	}
	for _, in := range st.Instructions {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// Last returns the stage's last instruction of kind cmd (its ancestors' included).
func (st *Stage) Last(cmd string) (Instruction, bool) {
	all := st.All(cmd)
	if len(all) == 0 {
		return Instruction{}, false
	}
	return all[len(all)-1], true
}

// BaseImage is the registry image the stage finally derives from.
func (st *Stage) BaseImage() string {
	if st.Parent != nil {
		return st.Parent.BaseImage()
	}
	return st.Image
}

// Env returns the stage's ENV settings (both `ENV K=V K2=V2` and `ENV K V`).
func (st *Stage) Env() map[string]string {
	env := map[string]string{}
	for _, in := range st.All("ENV") {
		if !strings.Contains(strings.Fields(in.Args)[0], "=") {
			k, v, _ := strings.Cut(in.Args, " ")
			env[k] = strings.TrimSpace(v)
			continue
		}
		for _, kv := range strings.Fields(in.Args) {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = strings.Trim(v, `"`)
		}
	}
	return env
}

// Exposed returns the stage's EXPOSEd ports ("8080", "8080/tcp" -> "8080").
func (st *Stage) Exposed() []string {
	var ports []string
	for _, in := range st.All("EXPOSE") {
		for _, p := range strings.Fields(in.Args) {
			p, _, _ = strings.Cut(p, "/")
			ports = append(ports, p)
		}
	}
	return ports
}

// ExecForm parses a JSON-array (exec form) argument such as CMD ["a", "b"].
func ExecForm(args string) ([]string, error) {
	var out []string
	if err := json.Unmarshal([]byte(args), &out); err != nil {
		return nil, fmt.Errorf("not exec (JSON) form: %s", args)
	}
	return out, nil
}

// Healthcheck splits a HEALTHCHECK instruction into its options and its CMD (exec form).
func Healthcheck(in Instruction) (opts map[string]string, cmd []string, err error) {
	opts = map[string]string{}
	rest := in.Args
	for strings.HasPrefix(rest, "--") {
		word, tail, _ := strings.Cut(rest, " ")
		k, v, _ := strings.Cut(strings.TrimPrefix(word, "--"), "=")
		opts[k] = v
		rest = strings.TrimSpace(tail)
	}
	kw, tail, _ := strings.Cut(rest, " ")
	if kw != "CMD" {
		return nil, nil, fmt.Errorf("HEALTHCHECK %q: want CMD", in.Args)
	}
	cmd, err = ExecForm(strings.TrimSpace(tail))
	return opts, cmd, err
}

// What each base image family ships that the deployment relies on. Sources: the official
// images' Dockerfiles. rust:<version>-<debian> (not -slim) is built on buildpack-deps, which
// installs curl and wget; golang:*-alpine and alpine have busybox, whose applets include wget
// and sh; debian:*-slim has neither curl nor wget.
var baseImageBinaries = []struct {
	pattern  *regexp.Regexp
	binaries []string
}{
	{regexp.MustCompile(`^rust:[0-9.]+-(bookworm|trixie)$`), []string{"sh", "bash", "curl", "wget", "cargo", "rustc", "git"}},
	{regexp.MustCompile(`^rust:[0-9.]+-slim-(bookworm|trixie)$`), []string{"sh", "bash", "cargo", "rustc"}},
	{regexp.MustCompile(`^golang:[0-9.]+-alpine[0-9.]+$`), []string{"sh", "wget", "go"}},
	{regexp.MustCompile(`^alpine:[0-9.]+$`), []string{"sh", "wget"}},
	{regexp.MustCompile(`^debian:(bookworm|trixie)-slim$`), []string{"sh", "bash"}},
}

var (
	pkgInstall   = regexp.MustCompile(`(?:apt-get install|apk add)((?:\s+[^&|;\s]+)+)`)
	cargoInstall = regexp.MustCompile(`cargo install((?:\s+[^&|;\s]+)+)`)
	goInstall    = regexp.MustCompile(`go install\s+(\S+)@\S+`)
)

// Binaries returns the executables the stage is known to provide: from its base image (by the
// table above), from packages it installs (apt-get, apk), from cargo install / go install,
// and binaries it copies into /usr/local/bin. known is false when the base image is not in
// the table.
func (st *Stage) Binaries() (bins map[string]bool, known bool) {
	bins = map[string]bool{}
	base := st.BaseImage()
	for _, b := range baseImageBinaries {
		if b.pattern.MatchString(base) {
			known = true
			for _, bin := range b.binaries {
				bins[bin] = true
			}
		}
	}
	for _, in := range st.All("RUN") {
		for _, m := range pkgInstall.FindAllStringSubmatch(in.Args, -1) {
			for _, w := range strings.Fields(m[1]) {
				if !strings.HasPrefix(w, "-") {
					name, _, _ := strings.Cut(w, "=") // apt pins: curl=8.1.2-1
					bins[name] = true
				}
			}
		}
		for _, m := range cargoInstall.FindAllStringSubmatch(in.Args, -1) {
			words := strings.Fields(m[1])
			for i := 0; i < len(words); i++ {
				w := words[i]
				switch {
				case w == "--version" || w == "--root" || w == "--git" || w == "--path":
					i++ // flag with a value
				case strings.HasPrefix(w, "-"):
				default:
					bins[w] = true
				}
			}
		}
		for _, m := range goInstall.FindAllStringSubmatch(in.Args, -1) {
			bins[path.Base(m[1])] = true
		}
	}
	for _, in := range st.All("COPY") {
		words := strings.Fields(in.Args)
		if dest := words[len(words)-1]; strings.HasPrefix(dest, "/usr/local/bin/") {
			bins[path.Base(dest)] = true
		}
	}
	return bins, known
}

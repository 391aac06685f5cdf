// Command jessy-api is the HTTP gateway in front of jessy-core: it forwards /api/v1/... to
// jessy-core's /v1/..., streaming bodies both ways, and adds request IDs, an optional bearer
// token check, an optional per-client rate limit, Prometheus metrics, a health endpoint and JSON
// access logs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
)

// gcPercent replaces Go's default GOGC of 100 unless GOGC is set.
//
// The gateway keeps about 1 MiB live but allocates a few KiB per request, nearly all of it in
// net/http and httputil. With GOGC=100 the heap goal stays at its 4 MiB floor, and at 15,000
// requests per second the collector ran 35 times a second, for close to a tenth of the
// gateway's CPU time (docs/BENCHMARKS.md, ## HTTP). At 400 it runs a quarter as often, for
// about 12 MiB more memory.
const gcPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is main with its surroundings passed in, so tests can drive it. Exit status: 0 after a
// clean stop or -h, 1 when serving fails, 2 for invalid configuration.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, getenv, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "jessy-api: %s\n", line)
		}
		return 2
	}
	lw := newLogWriter(stdout)
	defer lw.Close()
	logger := newLogger(lw, cfg.LogLevel)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		fmt.Fprintf(stderr, "jessy-api: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, logger, ln); err != nil {
		fmt.Fprintf(stderr, "jessy-api: %v\n", err)
		return 1
	}
	return 0
}

// newLogger writes JSON lines to w; warnings and errors go out at once, other lines in
// batches (see logWriter).
func newLogger(w *logWriter, level slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(flushHandler{Handler: h, w: w, level: slog.LevelWarn, jsonLines: true})
}

// serve runs the gateway on ln until ctx ends, then drains: health turns 503, requests are still
// served for cfg.DrainDelay, then the listener closes, in-flight requests get
// cfg.ShutdownTimeout to finish, and whatever is left is cut off.
func serve(ctx context.Context, cfg Config, logger *slog.Logger, ln net.Listener) error {
	g := New(cfg, logger)
	defer g.Close()
	srv := g.NewServer()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("jessy-api listening",
		slog.String("addr", ln.Addr().String()),
		slog.String("core_url", cfg.CoreURL.Redacted()),
		slog.Bool("auth", cfg.Token != ""),
		slog.Float64("rate_limit", cfg.RateLimit),
		slog.Int64("max_body_bytes", cfg.MaxBodyBytes))

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}

	g.Drain()
	logger.Info("shutting down", slog.String("drain_delay", cfg.DrainDelay.String()),
		slog.String("grace", cfg.ShutdownTimeout.String()))
	if cfg.DrainDelay > 0 {
		// Shutdown closes the listener at once, so without a delay the 503 is hardly ever
		// seen: a load balancer polling /api/health would find the port closed instead, and
		// requests it sent meanwhile would be refused. For the delay everything is served as
		// before, only the health check says to go elsewhere.
		time.Sleep(cfg.DrainDelay)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Still exit 0: the stop was asked for, and a non-zero status would make a
		// "restart on failure" supervisor start the gateway right back up.
		logger.Warn("grace period over; closing the remaining connections", slog.Any("error", err))
		_ = srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("jessy-api stopped")
	return nil
}

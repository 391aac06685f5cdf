package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
)

// healthChecker asks jessy-core's /health on every call, with nothing cached, so the answer turns
// back to ok as soon as jessy-core is back.
type healthChecker struct {
	client *http.Client
	url    string
	log    *slog.Logger
}

func newHealthChecker(core *url.URL, rt http.RoundTripper, cfg Config, log *slog.Logger) *healthChecker {
	return &healthChecker{
		client: &http.Client{Transport: rt, Timeout: cfg.HealthTimeout},
		url:    core.JoinPath("health").String(),
		log:    log,
	}
}

// core returns "ok" or a short reason. The reason goes to an unauthenticated endpoint, so it names
// no address or internal error; those go to the log.
func (h *healthChecker) core(ctx context.Context) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return "bad_core_url"
	}
	req.Header.Set(requestIDHeader, reqInfoFrom(ctx).id)
	resp, err := h.client.Do(req)
	if err != nil {
		reason := "unreachable"
		if isTimeout(err) {
			reason = "timeout"
		}
		h.log.LogAttrs(ctx, slog.LevelWarn, "core health check failed",
			slog.String("request_id", reqInfoFrom(ctx).id), slog.String("reason", reason), slog.Any("error", err))
		return reason
	}
	defer resp.Body.Close()
	// Drained so the connection can be reused; bounded so a confused core cannot stall us.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("unhealthy (status %d)", resp.StatusCode)
	}
	return "ok"
}

type healthBody struct {
	Status string `json:"status"`
	Core   string `json:"core"`
}

func (g *Gateway) serveHealth(w http.ResponseWriter, r *http.Request) {
	body, status := healthBody{Status: "ok"}, http.StatusOK
	if g.draining.Load() {
		// Load balancers must stop sending new work before the listener closes.
		body, status = healthBody{Status: "shutting_down", Core: "unknown"}, http.StatusServiceUnavailable
	} else if body.Core = g.health.core(r.Context()); body.Core != "ok" {
		body.Status, status = "degraded", http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// isTimeout reports whether err is a deadline running out rather than a refusal.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

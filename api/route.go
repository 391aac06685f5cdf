package main

import "strings"

type routeKind int

const (
	routeUnmatched routeKind = iota
	routeHealth
	routeMetrics
	routeAPI
)

// Route labels for metrics and logs: templates, never raw paths, so keys stay out of metric
// names and series stay few.
const (
	labelHealth     = "/api/health"
	labelMetrics    = "/api/metrics"
	labelUnmatched  = "unmatched"
	labelDimensions = "/api/v1/dimensions"
	labelDimension  = "/api/v1/dimensions/{dim}"
	labelKey        = "/api/v1/dimensions/{dim}/keys/{key}"
	labelSnapshot   = "/api/v1/snapshot"
	labelAPIOther   = "/api/v1/{other}"
)

// routeFor classifies an escaped path. It splits the escaped form so a dimension or key holding
// %2F stays one segment.
func routeFor(escaped string) (string, routeKind) {
	switch escaped {
	case labelHealth:
		return labelHealth, routeHealth
	case labelMetrics:
		return labelMetrics, routeMetrics
	}
	rest, ok := strings.CutPrefix(escaped, apiPrefix)
	if !ok || (rest != "" && rest[0] != '/') {
		return labelUnmatched, routeUnmatched
	}
	return apiLabel(rest), routeAPI
}

// apiLabel names the jessy-core route that rest (the path after /api/v1) reaches.
func apiLabel(rest string) string {
	if rest == "/snapshot" {
		return labelSnapshot
	}
	seg, n := splitSegments(strings.TrimPrefix(rest, "/"))
	if seg[0] != "dimensions" {
		return labelAPIOther
	}
	switch {
	case n == 1 || (n == 2 && seg[1] == ""):
		return labelDimensions
	case n == 2:
		return labelDimension
	case n == 3 && seg[1] != "":
		switch seg[2] {
		case "scan", "batch", "compact":
			return labelDimension + "/" + seg[2]
		}
	case n == 4 && seg[1] != "" && seg[2] == "keys":
		return labelKey
	}
	return labelAPIOther
}

// splitSegments is strings.SplitN(s, "/", 4) into an array, without allocating: the segments
// and how many there are.
func splitSegments(s string) (seg [4]string, n int) {
	for n < 3 {
		i := strings.IndexByte(s, '/')
		if i < 0 {
			break
		}
		seg[n], s = s[:i], s[i+1:]
		n++
	}
	seg[n] = s
	return seg, n + 1
}

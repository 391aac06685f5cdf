package main

import (
	"encoding/json"
	"net/http"
)

// Stable machine-readable error codes: clients switch on these, so never rename one.
const (
	codeBadRequest       = "bad_request"
	codeUnauthorized     = "unauthorized"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeRequestTimeout   = "request_timeout"
	codePayloadTooLarge  = "payload_too_large"
	codeRateLimited      = "rate_limited"
	codeClientClosed     = "client_closed_request"
	codeBadGateway       = "bad_gateway"
	codeGatewayTimeout   = "gateway_timeout"
)

// problemTypeBase is jessy-core's scheme too: a client sees one kind of type URI whichever
// service answered, and a URN promises no documentation page at a URL nobody serves.
const problemTypeBase = "urn:jessy:error:"

// statusClientClosed is nginx's name for a request whose client left first; the client never
// sees it, but logs and metrics do, so they are not blamed on jessy-core.
const statusClientClosed = 499

// problem is an RFC 9457 problem document, with the fields jessy-core uses too.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	RequestID string `json:"request_id"`
}

func newProblem(r *http.Request, status int, code, detail string) problem {
	title := http.StatusText(status)
	if status == statusClientClosed {
		title = "Client Closed Request"
	}
	return problem{
		Type:      problemTypeBase + code,
		Title:     title,
		Status:    status,
		Detail:    detail,
		Code:      code,
		RequestID: reqInfoFrom(r.Context()).id,
	}
}

func writeProblem(w http.ResponseWriter, r *http.Request, status int, code, detail string) {
	body, err := json.Marshal(newProblem(r, status, code, detail))
	if err != nil {
		// Only strings and ints go in: this cannot happen.
		panic(err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

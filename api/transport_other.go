//go:build !unix

package main

// peekOpen cannot look at the socket here; a connection that jessy-core closed fails the
// request it is used for instead.
func peekOpen(uintptr) bool { return true }

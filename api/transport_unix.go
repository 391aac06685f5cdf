//go:build unix

package main

import "syscall"

// peekOpen reports whether the socket fd has nothing to read: no data, no end of stream, no
// error. Anything else means that an idle keep-alive connection cannot be used.
func peekOpen(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
}

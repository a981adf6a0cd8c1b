//go:build unix && !linux

package faulttest

import (
	"context"
	"syscall"
)

// procAttr is empty: only Linux has a parent-death signal; the test's
// cleanup kills the server.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

// waitStopped returns at once: SIGSTOP takes effect before the process
// runs again, and there is no portable way to observe it.
func waitStopped(ctx context.Context, pid int) error { return ctx.Err() }

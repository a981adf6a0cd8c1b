package faulttest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/wait"
)

// procAttr makes the child die with SIGKILL when the thread that started
// it exits (see MariaDB.spawn), so that no server outlives the test binary.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// waitStopped polls /proc until process pid is in the stopped state, or
// ctx is done.
func waitStopped(ctx context.Context, pid int) error {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	var t wait.Timer
	defer t.Stop()
	for {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("faulttest: state of process %d: %w", pid, err)
		}
		// The state follows the command name, which is in parentheses.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't') {
			return nil
		}
		if err := t.Sleep(ctx, time.Millisecond); err != nil {
			return fmt.Errorf("faulttest: process %d did not stop: %w", pid, err)
		}
	}
}

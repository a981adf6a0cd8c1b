//go:build !unix

package rblob_test

import "time"

// processCPU returns 0: the CPU-time metric is measured on Unix only.
func processCPU() time.Duration { return 0 }

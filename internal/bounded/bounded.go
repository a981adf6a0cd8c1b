// Package bounded keeps error messages short whatever the input: a value
// that came from outside (a cursor, a name, a status message) is quoted or
// cut to a fixed number of bytes, so a megabyte of bad input never becomes
// a megabyte of error text.
package bounded

import (
	"strconv"
	"unicode/utf8"
)

// QuoteBytes is the most bytes of its input that Quote shows.
const QuoteBytes = 64

// Quote returns s quoted as strconv.Quote does (invalid UTF-8 and control
// characters escaped) if it is at most QuoteBytes long. A longer s is cut
// at a character boundary at or below QuoteBytes, quoted, and followed by
// its full length: "aaaa"... (1048576 bytes).
func Quote(s string) string {
	if len(s) <= QuoteBytes {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:cut(s, QuoteBytes)]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}

// Truncate returns s if it is at most n bytes long. Otherwise it returns
// the first bytes of s, cut at a character boundary, followed by
// "... (N bytes)" with N the full length, in at most n bytes in all (for
// n of at least 32). Invalid UTF-8 in the kept part is left as it is.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	suffix := "... (" + strconv.Itoa(len(s)) + " bytes)"
	return s[:cut(s, max(n-len(suffix), 0))] + suffix
}

// cut returns the largest index i <= n of s that does not split a
// multi-byte character (a byte that is not a UTF-8 continuation byte, or
// len(s)).
func cut(s string, n int) int {
	if n >= len(s) {
		return len(s)
	}
	for i := n; i > 0 && n-i < utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			return i
		}
	}
	return n
}

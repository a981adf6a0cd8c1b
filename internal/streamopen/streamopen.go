// Package streamopen is the common start of every reflex.StreamFunc of
// this module: it resolves the stream options, refuses a negative lag,
// parses the cursor unless the stream starts from the head, and derives the
// client's cancellable lifetime. Sources call Open first and keep what it
// returns, so that each rule is written once:
//
//	o, err := streamopen.Open(ctx, "rsql", after, opts, streamopen.ParseInt)
//	if err != nil {
//		return nil, err // wraps reflex.ErrInvalidCursor
//	}
//	c := &client{life: o.Life, opts: o.Options, cursor: o.Cursor}
//
// A client built on the returned life.Life obeys the rule every stream
// client of this module obeys (see package life): its Recv returns
// Life.Err() first, and its Close calls Life.Close.
package streamopen

import (
	"context"
	"errors"
	"fmt"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"github.com/seed-e488ba2e/reflex/internal/life"
)

// maxMessage bounds the message of the errors Open returns, whatever the
// parse function's error says.
const maxMessage = 512

// Opened is what Open resolves for a stream being opened.
type Opened[C any] struct {
	// Options are the resolved stream options; Lag is not negative.
	Options reflex.StreamOptions
	// Cursor is the parsed cursor; HasCursor reports whether there was
	// one to parse. Cursor is the zero C, and HasCursor false, when after
	// is "" or Options.StreamFromHead is set (the head overrides the
	// cursor, which is then not parsed at all).
	Cursor    C
	HasCursor bool
	// Life is the client's lifetime, a child of the caller's context.
	Life *life.Life
}

// Open resolves a stream's options and cursor for a StreamFunc of package
// pkg (the prefix of its errors). parse converts a non-empty cursor; it
// should return a short error saying what is wrong, without quoting the
// cursor (Open names it, quoted and cut to 64 bytes).
//
// Open fails, before deriving any context, with an error that wraps
// reflex.ErrInvalidCursor (and parse's error) for a negative lag or a
// cursor parse refuses; the message is at most 512 bytes. On success the
// caller owns Opened.Life and closes it with its client (or at once if a
// later step of opening fails). Open panics, with a "reflex:"-prefixed
// message, if an option is nil (see reflex.ResolveOptions).
func Open[C any](ctx context.Context, pkg, after string, opts []reflex.StreamOption, parse func(string) (C, error)) (Opened[C], error) {
	o := Opened[C]{Options: reflex.ResolveOptions(opts...)}
	if o.Options.Lag < 0 {
		return Opened[C]{}, &invalidError{msg: fmt.Sprintf("%s: negative stream lag %v", pkg, o.Options.Lag)}
	}
	if after != "" && !o.Options.StreamFromHead {
		c, err := parse(after)
		if err != nil {
			msg := fmt.Sprintf("%s: invalid cursor %s: %v", pkg, bounded.Quote(after), err)
			return Opened[C]{}, &invalidError{msg: bounded.Truncate(msg, maxMessage), cause: err}
		}
		o.Cursor, o.HasCursor = c, true
	}
	o.Life = life.New(ctx)
	return o, nil
}

// invalidError is an error of Open: it wraps reflex.ErrInvalidCursor and
// the parse function's error, if any, with a message of its own.
type invalidError struct {
	msg   string
	cause error
}

func (e *invalidError) Error() string { return e.msg }

func (e *invalidError) Unwrap() []error {
	if e.cause == nil {
		return []error{reflex.ErrInvalidCursor}
	}
	return []error{reflex.ErrInvalidCursor, e.cause}
}

// Errors of ParseInt.
var (
	errNotInteger = errors.New("not a non-negative base-10 integer")
	errNegative   = errors.New("negative")
	errRange      = errors.New("beyond the range of int64")
)

// ParseInt parses the cursor of a stream whose event IDs are integers: s
// must be a non-empty string of ASCII digits (no sign, no space) whose
// value fits in an int64. Its errors do not quote s.
func ParseInt(s string) (int64, error) {
	if s == "" {
		return 0, errNotInteger
	}
	if s[0] == '-' && len(s) > 1 && allDigits(s[1:]) {
		return 0, errNegative
	}
	if !allDigits(s) {
		return 0, errNotInteger
	}
	var n int64
	for i := 0; i < len(s); i++ {
		d := int64(s[i] - '0')
		if n > (1<<63-1-d)/10 {
			return 0, errRange
		}
		n = n*10 + d
	}
	return n, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

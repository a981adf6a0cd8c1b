package rsql

import (
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"strings"
)

// validIdent reports whether name is a safe SQL identifier: 1 to 64
// characters of ASCII letters, digits, '_' and '$', optionally wrapped in
// backticks (as some options' defaults are), or two such parts joined by
// '.' (schema.table). Anything else is refused at construction so that no
// identifier can inject SQL.
func validIdent(name string) bool {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if len(p) >= 2 && p[0] == '`' && p[len(p)-1] == '`' {
			p = p[1 : len(p)-1]
		}
		if p == "" || len(p) > 64 {
			return false
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '$':
			default:
				return false
			}
		}
	}
	return true
}

// CheckName returns nil if name is valid as a table or column name in the
// constructors and options of this package, which panic on an invalid
// name: 1 to 64 ASCII letters, digits, '_' or '$', optionally in
// backticks, or two such parts joined by '.' (schema.table). Otherwise it
// returns an error quoting at most 64 bytes of name. Use it to check names
// that come from configuration.
func CheckName(name string) error {
	if !validIdent(name) {
		return fmt.Errorf("rsql: invalid name %s: use 1-64 letters, digits, '_' or '$' (optionally `quoted`, or schema.name)", bounded.Quote(name))
	}
	return nil
}

// mustIdent panics with an "rsql:" message if name is not a valid
// identifier; what is the role of the name, for the message. Constructors
// without an error result use it: a bad table or column name is a
// programming error.
func mustIdent(what, name string) {
	if !validIdent(name) {
		panic(fmt.Sprintf("rsql: invalid %s name %s: use 1-64 letters, digits, '_' or '$' (optionally `quoted`, or schema.name)", what, bounded.Quote(name)))
	}
}

// unquote strips backticks from each part of a valid identifier.
func unquote(name string) string {
	return strings.ReplaceAll(name, "`", "")
}

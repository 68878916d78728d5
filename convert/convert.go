// Package convert translates between socketd definitions and the formats
// sysadmins bring along: systemd socket units with their services, inetd.conf
// and xinetd configuration.
//
// An import never drops a setting silently. What socketd can express becomes
// part of a socketd.Socket; every directive it cannot express is listed in
// Result.Unmapped with the reason, so that the sysadmin can decide what to do
// about it. Input that cannot be imported at all (a syntax error, a command
// socketd cannot run the way the original would) is an *Error that names the
// line.
//
// Imports start from socketd.NewSocket and do not call Socket.Validate: that
// checks the machine the definition is saved on (users, programs), which need
// not be the one converting it. The daemon validates on save.
//
// The package imports only the standard library and the vocabulary package.
package convert

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/socketd/socketd"
)

// Unmapped is a directive an import could not express in socketd, or the
// part of one it had to leave out.
type Unmapped struct {
	// Source names where the directive comes from: a unit file name such
	// as "octoi-helloworld.socket", "inetd.conf", or "xinetd service
	// telnet".
	Source string `json:"source"`
	// Socket is the name of the socket the directive concerns, empty when
	// it concerns none (xinetd's defaults, an includedir).
	Socket string `json:"socket,omitempty"`
	// Line is the line of the imported text the directive is on, from 1.
	Line      int    `json:"line"`
	Directive string `json:"directive"`
	Value     string `json:"value"`
	Reason    string `json:"reason"`
}

// Result is what an import produced: the socket definitions, and what of the
// input they do not express.
type Result struct {
	Sockets  []socketd.Socket `json:"sockets"`
	Unmapped []Unmapped       `json:"unmapped"`
}

// File is a configuration file an export produced.
type File struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

// Error is why a text cannot be imported. Line is the line of the text at
// fault, from 1, or 0 when the problem is with the text as a whole.
type Error struct {
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// errorf returns an *Error at line.
func errorf(line int, format string, args ...any) *Error {
	return &Error{Line: line, Msg: fmt.Sprintf(format, args...)}
}

// newResult returns a result with lists that are never nil, so that they
// are [] in JSON, and the unmapped directives in the order of the input,
// whatever order the import visited them in.
func newResult(sockets []socketd.Socket, unmapped []Unmapped) Result {
	if sockets == nil {
		sockets = []socketd.Socket{}
	}
	if unmapped == nil {
		unmapped = []Unmapped{}
	}
	slices.SortStableFunc(unmapped, func(a, b Unmapped) int { return cmp.Compare(a.Line, b.Line) })
	return Result{Sockets: sockets, Unmapped: unmapped}
}

// narrowerDeny returns a deny rule more specific than an allow rule that
// holds it, or "": socketd lets the most specific rule decide, where
// systemd lets any match of IPAddressAllow= win, so such a pair means
// something else to each.
func narrowerDeny(allow, deny []string) string {
	for _, d := range deny {
		dp, _ := socketd.ParseRule(d)
		for _, a := range allow {
			ap, _ := socketd.ParseRule(a)
			for _, x := range dp {
				for _, y := range ap {
					if x.Bits() > y.Bits() && y.Contains(x.Addr()) {
						return d
					}
				}
			}
		}
	}
	return ""
}

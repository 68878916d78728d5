package socketd

import (
	"fmt"
	"net/netip"
	"strings"
)

// Limits bound what a socket's clients can take, as flat fields of a
// definition. The zero value is systemd's defaults: 64 connections at once,
// waiting in the kernel's backlog beyond, and everyone allowed.
type Limits struct {
	// MaxConnections is systemd's MaxConnections=: how many connections
	// (or service runs) of the socket may live at once; 0 is
	// DefaultMaxConnections.
	MaxConnections int `json:"max_connections,omitempty"`
	// OnLimit says what happens to a connection beyond MaxConnections:
	// OnLimitDefer (the default: socketd stops accepting, and clients
	// wait in the kernel's backlog, as tcpserver does) or OnLimitRefuse
	// (it is accepted and closed, after LimitMessage if set, as tcpsvd
	// does).
	OnLimit string `json:"on_limit,omitempty"`
	// LimitMessage is a line written to a client refused at the limit.
	LimitMessage string `json:"limit_message,omitempty"`
	// MaxConnectionsPerSource is systemd's MaxConnectionsPerSource=: how
	// many connections one source may have at once; more are refused. A
	// source is a client's address cut to SourcePrefixIPv4 bits (default
	// 32) or SourcePrefixIPv6 bits (default 64: one client with a routed
	// IPv6 prefix is one source); IPv4-mapped IPv6 addresses count as
	// IPv4. 0: no limit per source.
	MaxConnectionsPerSource int `json:"max_connections_per_source,omitempty"`
	SourcePrefixIPv4        int `json:"source_prefix_ipv4,omitempty"`
	SourcePrefixIPv6        int `json:"source_prefix_ipv6,omitempty"`
	// RateLimit bounds how fast the socket takes new connections (or
	// starts its service): beyond it the socket pauses, and clients wait
	// in the kernel's backlog until it resumes by itself. SourceRateLimit
	// bounds each source's; beyond it the source's connections are
	// refused until its rate is back under it.
	RateLimit       *RateLimit `json:"rate_limit,omitempty"`
	SourceRateLimit *RateLimit `json:"source_rate_limit,omitempty"`
	// IPAddressAllow and IPAddressDeny are systemd's IPAddressAllow= and
	// IPAddressDeny=: addresses, CIDR prefixes or the keywords any,
	// localhost, link-local and multicast. A client whose address a rule
	// of either list matches is allowed or denied by the most specific
	// rule that matches (the longest prefix; allow wins a tie); one that
	// none matches is allowed.
	IPAddressAllow []string `json:"ip_address_allow,omitempty"`
	IPAddressDeny  []string `json:"ip_address_deny,omitempty"`
}

// RateLimit is a token bucket: PerSecond connections a second on average,
// Burst at once.
type RateLimit struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
}

// Default source prefixes (Limits.SourcePrefixIPv4, SourcePrefixIPv6).
const (
	DefaultSourcePrefixIPv4 = 32
	DefaultSourcePrefixIPv6 = 64
)

// SourcePrefix returns the source a client at addr counts as: its address
// cut to the definition's prefix length, IPv4-mapped addresses as IPv4.
func (l *Limits) SourcePrefix(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	bits := l.SourcePrefixIPv6
	if bits == 0 {
		bits = DefaultSourcePrefixIPv6
	}
	if addr.Is4() {
		bits = l.SourcePrefixIPv4
		if bits == 0 {
			bits = DefaultSourcePrefixIPv4
		}
	}
	p, _ := addr.Prefix(bits)
	return p
}

// minRate is the slowest rate limit, a second: one a week, roughly.
const minRate = 1e-6

// DefaultMaxConnections is systemd's MaxConnections= default.
const DefaultMaxConnections = 64

// maxMaxConnections bounds max_connections: more live handlers than this
// on one socket is not a limit.
const maxMaxConnections = 1 << 20

// What happens beyond max_connections (Limits.OnLimit).
const (
	OnLimitDefer  = "defer"
	OnLimitRefuse = "refuse"
)

// maxRules bounds each access list.
const maxRules = 1024

// Max returns the definition's MaxConnections with the default filled in.
func (l *Limits) Max() int {
	if l.MaxConnections == 0 {
		return DefaultMaxConnections
	}
	return l.MaxConnections
}

// Refuses reports whether connections beyond the limit are refused rather
// than left waiting.
func (l *Limits) Refuses() bool { return l.OnLimit == OnLimitRefuse }

// validate adds a problem with l to add. k says what the socket listens
// on and accept whether it accepts connections: what concerns clients
// applies only to the connections socketd accepts, and per source only to
// TCP ones.
func (l *Limits) validate(add func(pointer, format string, args ...any), k listenKinds, accept bool) {
	for _, f := range []struct {
		pointer string
		set     bool
	}{
		{"/ip_address_allow", len(l.IPAddressAllow) > 0}, {"/ip_address_deny", len(l.IPAddressDeny) > 0},
		{"/max_connections_per_source", l.MaxConnectionsPerSource > 0}, {"/source_rate_limit", l.SourceRateLimit != nil},
		{"/source_prefix_ipv4", l.SourcePrefixIPv4 > 0}, {"/source_prefix_ipv6", l.SourcePrefixIPv6 > 0},
		{"/on_limit", l.OnLimit == OnLimitRefuse},
	} {
		switch {
		case !f.set:
		case !accept:
			add(f.pointer, "applies to accepted connections: a service (accept false) gets its sockets as they are")
		case !k.tcp && f.pointer != "/on_limit":
			add(f.pointer, "applies to clients with an IP address, and listen has no TCP address")
		}
	}
	if l.MaxConnections < 0 || l.MaxConnections > maxMaxConnections {
		add("/max_connections", "must be from 1 to %d, or 0 for %d", maxMaxConnections, DefaultMaxConnections)
	}
	switch l.OnLimit {
	case "", OnLimitDefer:
		if l.LimitMessage != "" {
			add("/limit_message", "is written to refused clients: it needs on_limit refuse")
		}
	case OnLimitRefuse:
	default:
		add("/on_limit", "must be defer or refuse")
	}
	if m := l.LimitMessage; len(m) > 512 || strings.ContainsAny(m, "\r\n\x00") {
		add("/limit_message", "must be one line of at most 512 bytes")
	}
	if n := l.MaxConnectionsPerSource; n < 0 || n > maxMaxConnections {
		add("/max_connections_per_source", "must be from 1 to %d, or 0 for no limit per source", maxMaxConnections)
	}
	if b := l.SourcePrefixIPv4; b < 0 || b > 32 {
		add("/source_prefix_ipv4", "must be from 1 to 32, or 0 for 32")
	}
	if b := l.SourcePrefixIPv6; b < 0 || b > 128 {
		add("/source_prefix_ipv6", "must be from 1 to 128, or 0 for 64")
	}
	for _, r := range []struct {
		pointer string
		rate    *RateLimit
	}{{"/rate_limit", l.RateLimit}, {"/source_rate_limit", l.SourceRateLimit}} {
		if r.rate == nil {
			continue
		}
		if !(r.rate.PerSecond >= minRate && r.rate.PerSecond <= 1e6) {
			add(r.pointer+"/per_second", "must be from %g (about one a week) to 1000000", minRate)
		}
		if r.rate.Burst < 1 || r.rate.Burst > maxMaxConnections {
			add(r.pointer+"/burst", "must be from 1 to %d", maxMaxConnections)
		}
	}
	for _, list := range []struct {
		pointer string
		rules   []string
	}{{"/ip_address_allow", l.IPAddressAllow}, {"/ip_address_deny", l.IPAddressDeny}} {
		if len(list.rules) > maxRules {
			add(list.pointer, "has more than %d rules", maxRules)
		}
		for i, r := range list.rules {
			if _, err := ParseRule(r); err != nil {
				add(fmt.Sprintf("%s/%d", list.pointer, i), "%v", err)
			}
		}
	}
}

// Rule is a parsed access rule: the prefixes it matches.
type Rule []netip.Prefix

// ruleKeywords are systemd's keywords for IPAddressAllow= and
// IPAddressDeny=.
var ruleKeywords = map[string]Rule{
	"any":        {netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
	"localhost":  {netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
	"link-local": {netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("fe80::/64")},
	"multicast":  {netip.MustParsePrefix("224.0.0.0/4"), netip.MustParsePrefix("ff00::/8")},
}

// ParseRule parses an access rule: an address (the host alone), a CIDR
// prefix, or one of systemd's keywords. An IPv4-mapped IPv6 address or
// prefix stands for the IPv4 one, as clients' addresses are compared as
// IPv4.
func ParseRule(s string) (Rule, error) {
	if r, ok := ruleKeywords[s]; ok {
		return r, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return nil, fmt.Errorf("%q: zoned addresses are not supported", s)
		}
		a = a.Unmap()
		return Rule{netip.PrefixFrom(a, a.BitLen())}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not an address, a CIDR prefix, or any, localhost, link-local or multicast", s)
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return nil, fmt.Errorf("%q: an IPv4-mapped prefix must be /96 or longer", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return Rule{p.Masked()}, nil
}

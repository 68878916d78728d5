package convert

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/socketd/socketd"
)

// Systemd imports a systemd socket unit and the service it starts, given as
// one text: the .socket file and the .service file (NAME@.service for
// Accept=yes, NAME.service for Accept=no) one after the other, in either
// order. Sections decide what belongs where: a [Unit] section starts a unit
// file, and the file with [Socket] is the socket unit, the one with
// [Service] the service. name is the socket's name, the socket unit's name
// with or without ".socket".
//
// The result is one socket, with systemd's defaults where the units set
// nothing: Accept=no, and a service's standard input /dev/null (with the
// connection as fd 3), its output the journal (socketd's log) unless its
// input is the socket, its error output where its output goes. The import
// states standard_input, standard_output and stderr explicitly, whatever
// socketd's defaults. Time spans become socketd's durations in a canonical
// form ("1min 30s" is "1m30s"), and the description comes from the socket
// unit (from the service if the socket unit has none).
//
// ExecStart= is read with systemd's quoting, escapes and prefixes ("-" is
// ignore_exit_status). Specifiers resolve where their value is known
// without systemd: %%, %p, %n and %N, and the directories of the system
// manager (%t is /run...). socketd runs the command as written, so one
// that systemd would change for each connection or environment (%i, $FOO,
// ${FOO}) is an error; "$$" is "$". Directives socketd has no equivalent
// for, [Install] among them, are listed in the result.
func Systemd(name, text string) (Result, error) {
	name = strings.TrimSuffix(name, ".socket")
	if !socketd.ValidName(name) {
		return Result{}, &Error{Msg: fmt.Sprintf("%q cannot name a socket: a name must match %s", name, socketd.NamePattern)}
	}
	sections, err := parseUnitText(text)
	if err != nil {
		return Result{}, err
	}
	var socketUnit, serviceUnit *unitFile
	var others []*unitFile
	for _, u := range splitUnits(sections) {
		switch {
		case u.socket && socketUnit != nil:
			return Result{}, errorf(u.sectionLine("Socket"), "a second socket unit: give one .socket unit and its service")
		case u.socket:
			socketUnit = u
		case u.service && serviceUnit != nil:
			return Result{}, errorf(u.sectionLine("Service"), "a second service: give one .socket unit and its service")
		case u.service:
			serviceUnit = u
		default:
			others = append(others, u)
		}
	}
	if socketUnit == nil {
		return Result{}, &Error{Msg: "no [Socket] section: give the .socket unit with its service"}
	}
	if serviceUnit == nil {
		return Result{}, &Error{Msg: fmt.Sprintf("no [Service] section: give the service the socket unit starts (%s@.service for Accept=yes) with it", name)}
	}

	im := &unitImport{name: name, s: socketd.NewSocket()}
	im.s.Name = name
	im.s.Accept = false // systemd's default
	if err := im.read(socketUnit, name+".socket", unitNames{unit: name + ".socket", prefix: name}); err != nil {
		return Result{}, err
	}
	// An Accept=yes socket starts an instance of the template NAME@.service
	// for each connection.
	serviceFile, serviceNames := name+".service", unitNames{unit: name + ".service", prefix: name}
	if im.s.Accept {
		serviceFile, serviceNames = name+"@.service", unitNames{prefix: name}
	}
	if err := im.read(serviceUnit, serviceFile, serviceNames); err != nil {
		return Result{}, err
	}
	for _, u := range others {
		src := fmt.Sprintf("unit at line %d", u.sections[0].line)
		for _, sec := range u.sections {
			for _, e := range sec.entries {
				im.note(src, e, "it is in neither the socket unit nor its service")
			}
		}
	}
	if err := im.finish(socketUnit, serviceUnit, serviceFile, serviceNames); err != nil {
		return Result{}, err
	}
	if d := narrowerDeny(im.s.IPAddressAllow, im.s.IPAddressDeny); d != "" && im.s.Accept {
		im.unmapped = append(im.unmapped, Unmapped{Source: name + ".socket", Socket: name,
			Line: socketUnit.sectionLine("Socket"), Directive: "IPAddressDeny", Value: d,
			Reason: "kept, but socketd lets the most specific rule decide, so it denies what it matches; systemd lets any match of IPAddressAllow= win"})
	}
	if !im.s.Accept {
		// systemd filters a service's packets; socketd checks clients as
		// it accepts them, which a service's socketd does not.
		for _, x := range []struct {
			directive, value string
			set              bool
		}{
			{"IPAddressAllow", strings.Join(im.s.IPAddressAllow, " "), len(im.s.IPAddressAllow) > 0},
			{"IPAddressDeny", strings.Join(im.s.IPAddressDeny, " "), len(im.s.IPAddressDeny) > 0},
			{"MaxConnectionsPerSource", strconv.Itoa(im.s.MaxConnectionsPerSource), im.s.MaxConnectionsPerSource > 0},
			{onLimitKey, im.s.OnLimit, im.s.OnLimit != ""},
			{limitMessageKey, im.s.LimitMessage, im.s.LimitMessage != ""},
			{sourceRateLimitKey, formatRate(im.s.SourceRateLimit), im.s.SourceRateLimit != nil},
			{sourcePrefixIPv4Key, strconv.Itoa(im.s.SourcePrefixIPv4), im.s.SourcePrefixIPv4 != 0},
			{sourcePrefixIPv6Key, strconv.Itoa(im.s.SourcePrefixIPv6), im.s.SourcePrefixIPv6 != 0},
		} {
			if x.set {
				im.unmapped = append(im.unmapped, Unmapped{Source: name + ".socket", Socket: name,
					Line: socketUnit.sectionLine("Socket"), Directive: x.directive, Value: x.value,
					Reason: "socketd applies it to the connections it accepts, and with Accept=no it accepts none"})
			}
		}
		im.s.IPAddressAllow, im.s.IPAddressDeny, im.s.MaxConnectionsPerSource = nil, nil, 0
		im.s.OnLimit, im.s.LimitMessage, im.s.SourceRateLimit = "", "", nil
		im.s.SourcePrefixIPv4, im.s.SourcePrefixIPv6 = 0, 0
	}
	return newResult([]socketd.Socket{im.s}, im.unmapped), nil
}

// unitFile is the sections of one unit file of the text.
type unitFile struct {
	sections        []section
	socket, service bool // it has a [Socket] or [Service] section
}

// splitUnits groups sections into the unit files they come from: a [Unit]
// section after any other section starts a new file, and so does a
// [Socket] after a [Service] and a [Service] after a [Socket], for a
// service file without [Unit].
func splitUnits(sections []section) []*unitFile {
	var units []*unitFile
	var cur *unitFile
	for _, s := range sections {
		if cur == nil ||
			(s.name == "Unit" && slices.ContainsFunc(cur.sections, func(t section) bool { return t.name != "Unit" })) ||
			(s.name == "Socket" && cur.service) || (s.name == "Service" && cur.socket) {
			cur = &unitFile{}
			units = append(units, cur)
		}
		cur.sections = append(cur.sections, s)
		cur.socket = cur.socket || s.name == "Socket"
		cur.service = cur.service || s.name == "Service"
	}
	return units
}

// sectionLine returns the line of u's first section called name.
func (u *unitFile) sectionLine(name string) int {
	for _, s := range u.sections {
		if s.name == name {
			return s.line
		}
	}
	return 0
}

// unitImport is the state of one import of a socket unit and its service.
type unitImport struct {
	name     string
	s        socketd.Socket
	unmapped []Unmapped

	description bool   // the socket unit set Description=
	serviceDesc *entry // the service's Description=, used if the socket unit has none
	execLine    int    // the line of the ExecStart= in effect
	// The service's StandardOutput= and StandardError= in effect, resolved
	// once the standard input is known.
	stdout, stderr *entry
}

// note lists e as unmapped.
func (im *unitImport) note(src string, e entry, reason string) {
	im.noteValue(src, e, e.value, reason)
}

// noteValue lists the part value of e as unmapped.
func (im *unitImport) noteValue(src string, e entry, value, reason string) {
	im.unmapped = append(im.unmapped, Unmapped{
		Source: src, Socket: im.name, Line: e.line, Directive: e.key, Value: value, Reason: reason,
	})
}

// read imports the directives of unit file u, called file.
func (im *unitImport) read(u *unitFile, file string, names unitNames) error {
	for _, sec := range u.sections {
		for _, e := range sec.entries {
			var err error
			switch sec.name {
			case "Unit":
				im.unitDirective(file, names, u.socket, e)
			case "Socket":
				err = im.socketDirective(file, names, e)
			case "Service":
				err = im.serviceDirective(file, names, e)
			case "Install":
				im.note(file, e, "socketd starts every enabled socket itself: there is nothing to install")
			default:
				im.note(file, e, fmt.Sprintf("section [%s] has no socketd equivalent", sec.name))
			}
			if err != nil {
				if _, ok := err.(*Error); ok {
					return err
				}
				return errorf(e.line, "%s=%s: %v", e.key, e.value, err)
			}
		}
	}
	return nil
}

// unitDirective imports a directive of a [Unit] section.
func (im *unitImport) unitDirective(file string, names unitNames, socketUnit bool, e entry) {
	switch {
	case e.key == "Description" && socketUnit:
		d, err := names.expand(e.value)
		if err != nil {
			im.note(file, e, err.Error())
			return
		}
		im.s.Description, im.description = d, e.value != ""
	case e.key == "Description":
		im.serviceDesc = &e
	case slices.Contains(dependencies, e.key):
		im.note(file, e, "socketd has no unit dependencies: each socket starts on its own")
	case strings.HasPrefix(e.key, "Condition") || strings.HasPrefix(e.key, "Assert"):
		im.note(file, e, "socketd has no start conditions")
	default:
		im.note(file, e, unmappedReason(e.key))
	}
}

// dependencies are the [Unit] settings that order or tie units together.
var dependencies = []string{
	"After", "Before", "Requires", "Requisite", "Wants", "BindsTo", "PartOf", "Upholds", "Conflicts",
	"OnFailure", "OnSuccess", "PropagatesReloadTo", "ReloadPropagatedFrom", "PropagatesStopTo",
	"StopPropagatedFrom", "JoinsNamespaceOf", "RequiresMountsFor", "WantsMountsFor",
	"DefaultDependencies", "StopWhenUnneeded", "RefuseManualStart", "RefuseManualStop",
}

// unmappedReason says why a directive without a socketd equivalent is
// left out.
func unmappedReason(key string) string {
	if r, ok := reasons[key]; ok {
		return r
	}
	switch {
	case strings.HasPrefix(key, "Exec"):
		return "socketd runs only ExecStart="
	case strings.HasPrefix(key, "Limit"):
		return "resource limits are not supported"
	case strings.HasPrefix(key, "X-"):
		return "an extension systemd ignores too"
	}
	return "socketd has no equivalent"
}

// reasons say why known directives are left out, where there is more to
// say than that socketd has no equivalent.
var reasons = map[string]string{
	"Documentation":      "socketd keeps no documentation links",
	"Service":            "socketd runs the service given with the socket unit",
	"FileDescriptorName": `socketd names the connection's file descriptor "connection" in LISTEN_FDNAMES`,
	"EnvironmentFile":    "socketd reads no environment files: list the variables in Environment=",
	"UnsetEnvironment":   "a handler's environment holds only what the definition sets or passes",
	"Restart":            "socketd starts a handler for each connection and does not restart it",
	"TimeoutSec":         "it sets the start timeout too: set TimeoutStopSec=",
	"RemainAfterExit":    "socketd starts a handler for each connection",
}

// socketDirective imports a directive of the [Socket] section.
func (im *unitImport) socketDirective(file string, names unitNames, e entry) error {
	s, v := &im.s, e.value
	var err error
	switch e.key {
	case "ListenStream", "ListenDatagram":
		if v == "" {
			s.Listen = nil // any empty Listen*= empties the list
			return nil
		}
		x, err := names.expand(v)
		if err != nil {
			im.note(file, e, err.Error())
			return nil
		}
		return im.listen(file, e, x)
	case "ListenSequentialPacket", "ListenFIFO", "ListenSpecial", "ListenNetlink", "ListenMessageQueue",
		"ListenUSBFunction":
		if v == "" {
			s.Listen = nil
			return nil
		}
		im.note(file, e, "socketd listens on TCP, UDP and unix stream sockets only")
	case "Accept":
		s.Accept, err = optBool(v)
	case "Backlog":
		s.Backlog, err = optUint(v)
	case "BindIPv6Only":
		switch v {
		case "", socketd.BindIPv6Default, socketd.BindIPv6Both, socketd.BindIPv6Only:
			s.BindIPv6Only = v
		default:
			return fmt.Errorf("%q is not one of default, both, ipv6-only", v)
		}
	case "ReusePort":
		s.ReusePort, err = optBool(v)
	case "KeepAlive":
		s.KeepAlive, err = optBool(v)
	case "KeepAliveTimeSec":
		return im.duration(file, e, &s.KeepAliveTime)
	case "KeepAliveIntervalSec":
		return im.duration(file, e, &s.KeepAliveInterval)
	case "KeepAliveProbes":
		s.KeepAliveProbes, err = optUint(v)
	case "NoDelay":
		s.NoDelay, err = optBool(v)
	case "DeferAcceptSec":
		return im.duration(file, e, &s.DeferAccept)
	case "FreeBind":
		s.FreeBind, err = optBool(v)
	case "ReceiveBuffer":
		s.ReceiveBuffer, err = optSize(v)
	case "SendBuffer":
		s.SendBuffer, err = optSize(v)
	case "BindToDevice":
		s.BindToDevice = v
		if v == "*" {
			s.BindToDevice = ""
		}
	case "SocketUser":
		im.expanded(file, names, e, &s.SocketUser)
	case "SocketGroup":
		im.expanded(file, names, e, &s.SocketGroup)
	case "SocketMode":
		if _, err := socketd.ParseSocketMode(v); err != nil {
			return err
		}
		s.SocketMode = v
	case "MaxConnections":
		s.MaxConnections, err = optUint(v)
	case "MaxConnectionsPerSource":
		s.MaxConnectionsPerSource, err = optUint(v)
	case sourcePrefixIPv4Key:
		s.SourcePrefixIPv4, err = optUint(v)
	case sourcePrefixIPv6Key:
		s.SourcePrefixIPv6, err = optUint(v)
	case rateLimitKey:
		s.RateLimit, err = parseRate(v)
	case sourceRateLimitKey:
		s.SourceRateLimit, err = parseRate(v)
	case "IPAddressAllow":
		im.rules(file, e, &s.IPAddressAllow)
	case "IPAddressDeny":
		im.rules(file, e, &s.IPAddressDeny)
	case onLimitKey:
		// socketd's own, which systemd ignores (an X- key): see export.
		s.OnLimit = v
	case limitMessageKey:
		s.LimitMessage = v
	case recordRemoteIPKey:
		s.RecordRemoteIP = v
	case idleTimeoutKey:
		s.IdleTimeout = v
	default:
		im.note(file, e, unmappedReason(e.key))
	}
	return err
}

// rules imports the access rules of an IPAddressAllow= or IPAddressDeny=
// line into list: an empty value empties it, as in systemd, and a rule
// socketd cannot read (systemd ignores those too) is listed.
func (im *unitImport) rules(file string, e entry, list *[]string) {
	if e.value == "" {
		*list = nil
		return
	}
	for _, r := range strings.Fields(e.value) {
		if _, err := socketd.ParseRule(r); err != nil {
			im.noteValue(file, e, r, err.Error())
			continue
		}
		*list = append(*list, r)
	}
}

// listen adds the address of a ListenStream= or ListenDatagram= to the
// socket's listen entries.
func (im *unitImport) listen(file string, e entry, v string) error {
	switch {
	case strings.HasPrefix(v, "vsock:"):
		im.note(file, e, "socketd does not listen on AF_VSOCK")
		return nil
	case e.key == "ListenDatagram" && (v[0] == '/' || v[0] == '@'):
		im.note(file, e, "socketd has no unix datagram sockets")
		return nil
	case strings.HasPrefix(v, "[") && strings.Contains(v, "%"):
		im.note(file, e, "zoned IPv6 addresses are not supported")
		return nil
	case e.key == "ListenStream" && strings.HasPrefix(v, socketd.DatagramPrefix):
		return fmt.Errorf("%q is not a stream address", v)
	}
	if e.key == "ListenDatagram" {
		v = socketd.DatagramPrefix + v
	}
	if _, err := socketd.ParseListen(v); err != nil {
		return err
	}
	im.s.Listen = append(im.s.Listen, v)
	return nil
}

// duration sets *dst to the time span of e; an empty value or zero
// unsets it.
func (im *unitImport) duration(file string, e entry, dst *string) error {
	if e.value == "" {
		*dst = ""
		return nil
	}
	d, infinity, err := parseTimespan(e.value)
	switch {
	case err != nil:
		return err
	case infinity:
		im.note(file, e, "socketd takes no infinite value here: leave it out for the default")
	case d == 0:
		*dst = ""
	default:
		*dst = formatDuration(d)
	}
	return nil
}

// expanded sets *dst to the value of e with its specifiers resolved, or
// lists e if they do not.
func (im *unitImport) expanded(file string, names unitNames, e entry, dst *string) {
	v, err := names.expand(e.value)
	if err != nil {
		im.note(file, e, err.Error())
		return
	}
	*dst = v
}

// finish resolves what depends on the whole of both units, and checks that
// the socket has what it needs.
func (im *unitImport) finish(socketUnit, serviceUnit *unitFile, serviceFile string, names unitNames) error {
	s := &im.s
	if len(s.Listen) == 0 {
		return errorf(socketUnit.sectionLine("Socket"), "the socket unit has no ListenStream= or ListenDatagram= socketd can listen on")
	}
	if len(s.Command) == 0 {
		return errorf(serviceUnit.sectionLine("Service"), "the service has no ExecStart=")
	}
	if e := im.serviceDesc; e != nil {
		if im.description {
			im.note(serviceFile, *e, "the socket unit's Description= describes the socket")
		} else if d, err := names.expand(e.value); err != nil {
			im.note(serviceFile, *e, err.Error())
		} else {
			s.Description = d
		}
	}

	// systemd's defaults: standard input /dev/null; output inherited from
	// the input if that is the socket, else the journal; error output
	// inherited from the output.
	if s.StandardInput == "" {
		s.StandardInput = socketd.StdinNull
	}
	inherited := socketd.StdoutNull // StandardOutput=inherit: the standard input
	s.StandardOutput = socketd.StdoutLog
	if s.StandardInput == socketd.StdinSocket {
		inherited, s.StandardOutput = socketd.StdoutSocket, socketd.StdoutSocket
	}
	if e := im.stdout; e != nil {
		switch out := output(e.value); out {
		case socketd.StderrInherit:
			s.StandardOutput = inherited
		case "":
			s.StandardOutput = socketd.StdoutLog
			im.note(serviceFile, *e, "socketd sends a handler's output to the connection, /dev/null or its log (socket, null or journal): it goes to the log")
		default:
			s.StandardOutput = out
		}
	}
	s.Stderr = socketd.StderrInherit
	if e := im.stderr; e != nil {
		if out := output(e.value); out != "" {
			s.Stderr = out
		} else {
			s.Stderr = socketd.StderrLog
			im.note(serviceFile, *e, "socketd sends a handler's error output to the connection, /dev/null, its log or where its output goes (socket, null, journal or inherit): it goes to the log")
		}
	}
	return nil
}

// optBool parses a boolean setting; empty is systemd's default, false.
func optBool(v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	return parseBool(v)
}

// optUint parses a number setting; empty is the default, 0.
func optUint(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	return parseUint(v)
}

// optSize parses a size setting; empty is the default, 0.
func optSize(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	return parseSize(v)
}

package convert

import "testing"

// TestDetect: units, xinetd blocks and inetd.conf lines are told apart.
func TestDetect(t *testing.T) {
	for text, want := range map[string]string{
		"[Socket]\nListenStream=13063\n":                            FormatSystemd,
		"# hello\n[Unit]\nDescription=x\n":                          FormatSystemd,
		"  [Service]\nExecStart=/bin/true\n":                        FormatSystemd,
		"service daytime\n{\n\tsocket_type = stream\n}\n":           FormatXinetd,
		"defaults\n{\n}\n":                                          FormatXinetd,
		"daytime stream tcp nowait nobody /usr/bin/date date\n":     FormatInetd,
		"service daytime stream tcp nowait nobody /bin/date date\n": FormatInetd, // no block
		"": FormatInetd,
	} {
		if got := Detect(text); got != want {
			t.Errorf("Detect(%q) = %s, want %s", text, got, want)
		}
	}
}

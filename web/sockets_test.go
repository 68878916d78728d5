package web

import (
	"strings"
	"testing"
)

// TestSparkline: the overview's line of connections per minute, with what
// it shows said for screen readers.
func TestSparkline(t *testing.T) {
	counts := make([]int64, 60)
	counts[30], counts[59] = 2, 5
	svg := string(sparkline(counts))
	if !strings.Contains(svg, `aria-label="7 connections in the last hour, at most 5 a minute"`) {
		t.Errorf("sparkline label: %s", svg)
	}
	pts := strings.Fields(between(svg, `points="`, `"`))
	if len(pts) != 60 || pts[59] != "120.0,1.0" || pts[0] != "0.0,23.0" {
		t.Errorf("sparkline points: %v", pts)
	}
	if flat := string(sparkline(make([]int64, 60))); !strings.Contains(flat, "0 connections") {
		t.Errorf("an empty hour: %s", flat)
	}
}

func between(s, start, end string) string {
	_, rest, _ := strings.Cut(s, start)
	v, _, _ := strings.Cut(rest, end)
	return v
}

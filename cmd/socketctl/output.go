package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// table writes aligned columns for people.
type table struct {
	tw *tabwriter.Writer
}

// newTable starts a table with the header, if any.
func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		fmt.Fprintln(t.tw, strings.Join(header, "\t"))
	}
	return t
}

// row adds a row; each value is written as fmt's %v does, with tabs and
// newlines (which would break the columns) as spaces.
func (t *table) row(values ...any) {
	cells := make([]string, len(values))
	for i, v := range values {
		cells[i] = strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' {
				return ' '
			}
			return r
		}, fmt.Sprint(v))
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

// flush writes the table out and returns the exit status.
func (t *table) flush() int {
	if t.tw.Flush() != nil {
		return exitFailure
	}
	return exitOK
}

// printJSON writes v as indented JSON and returns the exit status.
func (c *cli) printJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if enc.Encode(v) != nil {
		return exitFailure
	}
	return exitOK
}

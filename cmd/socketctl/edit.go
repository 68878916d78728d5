package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/socketd/socketd"
)

// runEdit opens a socket's definition in the user's editor and applies what
// is saved. A definition the daemon refuses comes back in the editor with
// the reasons on top, as comments, until it is accepted or left unchanged.
func runEdit(ctx context.Context, c *cli, args []string) int {
	names, status, ok := c.parse(args, 1, 1)
	if !ok {
		return status
	}
	name := names[0]
	// Ctrl-C belongs to the editor while it runs (vi takes it): socketctl
	// goes on with what was saved, each call bounded by --timeout.
	ctx = context.WithoutCancel(ctx)
	s, err := c.client.GetSocket(ctx, name)
	if err != nil {
		return c.fail(err)
	}
	dir, err := os.MkdirTemp("", "socketctl-edit-")
	if err != nil {
		fmt.Fprintf(c.stderr, "socketctl: %v\n", err)
		return exitFailure
	}
	path := filepath.Join(dir, name+".json")
	// The file goes once it is applied or left as it was; an edit that
	// could not be applied stays, and socketctl says where.
	keep := false
	defer func() {
		if keep {
			fmt.Fprintf(c.stderr, "socketctl: your edit is kept in %s\n", path)
			return
		}
		os.RemoveAll(dir)
	}()
	text, problems := definition(s), ""
	for {
		header := "# Edit the definition of " + name + "; save and quit to apply it. Lines starting with # are ignored.\n" +
			"# Leave it unchanged, or empty, to cancel.\n"
		if problems != "" {
			header += "#\n# It was not applied:\n" + commentLines(problems) + "#\n"
		}
		if err := os.WriteFile(path, append([]byte(header), text...), 0o600); err != nil {
			fmt.Fprintf(c.stderr, "socketctl: %v\n", err)
			return exitFailure
		}
		if err := c.runEditor(path); err != nil {
			fmt.Fprintf(c.stderr, "socketctl: %v; nothing was applied\n", err)
			keep = problems != ""
			return exitFailure
		}
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(c.stderr, "socketctl: %v\n", err)
			return exitFailure
		}
		edited := uncomment(b)
		switch {
		case len(bytes.TrimSpace(edited)) == 0:
			fmt.Fprintf(c.stderr, "socketctl: the file is empty: nothing was applied\n")
			return exitFailure
		case bytes.Equal(bytes.TrimSpace(edited), bytes.TrimSpace(text)) && problems == "":
			fmt.Fprintf(c.stdout, "%s unchanged\n", name)
			return exitOK
		case bytes.Equal(bytes.TrimSpace(edited), bytes.TrimSpace(text)):
			fmt.Fprintf(c.stderr, "socketctl: left unchanged: nothing was applied\n")
			keep = true
			return exitFailure
		}
		text = edited
		socks, err := readDefinitions(edited)
		switch {
		case err != nil:
			problems = err.Error()
			continue
		case len(socks) != 1:
			problems = "the file must hold one definition"
			continue
		case socks[0].Name != name:
			problems = fmt.Sprintf("the name is %q: a socket cannot be renamed; create the new one with socketctl apply", socks[0].Name)
			continue
		}
		what, err := c.apply(ctx, socks[0], s.UpdatedAt)
		var se *socketd.Error
		if errors.As(err, &se) && (se.Code == socketd.CodeInvalid || se.Code == socketd.CodeBadRequest) {
			problems = se.Message
			for _, f := range se.Fields {
				problems += "\n" + f.Pointer + ": " + f.Detail
			}
			continue
		}
		if err != nil {
			keep = true
			return c.fail(err)
		}
		fmt.Fprintf(c.stdout, "%s %s\n", name, what)
		return exitOK
	}
}

// runEditor runs the user's editor ($VISUAL, $EDITOR, else Debian's editor
// or vi) on path, through the shell, so that an editor with arguments
// ("code --wait") works.
func (c *cli) runEditor(path string) error {
	editor := firstOf(c.getenv("VISUAL"), c.getenv("EDITOR"))
	if editor == "" {
		editor = "vi"
		if _, err := exec.LookPath("editor"); err == nil {
			editor = "editor"
		}
	}
	cmd := exec.Command("/bin/sh", "-c", editor+` "$1"`, "sh", path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.stdin, c.stdout, c.stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("the editor (%s): %w", editor, err)
	}
	return nil
}

// commentLines turns text into comment lines.
func commentLines(text string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		b.WriteString("#   " + l + "\n")
	}
	return b.String()
}

// uncomment drops the lines of b that start with #: JSON has none.
func uncomment(b []byte) []byte {
	var out []byte
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimLeft(l, " \t"), []byte("#")) {
			out = append(out, l...)
		}
	}
	return out
}

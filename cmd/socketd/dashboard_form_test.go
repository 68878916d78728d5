package main

import (
	"net"
	"os/user"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/api"
	"github.com/socketd/socketd/internal/testhandler"
)

// listening returns the address socket name is bound to, as the API says.
func listening(t *testing.T, c *api.Client, name string) string {
	t.Helper()
	s, err := c.GetSocket(ctxT(t), name)
	if err != nil || s.Status == nil || len(s.Status.Listening) == 0 {
		t.Fatalf("%s is not listening: %+v, %v", name, s.Status, err)
	}
	return s.Status.Listening[0]
}

// fieldInvalid is JavaScript that is true once the form's field id shows
// an error holding text, inside the field's own container, tied to its
// control by aria-describedby and with the control marked aria-invalid.
func fieldInvalid(id, text string) string {
	return `(function () {
		var el = document.getElementById("` + id + `"), err = document.getElementById("` + id + `-error");
		return el !== null && err !== null && err.closest(".field") === el.closest(".field") &&
			err.closest(".field").id === "` + id + `-field" &&
			el.getAttribute("aria-invalid") === "true" &&
			el.getAttribute("aria-describedby").split(" ").includes("` + id + `-error") &&
			err.textContent.includes(` + jsString(text) + `);
	})()`
}

// jsString quotes s as a JavaScript string.
func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// TestDashboardForm: in a real browser, create a socket through the form
// and get its answer over TCP; see invalid input refused with each error
// next to its field and nothing typed lost; edit it; delete it after the
// confirmation.
func TestDashboardForm(t *testing.T) {
	ctx := browser(t)
	dir := t.TempDir()
	m, c := openMain(t, dir)
	base := "http://" + m.API.Addr()
	login(t, ctx, base, readToken(t, dir))

	// Hello World, from the overview's link, typed as a user types.
	if err := chromedp.Run(ctx,
		chromedp.Click(`.toolbar a[href="/ui/new"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#f-name", chromedp.ByQuery),
		chromedp.SendKeys("#f-name", "hello", chromedp.ByQuery),
		chromedp.SendKeys("#f-description", "Hello World for terminal servers", chromedp.ByQuery),
		chromedp.SendKeys("#f-listen", "127.0.0.1:0", chromedp.ByQuery),
		chromedp.SendKeys("#f-command", "/bin/sh\n-c\necho Hello World", chromedp.ByQuery),
		chromedp.SendKeys("#f-environment", "LANG=C.UTF-8", chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "new-socket")
	if err := chromedp.Run(ctx, chromedp.Click(`.form-actions button.primary`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the new socket's page", `location.pathname === "/ui/sockets/hello" && document.querySelector("h1 .state") !== null`)
	s, err := c.GetSocket(ctxT(t), "hello")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/bin/sh", "-c", "echo Hello World"}; strings.Join(s.Command, "|") != strings.Join(want, "|") ||
		s.Environment["LANG"] != "C.UTF-8" || s.Description != "Hello World for terminal servers" {
		t.Errorf("created %+v", s)
	}
	if got := testhandler.Answer(t, listening(t, c, "hello")); got != "Hello World\n" {
		t.Errorf("hello answered %q", got)
	}

	// Invalid input in the edit form: each error next to its field, the
	// group that holds one open, what was typed kept, nothing saved.
	loaded(t, ctx)
	if err := chromedp.Run(ctx,
		chromedp.Click(`.toolbar a[href="/ui/sockets/hello/edit"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#f-listen", chromedp.ByQuery),
		chromedp.Clear("#f-listen", chromedp.ByQuery),
		chromedp.SendKeys("#f-listen", "127.0.0.1:0\nnot-an-address", chromedp.ByQuery),
		chromedp.Clear("#f-command", chromedp.ByQuery),
		chromedp.SendKeys("#f-command", "/nonexistent/hello", chromedp.ByQuery),
		chromedp.Click("#group-isolation > summary", chromedp.ByQuery),
		chromedp.WaitVisible("#f-memory_max", chromedp.ByQuery),
		chromedp.SendKeys("#f-memory_max", "lots", chromedp.ByQuery),
		chromedp.Click(`.form-actions button.primary`, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the listen error", fieldInvalid("f-listen", `line 2: "not-an-address" is not a port`))
	waitJS(t, ctx, "the command error", fieldInvalid("f-command", "line 1: /nonexistent/hello does not exist"))
	waitJS(t, ctx, "the memory cap error, its group open", fieldInvalid("f-memory_max", `"lots" is not bytes`)+
		` && document.getElementById("group-isolation").open`)
	waitJS(t, ctx, "what was typed", `document.getElementById("f-listen").value === "127.0.0.1:0\nnot-an-address" && `+
		`document.getElementById("f-command").value === "/nonexistent/hello" && document.getElementById("f-memory_max").value === "lots" && `+
		`document.getElementById("f-description").value === "Hello World for terminal servers"`)
	waitJS(t, ctx, "a valid field left alone", `!document.getElementById("f-environment").hasAttribute("aria-invalid")`)
	screenshot(t, ctx, "edit-errors")
	if s, err := c.GetSocket(ctxT(t), "hello"); err != nil || s.Command[0] != "/bin/sh" {
		t.Errorf("invalid input changed the socket: %+v, %v", s, err)
	}
	// The summary's links take the keyboard to the field.
	loaded(t, ctx)
	var focused string
	if err := chromedp.Run(ctx, chromedp.Click(`#form-errors a[href="#f-command"]`, chromedp.ByQuery),
		chromedp.Evaluate(`document.activeElement.id`, &focused)); err != nil || focused != "f-command" {
		t.Errorf("the summary's link focused %q, %v", focused, err)
	}

	// Corrected, it saves, and the socket answers anew.
	loaded(t, ctx)
	if err := chromedp.Run(ctx,
		chromedp.Clear("#f-listen", chromedp.ByQuery),
		chromedp.SendKeys("#f-listen", "127.0.0.1:0", chromedp.ByQuery),
		chromedp.Clear("#f-command", chromedp.ByQuery),
		chromedp.SendKeys("#f-command", "/bin/sh\n-c\necho Hello again", chromedp.ByQuery),
		chromedp.Clear("#f-memory_max", chromedp.ByQuery),
		chromedp.Click(`.form-actions button.primary`, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the socket's page after the edit", `location.pathname === "/ui/sockets/hello"`)
	if got := testhandler.Answer(t, listening(t, c, "hello")); got != "Hello again\n" {
		t.Errorf("after the edit hello answered %q", got)
	}

	// Delete, after the confirmation.
	addr := listening(t, c, "hello")
	loaded(t, ctx)
	if err := chromedp.Run(ctx,
		chromedp.Click(`.toolbar a[href="/ui/sockets/hello/delete"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`.confirm button.danger`, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "what deleting does", `document.querySelector(".confirm").textContent.includes("closes at once")`)
	screenshot(t, ctx, "delete")
	if _, err := c.GetSocket(ctxT(t), "hello"); err != nil {
		t.Fatalf("the confirmation page deleted the socket: %v", err)
	}
	loaded(t, ctx)
	if err := chromedp.Run(ctx, chromedp.Click(`.confirm button.danger`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the overview, empty", `location.pathname === "/ui/" && document.querySelector(".empty") !== null`)
	if _, err := c.GetSocket(ctxT(t), "hello"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("after the delete: %v", err)
	}
	if conn, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still takes connections after the delete", addr)
	}
}

// TestDashboardImportLine: in a real browser, preview an inetd.conf line,
// see what it leaves out, import it, and get the imported socket's answer;
// import it again over a change made meanwhile, and see it refused until
// imported from the preview that says what it replaces.
func TestDashboardImportLine(t *testing.T) {
	testhandler.RequireRoot(t) // inetd's lines name the user, which needs root
	ctx := browser(t)
	dir := t.TempDir()
	m, c := openMain(t, dir)
	base := "http://" + m.API.Addr()
	login(t, ctx, base, readToken(t, dir))
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	addr := testhandler.FreePort(t)
	_, port, _ := net.SplitHostPort(addr)
	line := addr + " stream tcp nowait.100 " + me.Username + " /bin/echo hello imported"

	loaded(t, ctx)
	if err := chromedp.Run(ctx,
		chromedp.Click(`.toolbar a[href="/ui/import"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#import-text", chromedp.ByQuery),
		chromedp.Click(`input[name="format"][value="inetd"]`, chromedp.ByQuery),
		chromedp.SendKeys("#import-text", line, chromedp.ByQuery),
		chromedp.Click(`button[value="preview"]`, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	name := "port-" + port
	waitJS(t, ctx, "the preview", `document.querySelector('#import-result article[data-socket="`+name+`"]') !== null`)
	waitJS(t, ctx, "what it leaves out", `Array.from(document.querySelectorAll("#unmapped tbody tr")).some(function (tr) {
		return tr.cells[0].textContent.trim() === "1" && tr.cells[2].textContent.trim() === "wait"; })`)
	waitJS(t, ctx, "the text and format kept", `document.getElementById("import-text").value === `+jsString(line)+
		` && document.querySelector('input[name="format"][value="inetd"]').checked`)
	screenshot(t, ctx, "import")
	if _, err := c.GetSocket(ctxT(t), name); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Fatalf("the preview saved the socket: %v", err)
	}

	loaded(t, ctx)
	if err := chromedp.Run(ctx, chromedp.Click(`button[value="import"]`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the import saved", `document.getElementById("import-saved") !== null && `+
		`document.querySelector('#import-saved a[href="/ui/sockets/`+name+`"]') !== null`)
	if got := testhandler.Answer(t, listening(t, c, name)); got != "imported\n" {
		t.Errorf("%s answered %q", name, got)
	}

	// Changed through the API, then imported again from the same page,
	// which previewed no such socket: nothing is replaced, the page says
	// why with the focus on it, and offers the preview to import from.
	if _, err := c.PatchSocket(ctxT(t), name, map[string]any{"description": "edited by hand"}); err != nil {
		t.Fatal(err)
	}
	loaded(t, ctx)
	if err := chromedp.Run(ctx, chromedp.Click(`button[value="import"]`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the refusal, focused", `document.activeElement !== null && document.activeElement.id === "import-error" && `+
		`document.getElementById("import-error").textContent.includes("exists already") && `+
		`document.querySelector('#import-replaces a[href="/ui/sockets/`+name+`"]') !== null`)
	if s, err := c.GetSocket(ctxT(t), name); err != nil || s.Description != "edited by hand" {
		t.Fatalf("an import refused replaced %s: %+v, %v", name, s, err)
	}
	loaded(t, ctx)
	if err := chromedp.Run(ctx, chromedp.Click(`button[value="import"]`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the import saved again", `document.getElementById("import-saved") !== null`)
	if s, err := c.GetSocket(ctxT(t), name); err != nil || s.Description == "edited by hand" {
		t.Errorf("the import from the preview did not replace %s: %+v, %v", name, s, err)
	}
}

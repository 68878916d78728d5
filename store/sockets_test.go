package store

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/socketd/socketd"
)

func testSocket(name string) socketd.Socket {
	s := socketd.NewSocket()
	s.Name = name
	s.Listen = []string{"127.0.0.1:0"}
	s.Command = []string{"/bin/cat"}
	return s
}

// fullSocket sets every stored field to something other than its default.
func fullSocket(name string) socketd.Socket {
	return socketd.Socket{
		Name:             name,
		Description:      "Hello \"World\" ✓\nsecond line",
		Listen:           []string{"13063", "127.0.0.1:13064", "[::1]:0", "[::]:13065"},
		Accept:           false,
		Command:          []string{"/bin/sh", "-c", "echo 'hi' \"$X\"", ""},
		Environment:      map[string]string{"X": "1", "PATH": "/usr/bin", "EMPTY": "", "U": "ü=∑"},
		WorkingDirectory: "/tmp",
		IgnoreExitStatus: true,
		Stderr:           socketd.StderrSocket,
		Enabled:          false,
	}
}

// sameDefinition compares a and b but for the fields the store sets.
func sameDefinition(t *testing.T, got, want socketd.Socket) {
	t.Helper()
	got.CreatedAt, got.UpdatedAt, got.Status = time.Time{}, time.Time{}, nil
	want.CreatedAt, want.UpdatedAt, want.Status = time.Time{}, time.Time{}, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("definition\n got %#v\nwant %#v", got, want)
	}
}

func TestSocketRoundTripKeepsEveryField(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	for _, want := range []socketd.Socket{
		fullSocket("full"),
		testSocket("defaults"),
		{Name: "zero"}, // every field at its zero value, nil slices included
		{Name: "empty-lists", Listen: []string{}, Command: []string{}},
	} {
		created, err := db.CreateSocket(ctx, want)
		if err != nil {
			t.Fatalf("CreateSocket %s: %v", want.Name, err)
		}
		sameDefinition(t, created, want)
		got, err := db.GetSocket(ctx, want.Name)
		if err != nil {
			t.Fatalf("GetSocket %s: %v", want.Name, err)
		}
		sameDefinition(t, got, want)
		if !reflect.DeepEqual(got, created) {
			t.Errorf("GetSocket %s\n got %#v\nwant what CreateSocket returned %#v", want.Name, got, created)
		}
		if got.CreatedAt.Location() != time.UTC || got.CreatedAt.IsZero() || !got.CreatedAt.Equal(got.UpdatedAt) {
			t.Errorf("%s: created %v, updated %v", want.Name, got.CreatedAt, got.UpdatedAt)
		}
	}
}

func TestSocketStatusIsNeverStored(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	s := testSocket("st")
	s.Status = &socketd.SocketStatus{State: socketd.SocketFailed, Error: "bind: in use", Accepted: 7}
	created, err := db.CreateSocket(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if created.Status != nil {
		t.Errorf("CreateSocket returned a status: %+v", created.Status)
	}
	if _, _, err := db.PutSocket(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UpdateSocket(ctx, "st", func(s *socketd.Socket) error {
		s.Status = &socketd.SocketStatus{State: socketd.SocketListening}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var def string
	if err := db.r.QueryRow(`SELECT definition FROM sockets WHERE name = 'st'`).Scan(&def); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"status"`, `"created_at"`, `"updated_at"`} {
		if strings.Contains(def, field) {
			t.Errorf("stored definition holds %s: %s", field, def)
		}
	}
	got, err := db.GetSocket(ctx, "st")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != nil {
		t.Errorf("GetSocket returned a status: %+v", got.Status)
	}
}

func TestCreateSocketConflict(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	first, err := db.CreateSocket(ctx, testSocket("dup"))
	if err != nil {
		t.Fatal(err)
	}
	other := fullSocket("dup")
	_, err = db.CreateSocket(ctx, other)
	wantCode(t, err, socketd.CodeConflict)
	got, err := db.GetSocket(ctx, "dup")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, first) {
		t.Errorf("a refused create changed the socket:\n got %#v\nwant %#v", got, first)
	}
}

func TestSocketNotFound(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	_, err := db.GetSocket(ctx, "nope")
	wantCode(t, err, socketd.CodeNotFound)
	err = db.DeleteSocket(ctx, "nope")
	wantCode(t, err, socketd.CodeNotFound)
	called := false
	_, err = db.UpdateSocket(ctx, "nope", func(*socketd.Socket) error { called = true; return nil })
	wantCode(t, err, socketd.CodeNotFound)
	if called {
		t.Error("UpdateSocket called fn for a missing socket")
	}
}

func TestSocketInvalidName(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	for _, name := range []string{"", "Upper", "a/b", "-x", strings.Repeat("a", 64)} {
		_, err := db.CreateSocket(ctx, testSocket(name))
		wantCode(t, err, socketd.CodeInvalid)
		_, _, err = db.PutSocket(ctx, testSocket(name))
		wantCode(t, err, socketd.CodeInvalid)
	}
	ss, err := db.ListSockets(ctx)
	if err != nil || len(ss) != 0 {
		t.Errorf("sockets after invalid writes: %v, %v", ss, err)
	}
}

func TestListSockets(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	ss, err := db.ListSockets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ss == nil || len(ss) != 0 {
		t.Errorf("ListSockets of an empty store: %#v, want an empty slice", ss)
	}
	for _, name := range []string{"m", "b", "z", "a.1", "a-1", "a"} {
		if _, err := db.CreateSocket(ctx, fullSocket(name)); err != nil {
			t.Fatal(err)
		}
	}
	ss, err = db.ListSockets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range ss {
		names = append(names, s.Name)
		sameDefinition(t, s, fullSocket(s.Name))
	}
	if want := []string{"a", "a-1", "a.1", "b", "m", "z"}; !reflect.DeepEqual(names, want) {
		t.Errorf("ListSockets order %v, want %v", names, want)
	}
}

func TestPutSocket(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	first, created, err := db.PutSocket(ctx, testSocket("put"))
	if err != nil || !created {
		t.Fatalf("first PutSocket: created %v, err %v", created, err)
	}
	repl := fullSocket("put")
	repl.CreatedAt = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) // ignored
	second, created, err := db.PutSocket(ctx, repl)
	if err != nil || created {
		t.Fatalf("second PutSocket: created %v, err %v", created, err)
	}
	sameDefinition(t, second, fullSocket("put"))
	if !second.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("CreatedAt moved from %v to %v", first.CreatedAt, second.CreatedAt)
	}
	if !second.UpdatedAt.After(first.UpdatedAt) {
		t.Errorf("UpdatedAt %v is not after %v", second.UpdatedAt, first.UpdatedAt)
	}
	got, err := db.GetSocket(ctx, "put")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, second) {
		t.Errorf("GetSocket\n got %#v\nwant %#v", got, second)
	}
}

// TestPutSockets: sockets put together are created or replaced in one
// transaction, each with what it was; check sees what is stored and can
// refuse; a socket that cannot be stored undoes the others.
func TestPutSockets(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	old, err := db.CreateSocket(ctx, testSocket("old"))
	if err != nil {
		t.Fatal(err)
	}
	var seen []*socketd.Socket
	saved, created, err := db.PutSockets(ctx, []socketd.Socket{fullSocket("new"), fullSocket("old")},
		func(stored []*socketd.Socket) error {
			seen = stored
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[0] != nil || seen[1] == nil || !reflect.DeepEqual(*seen[1], old) {
		t.Errorf("check saw %v, want nothing for new and %+v for old", seen, old)
	}
	if !reflect.DeepEqual(created, []bool{true, false}) {
		t.Errorf("created %v, want [true false]", created)
	}
	for i, name := range []string{"new", "old"} {
		sameDefinition(t, saved[i], fullSocket(name))
		got, err := db.GetSocket(ctx, name)
		if err != nil || !reflect.DeepEqual(got, saved[i]) {
			t.Errorf("stored %s: %+v, %v; want %+v", name, got, err, saved[i])
		}
	}
	if !saved[1].CreatedAt.Equal(old.CreatedAt) || !saved[1].UpdatedAt.After(old.UpdatedAt) {
		t.Errorf("old replaced: created %v, updated %v; was %v, %v", saved[1].CreatedAt, saved[1].UpdatedAt, old.CreatedAt, old.UpdatedAt)
	}

	// check refuses: nothing is written, and its error comes back as is.
	refused := socketd.Errorf(socketd.CodeConflict, "changed meanwhile")
	_, _, err = db.PutSockets(ctx, []socketd.Socket{testSocket("third"), testSocket("old")},
		func([]*socketd.Socket) error { return refused })
	if err != refused {
		t.Errorf("a refusing check: %v", err)
	}
	// A name no socket can have, after two that are fine: neither stays.
	_, _, err = db.PutSockets(ctx, []socketd.Socket{testSocket("third"), testSocket("old"), testSocket("Bad/name")}, nil)
	wantCode(t, err, socketd.CodeInvalid)
	if _, err := db.GetSocket(ctx, "third"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("a failed put left third: %v", err)
	}
	if got, err := db.GetSocket(ctx, "old"); err != nil || !reflect.DeepEqual(got, saved[1]) {
		t.Errorf("a failed put changed old: %+v, %v", got, err)
	}
}

func TestUpdateSocket(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	before, err := db.CreateSocket(ctx, fullSocket("upd"))
	if err != nil {
		t.Fatal(err)
	}
	after, err := db.UpdateSocket(ctx, "upd", func(s *socketd.Socket) error {
		s.Enabled = true
		s.Environment["NEW"] = "yes"
		s.Listen[0] = "9999"
		s.CreatedAt = time.Time{} // ignored
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := fullSocket("upd")
	want.Enabled = true
	want.Environment["NEW"] = "yes"
	want.Listen[0] = "9999"
	sameDefinition(t, after, want)
	if !after.CreatedAt.Equal(before.CreatedAt) || !after.UpdatedAt.After(before.UpdatedAt) {
		t.Errorf("times: before %v/%v, after %v/%v", before.CreatedAt, before.UpdatedAt, after.CreatedAt, after.UpdatedAt)
	}
	got, err := db.GetSocket(ctx, "upd")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, after) {
		t.Errorf("GetSocket\n got %#v\nwant %#v", got, after)
	}
}

func TestUpdateSocketAbortLeavesRowUnchanged(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	before, err := db.CreateSocket(ctx, fullSocket("abort"))
	if err != nil {
		t.Fatal(err)
	}
	abort := socketd.Errorf(socketd.CodeInvalid, "no")
	_, err = db.UpdateSocket(ctx, "abort", func(s *socketd.Socket) error {
		s.Description = "changed"
		s.Listen[0] = "1"
		s.Environment["X"] = "changed"
		return abort
	})
	if err != abort {
		t.Fatalf("UpdateSocket returned %v, want fn's error as is", err)
	}
	// Renaming is refused, and changes nothing either.
	_, err = db.UpdateSocket(ctx, "abort", func(s *socketd.Socket) error {
		s.Name = "other"
		s.Description = "changed"
		return nil
	})
	wantCode(t, err, socketd.CodeInvalid)
	var se *socketd.Error
	if !errors.As(err, &se) || len(se.Fields) != 1 || se.Fields[0].Pointer != "/name" {
		t.Errorf("rename error %#v does not point at /name", err)
	}
	got, err := db.GetSocket(ctx, "abort")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, before) {
		t.Errorf("an aborted update changed the row:\n got %#v\nwant %#v", got, before)
	}
	if _, err := db.GetSocket(ctx, "other"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("rename created a socket: %v", err)
	}
}

func TestDeleteSocketKeepsHistory(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	if _, err := db.CreateSocket(ctx, testSocket("gone")); err != nil {
		t.Fatal(err)
	}
	c := &socketd.Connection{Socket: "gone", RemoteIP: "127.0.0.1"}
	if err := db.BeginConnection(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteSocket(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	_, err := db.GetSocket(ctx, "gone")
	wantCode(t, err, socketd.CodeNotFound)
	if err := db.DeleteSocket(ctx, "gone"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("second delete: %v", err)
	}
	if _, err := db.GetConnection(ctx, c.ID); err != nil {
		t.Errorf("connection of a deleted socket: %v", err)
	}
	// The name can be used again.
	if _, err := db.CreateSocket(ctx, testSocket("gone")); err != nil {
		t.Errorf("create after delete: %v", err)
	}
}

// TestPutSocketsNameTwice: a socket given twice in one put is refused, and
// nothing is written.
func TestPutSocketsNameTwice(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	_, _, err := db.PutSockets(ctx, []socketd.Socket{testSocket("a"), testSocket("b"), testSocket("a")}, nil)
	if socketd.ErrorCode(err) != socketd.CodeInvalid {
		t.Fatalf("a name twice: %v, want invalid", err)
	}
	if socks, _ := db.ListSockets(ctx); len(socks) != 0 {
		t.Errorf("a refused put wrote %d sockets", len(socks))
	}
}

package store

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/socketd/socketd"
)

func TestTokens(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	if has, err := db.HasTokens(ctx); err != nil || has {
		t.Fatalf("HasTokens on a fresh store = %v, %v", has, err)
	}
	if ok, err := db.CheckToken(ctx, "anything"); err != nil || ok {
		t.Fatalf("CheckToken with no tokens = %v, %v", ok, err)
	}
	const token = "s3cr3t-0123456789abcdef"
	if err := db.AddToken(ctx, "admin", token); err != nil {
		t.Fatal(err)
	}
	if has, err := db.HasTokens(ctx); err != nil || !has {
		t.Fatalf("HasTokens after AddToken = %v, %v", has, err)
	}
	for _, tc := range []struct {
		token string
		want  bool
	}{
		{token, true},
		{token + "x", false},
		{token[:len(token)-1], false},
		{"S3CR3T-0123456789ABCDEF", false},
		{"", false},
	} {
		if ok, err := db.CheckToken(ctx, tc.token); err != nil || ok != tc.want {
			t.Errorf("CheckToken(%q) = %v, %v; want %v", tc.token, ok, err, tc.want)
		}
	}
	if err := db.AddToken(ctx, "second", "another-token"); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{token, "another-token"} {
		if ok, err := db.CheckToken(ctx, tok); err != nil || !ok {
			t.Errorf("CheckToken(%q) = %v, %v", tok, ok, err)
		}
	}

	err := db.AddToken(ctx, "again", token)
	wantCode(t, err, socketd.CodeConflict)
	wantCode(t, db.AddToken(ctx, "", "x"), socketd.CodeInvalid)
	wantCode(t, db.AddToken(ctx, "empty", ""), socketd.CodeInvalid)

	// Only the hash is stored.
	rows, err := db.r.QueryContext(ctx, `SELECT name, hash FROM api_tokens ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var hashes [][]byte
	for rows.Next() {
		var name string
		var hash []byte
		if err := rows.Scan(&name, &hash); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(hash, []byte(token)) || bytes.Contains(hash, []byte("another-token")) {
			t.Errorf("token %s stored in the clear", name)
		}
		hashes = append(hashes, hash)
	}
	sum := sha256.Sum256([]byte(token))
	if len(hashes) != 2 || !bytes.Equal(hashes[0], sum[:]) {
		t.Errorf("stored hashes %x, want the SHA-256 of the token first", hashes)
	}
}

func TestSetTokenReplacesByName(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	if err := db.SetToken(ctx, "admin", "first-token"); err != nil {
		t.Fatal(err)
	}
	if err := db.AddToken(ctx, "other", "other-token"); err != nil {
		t.Fatal(err)
	}
	if err := db.SetToken(ctx, "admin", "second-token"); err != nil {
		t.Fatal(err)
	}
	for tok, want := range map[string]bool{"first-token": false, "second-token": true, "other-token": true} {
		if ok, err := db.CheckToken(ctx, tok); err != nil || ok != want {
			t.Errorf("CheckToken(%q) = %v, %v; want %v", tok, ok, err, want)
		}
	}
	wantCode(t, db.SetToken(ctx, "", "x"), socketd.CodeInvalid)
	wantCode(t, db.SetToken(ctx, "admin", ""), socketd.CodeInvalid)
}

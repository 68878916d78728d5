package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// adminTokenName names the admin token in the store.
const adminTokenName = "admin"

// ensureAdminToken makes sure an admin token exists. On first start it
// generates one, stores only its hash and writes the token itself to
// admin.token with mode 0600. When the file is gone later, or holds a token
// the database does not know, a new token replaces the old one: whoever can
// change files in the data dir owns the daemon anyway, and this is how an
// operator rotates a lost token.
func (m *Main) ensureAdminToken(ctx context.Context) error {
	path := m.Config.TokenPath()
	has, err := m.DB.HasTokens(ctx)
	if err != nil {
		return err
	}
	b, readErr := os.ReadFile(path)
	switch {
	case readErr != nil && !errors.Is(readErr, fs.ErrNotExist):
		return fmt.Errorf("admin token: %w", readErr)
	case readErr == nil && has:
		// The file must hold a token the store knows: a crash in the middle
		// of a rotation, or a database restored from a backup, would
		// otherwise leave a token that is always refused.
		valid, err := m.DB.CheckToken(ctx, strings.TrimSpace(string(b)))
		if err != nil {
			return err
		}
		if valid {
			m.Logger.Info("admin token", "file", path)
			return nil
		}
		m.Logger.Warn("admin.token holds a token the database does not know: replacing it", "file", path)
	}
	token, err := newToken()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if err := m.DB.SetToken(ctx, adminTokenName, token); err != nil {
		os.Remove(path)
		return err
	}
	if has {
		m.Logger.Warn("a new admin token replaces the old one", "file", path)
	} else {
		m.Logger.Info("generated the admin token", "file", path)
	}
	return nil
}

// newToken returns 256 random bits, URL-safe.
func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so that a crash never leaves a half-written file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

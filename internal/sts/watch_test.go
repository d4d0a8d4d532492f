package sts

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podiam/podiam/test/testutil"
)

// roleConfig is a valid config with one role of that name.
func roleConfig(name string) string {
	return withTrustPolicy("accounts:\n- id: \"111122223333\"\n  roles:\n  - {name: " + name + ", trustPolicy: $TP}\n")
}

// hasRole reports whether the config has the role name in account 111122223333.
func hasRole(c *Config, name string) bool {
	return c.RoleByARN("arn:aws:iam::111122223333:role/"+name) != nil
}

// startWatcher starts a watcher on path, running until the test ends, and returns it
// with the channel of its reload results and its log.
func startWatcher(t *testing.T, path string, poll time.Duration) (*Watcher, <-chan error, *testutil.SyncBuffer) {
	t.Helper()
	reloads := make(chan error, 16)
	logs := &testutil.SyncBuffer{}
	w, err := NewWatcher(WatcherOptions{
		Path:         path,
		PollInterval: poll,
		Logger:       slog.New(slog.NewTextHandler(logs, nil)),
		OnReload:     func(err error) { reloads <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w, reloads, logs
}

// nextReload waits for the watcher's next reload attempt.
func nextReload(t *testing.T, reloads <-chan error) error {
	t.Helper()
	select {
	case err := <-reloads:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s")
		return nil
	}
}

// writeConfigFile replaces the file atomically (write, then rename), as editors and
// config tools do, so the watcher never sees a half-written version: that one would be
// rejected, then fixed by the next event, and the test would see two reloads.
func writeConfigFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestNewWatcherRefusesBadStart(t *testing.T) {
	dir := writeFiles(t, map[string]string{"bad.yaml": "accounts: [{id: nope}]\n"})
	tests := []struct{ name, path, want string }{
		{"no path", "", "sts config path is empty"},
		{"missing file", filepath.Join(dir, "missing.yaml"), "no such file or directory"},
		{"invalid file", filepath.Join(dir, "bad.yaml"), `accounts[0].id: "nope" is not a 12-digit account id`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewWatcher(WatcherOptions{Path: tc.path}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewWatcher = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// A bad version between two good ones is rejected whole, logged and reported, and the
// last good config stays until the next good one. Polling is off (an hour), so the
// file-system events alone drive the reloads.
func TestWatcherKeepsLastGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sts.yaml")
	writeConfigFile(t, path, roleConfig("first"))
	w, reloads, logs := startWatcher(t, path, time.Hour)
	if !hasRole(w.Current(), "first") {
		t.Fatal("initial config not in effect")
	}

	steps := []struct {
		name, content string
		wantErr       string // "" for a good version
		wantRole      string // in effect afterwards
	}{
		{"good", roleConfig("second"), "", "second"},
		{"bad role duration", strings.Replace(roleConfig("third"), "name: third", "name: third, maxSessionDuration: 50000", 1),
			"accounts[0].roles[0].maxSessionDuration: 50000 is outside 3600..43200", "second"},
		{"not YAML", "accounts: [", "not valid YAML", "second"},
		{"good again", roleConfig("fourth"), "", "fourth"},
	}
	for _, st := range steps {
		writeConfigFile(t, path, st.content)
		err := nextReload(t, reloads)
		switch {
		case st.wantErr == "" && err != nil:
			t.Fatalf("%s: reload failed: %v", st.name, err)
		case st.wantErr != "" && (err == nil || !strings.Contains(err.Error(), st.wantErr)):
			t.Fatalf("%s: reload error %v, want one containing %q", st.name, err, st.wantErr)
		}
		if c := w.Current(); !hasRole(c, st.wantRole) || len(c.Accounts[0].Roles) != 1 {
			t.Fatalf("%s: config in effect lacks role %s", st.name, st.wantRole)
		}
	}
	if log := logs.String(); !strings.Contains(log, "rejected sts config; keeping the last good one") || !strings.Contains(log, "50000 is outside") {
		t.Errorf("log lacks the rejection and its reason:\n%s", log)
	}
}

// The kubelet updates a ConfigMap volume by pointing the ..data symlink at a new
// timestamped directory; the config file is a symlink through ..data.
func TestWatcherConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeConfigFile(t, filepath.Join(dir, name, "sts.yaml"), content)
	}
	swap := func(name string) {
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_11_26_01", roleConfig("first"))
	if err := os.Symlink("..2026_11_26_01", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "sts.yaml"), filepath.Join(dir, "sts.yaml")); err != nil {
		t.Fatal(err)
	}
	w, reloads, _ := startWatcher(t, filepath.Join(dir, "sts.yaml"), time.Hour)

	steps := []struct {
		version, content, wantRole string
		wantErr                    bool
	}{
		{"..2026_11_26_02", roleConfig("second"), "second", false},
		{"..2026_11_26_03", "accounts: []\n", "second", true},
		{"..2026_11_26_04", roleConfig("third"), "third", false},
	}
	prev := "..2026_11_26_01"
	for _, st := range steps {
		version(st.version, st.content)
		swap(st.version)
		if err := os.RemoveAll(filepath.Join(dir, prev)); err != nil {
			t.Fatal(err)
		}
		prev = st.version
		if err := nextReload(t, reloads); (err != nil) != st.wantErr {
			t.Fatalf("%s: reload error %v, want error %v", st.version, err, st.wantErr)
		}
		if !hasRole(w.Current(), st.wantRole) {
			t.Fatalf("%s: config in effect lacks role %s", st.version, st.wantRole)
		}
	}
}

// A file removed (or unreadable) keeps the last good config; it is loaded again when
// it comes back. Polling, not events, finds the change here: the file lives in a
// directory that is replaced whole, which the directory watch cannot follow.
func TestWatcherPollsAndSurvivesRemoval(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "conf")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sts.yaml")
	writeConfigFile(t, path, roleConfig("first"))
	w, reloads, _ := startWatcher(t, path, 50*time.Millisecond)

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := nextReload(t, reloads); err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Fatalf("reload after removal = %v, want a missing-file error", err)
	}
	if !hasRole(w.Current(), "first") {
		t.Fatal("last good config dropped when the file disappeared")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfigFile(t, path, roleConfig("second"))
	if err := nextReload(t, reloads); err != nil {
		t.Fatalf("reload of the recreated file: %v", err)
	}
	if !hasRole(w.Current(), "second") {
		t.Fatal("recreated file not loaded")
	}
	// An unchanged file is not reloaded on every poll.
	select {
	case err := <-reloads:
		t.Fatalf("reload of an unchanged file: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
}

// A change to a file the config refers to (here a trust policy file) reloads the
// config at the next poll, though the config file itself is unchanged; a broken one
// keeps the last good config.
func TestWatcherFollowsReferredFiles(t *testing.T) {
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "trust.json")
	const allowAccount = `{"Statement": {"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "sts:AssumeRole"}}`
	const allowUser = `{"Statement": {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/ci"}, "Action": "sts:AssumeRole"}}`
	writeConfigFile(t, policyPath, allowAccount)
	path := filepath.Join(dir, "sts.yaml")
	writeConfigFile(t, path, "accounts:\n- id: \"111122223333\"\n  roles:\n  - {name: app, trustPolicyFile: trust.json}\n")
	w, reloads, _ := startWatcher(t, path, 50*time.Millisecond)
	policyOf := func() string {
		return string(w.Current().RoleByARN("arn:aws:iam::111122223333:role/app").PolicyDocument)
	}
	if policyOf() != allowAccount {
		t.Fatalf("initial policy %s", policyOf())
	}
	writeConfigFile(t, policyPath, `{"Statement": []}`)
	if err := nextReload(t, reloads); err == nil || !strings.Contains(err.Error(), "accounts[0].roles[0].trustPolicyFile: Statement: ") {
		t.Fatalf("reload with a broken policy file = %v", err)
	}
	if policyOf() != allowAccount {
		t.Fatal("last good policy dropped")
	}
	writeConfigFile(t, policyPath, allowUser)
	if err := nextReload(t, reloads); err != nil {
		t.Fatal(err)
	}
	if policyOf() != allowUser {
		t.Fatalf("policy %s after the file changed", policyOf())
	}
}

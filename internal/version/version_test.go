package version

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

const rev = "9a8ac9b4c1d2e3f4a5b6c7d8e9f0011223344556" // 40 hex digits, as git prints

func buildInfo(mainVersion string, settings ...string) *debug.BuildInfo {
	bi := &debug.BuildInfo{GoVersion: "go1.26.10", Main: debug.Module{Path: "github.com/podiam/podiam", Version: mainVersion}}
	for i := 0; i+1 < len(settings); i += 2 {
		bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
	}
	return bi
}

func TestResolve(t *testing.T) {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name                                      string
		version, commit, date                     string
		bi                                        *debug.BuildInfo
		wantVersion, wantCommit, wantDate, wantGo string
	}{
		{
			name: "no build info, nothing linked", version: "dev",
			wantVersion: "dev", wantGo: runtime.Version(),
		},
		{
			name: "empty linker version reads as dev", version: "",
			wantVersion: "dev", wantGo: runtime.Version(),
		},
		{
			name: "linker values win over build info", version: "v0.1.0", commit: "abc", date: "2026-11-27T04:00:00Z",
			bi:          buildInfo("v0.0.9", "vcs.revision", rev, "vcs.time", "2026-01-01T00:00:00Z", "vcs.modified", "true"),
			wantVersion: "v0.1.0", wantCommit: "abc", wantDate: "2026-11-27T04:00:00Z", wantGo: "go1.26.10",
		},
		{
			name: "go install of a tagged module", version: "dev",
			bi:          buildInfo("v0.1.0"),
			wantVersion: "v0.1.0", wantGo: "go1.26.10",
		},
		{
			name: "build outside a module's checkout: (devel) stays dev, vcs fills commit and date", version: "dev",
			bi:          buildInfo("(devel)", "vcs", "git", "vcs.revision", rev, "vcs.time", "2026-11-26T10:00:00Z", "vcs.modified", "false"),
			wantVersion: "dev", wantCommit: rev, wantDate: "2026-11-26T10:00:00Z", wantGo: "go1.26.10",
		},
		{
			name: "modified checkout is dirty", version: "dev",
			bi:          buildInfo("(devel)", "vcs.revision", rev, "vcs.modified", "true"),
			wantVersion: "dev", wantCommit: rev + "-dirty", wantGo: "go1.26.10",
		},
		{
			name: "linked commit of a modified checkout is dirty", version: "v0.1.0", commit: rev,
			bi:          buildInfo("v0.1.0+dirty", "vcs.revision", rev, "vcs.modified", "true"),
			wantVersion: "v0.1.0", wantCommit: rev + "-dirty", wantGo: "go1.26.10",
		},
		{
			name: "linked dirty commit stays as linked", version: "v0.1.0", commit: rev + "-dirty",
			bi:          buildInfo("v0.1.0+dirty", "vcs.revision", rev, "vcs.modified", "true"),
			wantVersion: "v0.1.0", wantCommit: rev + "-dirty", wantGo: "go1.26.10",
		},
		{
			name: "linked commit of a clean checkout", version: "v0.1.0", commit: rev,
			bi:          buildInfo("v0.1.0", "vcs.revision", rev, "vcs.modified", "false"),
			wantVersion: "v0.1.0", wantCommit: rev, wantGo: "go1.26.10",
		},
		{
			name: "linked commit the checkout is not at is taken as linked", version: "v0.1.0", commit: rev,
			bi:          buildInfo("(devel)", "vcs.revision", "ffff", "vcs.modified", "true"),
			wantVersion: "v0.1.0", wantCommit: rev, wantGo: "go1.26.10",
		},
		{
			name: "checkout with no tag before it (Go 1.24+): the pseudo-version is not a version", version: "dev",
			bi:          buildInfo("v0.0.0-20261126100000-9a8ac9b4c1d2+dirty", "vcs.revision", rev, "vcs.time", "2026-11-26T10:00:00Z", "vcs.modified", "true"),
			wantVersion: "dev", wantCommit: rev + "-dirty", wantDate: "2026-11-26T10:00:00Z", wantGo: "go1.26.10",
		},
		{
			name: "checkout after a tag (Go 1.24+): the pseudo-version names it", version: "dev",
			bi:          buildInfo("v0.1.1-0.20261126100000-9a8ac9b4c1d2", "vcs.revision", rev, "vcs.time", "2026-11-26T10:00:00Z", "vcs.modified", "false"),
			wantVersion: "v0.1.1-0.20261126100000-9a8ac9b4c1d2", wantCommit: rev, wantDate: "2026-11-26T10:00:00Z", wantGo: "go1.26.10",
		},
		{
			name: "modified checkout at a tag (Go 1.24+)", version: "dev",
			bi:          buildInfo("v0.1.0+dirty", "vcs.revision", rev, "vcs.modified", "true"),
			wantVersion: "v0.1.0+dirty", wantCommit: rev + "-dirty", wantGo: "go1.26.10",
		},
		{
			name: "linked version, date from vcs", version: "v0.2.0",
			bi:          buildInfo("", "vcs.time", "2026-11-26T10:00:00Z"),
			wantVersion: "v0.2.0", wantDate: "2026-11-26T10:00:00Z", wantGo: "go1.26.10",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := resolve(tc.version, tc.commit, tc.date, tc.bi)
			want := Info{Version: tc.wantVersion, Commit: tc.wantCommit, Date: tc.wantDate, GoVersion: tc.wantGo, Platform: platform}
			if got != want {
				t.Errorf("resolve() = %+v\nwant       %+v", got, want)
			}
		})
	}
}

func TestInfoString(t *testing.T) {
	for _, tc := range []struct {
		name string
		info Info
		want string
	}{
		{"everything", Info{"v0.1.0", rev, "2026-11-27T04:00:00Z", "go1.26.10", "linux/arm64"},
			"podiam v0.1.0 (commit 9a8ac9b4c1d2, built 2026-11-27T04:00:00Z) go1.26.10 linux/arm64"},
		{"dirty commit", Info{"v0.1.0", rev + "-dirty", "", "go1.26.10", "linux/amd64"},
			"podiam v0.1.0 (commit 9a8ac9b4c1d2-dirty) go1.26.10 linux/amd64"},
		{"sha256 repository commit", Info{"v0.1.0", strings.Repeat("ab", 32), "", "go1.26.10", "linux/amd64"},
			"podiam v0.1.0 (commit abababababab) go1.26.10 linux/amd64"},
		{"commit that is not hex, as linked", Info{"v0.1.0", "release-candidate-branch-1", "", "go1.26.10", "linux/amd64"},
			"podiam v0.1.0 (commit release-candidate-branch-1) go1.26.10 linux/amd64"},
		{"commit only", Info{"dev", "abc-dirty", "", "go1.26.10", "linux/amd64"},
			"podiam dev (commit abc-dirty) go1.26.10 linux/amd64"},
		{"date only", Info{"dev", "", "2026-11-27T04:00:00Z", "go1.26.10", "linux/amd64"},
			"podiam dev (built 2026-11-27T04:00:00Z) go1.26.10 linux/amd64"},
		{"nothing known", Info{"dev", "", "", "go1.26.10", "darwin/arm64"},
			"podiam dev go1.26.10 darwin/arm64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.info.String(); got != tc.want {
				t.Errorf("String() = %q\nwant       %q", got, tc.want)
			}
		})
	}
}

// TestInfoJSON: the JSON keys are part of the command's output contract.
func TestInfoJSON(t *testing.T) {
	info := Info{"v0.1.0", rev, "2026-11-27T04:00:00Z", "go1.26.10", "linux/amd64"}
	var got map[string]string
	if err := json.Unmarshal(info.JSON(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"version": "v0.1.0", "commit": rev, "date": "2026-11-27T04:00:00Z", "goVersion": "go1.26.10", "platform": "linux/amd64"}
	if len(got) != len(want) {
		t.Fatalf("JSON has %d keys, want %d: %s", len(got), len(want), info.JSON())
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// TestGetUsesLinkerVersion: Get reads the package variables the linker sets.
// A test binary has no vcs stamp, so what it reports is the variables'.
func TestGetUsesLinkerVersion(t *testing.T) {
	got := Get()
	if got.Version != Version || got.GoVersion == "" || got.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("Get() = %+v with Version %q", got, Version)
	}
	if String() != got.String() {
		t.Errorf("String() = %q, Get().String() = %q", String(), got.String())
	}
}

// Package version describes the build: release version, VCS commit, build
// date, Go version and platform. Release builds set the first three with the
// linker (`make build` and `make image` do):
//
//	go build -trimpath -ldflags "-X github.com/podiam/podiam/internal/version.Version=v0.1.0 \
//	  -X github.com/podiam/podiam/internal/version.Commit=$(git rev-parse HEAD) \
//	  -X github.com/podiam/podiam/internal/version.Date=2026-11-27T04:00:00Z"
//
// Anything the linker did not set comes from the build information the go
// command embeds (runtime/debug.ReadBuildInfo): the main module's version for
// `go install ...@v0.1.0`, and vcs.revision, vcs.time and vcs.modified for a
// build inside a git checkout.
package version

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// Version is the release version set by the linker; "dev" when it was not
// set. Prefer Get().Version, which also knows a `go install` build's version.
var Version = "dev"

// Commit is the VCS commit set by the linker ("" when not set).
var Commit = ""

// Date is the build date set by the linker, RFC 3339 in UTC ("" when not
// set).
var Date = ""

// Info describes one build. Empty Commit and Date mean unknown.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns this binary's build description. The build information is read
// once: it does not change while the process runs.
func Get() Info { return get() }

var get = sync.OnceValue(func() Info {
	bi, _ := debug.ReadBuildInfo() // nil when the binary has none: linker values only
	return resolve(Version, Commit, Date, bi)
})

// String is Get().String(): the one-line description the binary logs at start.
func String() string { return Get().String() }

// String is the one-line form, e.g.
// "podiam v0.1.0 (commit 0123abcd…, built 2026-11-27T04:00:00Z) go1.26.10 linux/amd64";
// the parenthesis is left out when neither commit nor date is known.
func (i Info) String() string {
	var b strings.Builder
	b.WriteString("podiam ")
	b.WriteString(i.Version)
	var meta []string
	if i.Commit != "" {
		meta = append(meta, "commit "+i.Commit)
	}
	if i.Date != "" {
		meta = append(meta, "built "+i.Date)
	}
	if len(meta) > 0 {
		b.WriteString(" (" + strings.Join(meta, ", ") + ")")
	}
	b.WriteString(" " + i.GoVersion + " " + i.Platform)
	return b.String()
}

// JSON is the indented JSON object `podiam version -o json` prints.
func (i Info) JSON() []byte {
	out, _ := json.MarshalIndent(i, "", "  ") // only strings: cannot fail
	return out
}

// resolve combines what the linker set with the build information (bi may be
// nil): a linker value always wins, since it is what the release process
// decided; the build information fills in the rest.
func resolve(version, commit, date string, bi *debug.BuildInfo) Info {
	info := Info{
		Version:   version,
		Commit:    commit,
		Date:      date,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	if bi == nil {
		return info
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	// "(devel)" is what the go command records for a build of a checkout
	// without a matching tag: no version worth printing.
	if info.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version
	}
	var revision, vcsTime string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.time":
			vcsTime = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if info.Commit == "" && revision != "" {
		info.Commit = revision
		if modified {
			info.Commit += "-dirty"
		}
	}
	if info.Date == "" {
		info.Date = vcsTime
	}
	return info
}

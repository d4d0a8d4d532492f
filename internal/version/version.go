// Package version describes the build: release version, VCS commit, build
// date, Go version and platform. Release builds set the first three with the
// linker (`make build` and `make image` do):
//
//	go build -trimpath -ldflags "-X github.com/podiam/podiam/internal/version.Version=v0.1.0 \
//	  -X github.com/podiam/podiam/internal/version.Commit=$(git rev-parse HEAD) \
//	  -X github.com/podiam/podiam/internal/version.Date=2026-11-27T04:00:00Z"
//
// `make build` links "<commit>-dirty" when the checkout has uncommitted
// changes. Anything the linker did not set comes from the build information
// the go command embeds (runtime/debug.ReadBuildInfo): the main module's
// version for `go install ...@v0.1.0` or a checkout at a tag, and
// vcs.revision, vcs.time and vcs.modified for a build inside a git checkout.
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

// shortCommit is how many hex digits of a commit the one-line form shows, as
// `git log --oneline` does in a large repository; the JSON form has all.
const shortCommit = 12

// String is the one-line form, e.g.
// "podiam v0.1.0 (commit 0123456789ab, built 2026-11-27T04:00:00Z) go1.26.10 linux/amd64";
// the commit is shortened to 12 hex digits (its -dirty suffix kept), and the
// parenthesis is left out when neither commit nor date is known.
func (i Info) String() string {
	var b strings.Builder
	b.WriteString("podiam ")
	b.WriteString(i.Version)
	var meta []string
	if i.Commit != "" {
		meta = append(meta, "commit "+short(i.Commit))
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

// short shortens a full hex commit ("<hex>" or "<hex>-dirty") to
// shortCommit digits; anything else is printed as it is.
func short(commit string) string {
	hex, dirty := strings.CutSuffix(commit, "-dirty")
	if len(hex) <= shortCommit || strings.Trim(hex, "0123456789abcdef") != "" {
		return commit
	}
	if dirty {
		return hex[:shortCommit] + "-dirty"
	}
	return hex[:shortCommit]
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
	if info.Version == "dev" && moduleVersion(bi.Main.Version) {
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
	switch {
	case info.Commit == "" && revision != "":
		info.Commit = revision
		if modified {
			info.Commit += "-dirty"
		}
	case info.Commit == revision && modified:
		// The linker named the very commit the checkout was at, but the
		// build compiled uncommitted changes too: the binary is not that
		// commit. A linked commit the go command did not see (an image
		// build, -buildvcs=false) is taken as it is.
		info.Commit += "-dirty"
	}
	if info.Date == "" {
		info.Date = vcsTime
	}
	return info
}

// moduleVersion reports whether v, the main module's version in the build
// information, says more than the commit and date do: a release tag
// (v0.1.0, or v0.1.0+dirty for a modified checkout at the tag) or a
// pseudo-version that follows a tag (v0.1.1-0.20261127040000-0123456789ab).
// Not "(devel)" (a build outside any checkout, or before Go 1.24), nor a
// checkout that no tag precedes: since Go 1.24 that is stamped
// v0.0.0-<date>-<commit>[+dirty], which repeats the commit and date and
// reads as a release that does not exist.
func moduleVersion(v string) bool {
	return v != "" && v != "(devel)" && !strings.HasPrefix(v, "v0.0.0-")
}

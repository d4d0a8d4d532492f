package configwatch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podiam/podiam/internal/identity"
	"github.com/podiam/podiam/internal/metrics"
)

// DefaultPollInterval is the fallback re-read interval of a [FileWatcher].
const DefaultPollInterval = time.Minute

// FileOptions configures a [FileWatcher].
type FileOptions struct {
	// Path is the container-credentials config file. Required. It may be a symlink,
	// as in a ConfigMap volume.
	Path string
	// PollInterval is how often the file is re-read regardless of events, which
	// catches changes fsnotify cannot see (for example a symlink whose target is in
	// another directory) and re-establishes a lost directory watch. Zero or negative
	// means DefaultPollInterval.
	PollInterval time.Duration
	// Metrics receives reload counts and the entry count. Nil records nothing.
	Metrics *metrics.Webhook
	// Logger receives one line per reload or rejected read. Nil means slog.Default().
	Logger *slog.Logger
}

// FileWatcher keeps the container-credentials set current from a file parsed by
// [identity.ParseContainerCredentials].
//
// It watches the file's parent directory rather than the file, so it sees a file
// created after start-up, a file replaced by rename, and the atomic "..data" symlink
// swap with which the kubelet updates a ConfigMap volume. Any event in the directory
// triggers a re-read after a short settle delay; the file is also re-read every
// PollInterval. Content is compared by hash, so only real changes are applied.
//
//   - a missing or empty (or whitespace-only) file is an empty set;
//   - a malformed file, including one caught half-written, is logged and counted as
//     an error, and the last good set stays in effect; the complete content is
//     picked up on the next event or poll;
//   - a file that cannot be read for another reason (permissions, a directory)
//     is treated like a malformed one.
type FileWatcher struct {
	path string
	poll time.Duration
	log  *slog.Logger
	rec  recorder

	current atomic.Pointer[identity.ContainerCredentials]

	mu   sync.Mutex // serialises reload; guards seen and last
	seen bool       // whether last is set
	last fileState  // last content looked at, good or bad
}

// fileState identifies what the watcher last read.
type fileState struct {
	exists  bool
	readErr string // non-empty when the file exists but could not be read
	sum     [sha256.Size]byte
}

// NewFileWatcher creates a watcher for o.Path and reads the file once, synchronously,
// so Current is meaningful as soon as it returns.
//
// A missing file at start-up is an empty set: a ConfigMap volume or a sidecar may
// create it later. A malformed or unreadable file at start-up does not fail either:
// the watcher starts with an empty set, logs the error and counts it as a reload
// error, and picks up the file once it is fixed. The only errors returned are for
// unusable options.
func NewFileWatcher(o FileOptions) (*FileWatcher, error) {
	if o.Path == "" {
		return nil, errors.New("configwatch: container credentials config path is empty")
	}
	path, err := filepath.Abs(o.Path)
	if err != nil {
		return nil, fmt.Errorf("configwatch: resolving container credentials config path %q: %w", o.Path, err)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	w := &FileWatcher{
		path: path,
		poll: o.PollInterval,
		log: loggerOrDefault(o.Logger).With(
			"source", metrics.SourceContainerCredentials,
			"path", path),
		rec: recorder{m: o.Metrics, source: metrics.SourceContainerCredentials},
	}
	w.rec.init()
	w.reload()
	return w, nil
}

// Current returns the set in effect. It never blocks. The result may be nil, which
// is a valid, empty set.
func (w *FileWatcher) Current() *identity.ContainerCredentials { return w.current.Load() }

// Run watches the file until ctx is done. Call it once. If fsnotify is unavailable
// or the directory cannot be watched (for example because it does not exist yet),
// Run logs a warning and relies on polling, retrying the watch on every poll.
func (w *FileWatcher) Run(ctx context.Context) {
	w.log.Info("watching container credentials config", "pollInterval", w.poll)
	WatchFile(ctx, WatchOptions{Path: w.path, PollInterval: w.poll, Name: "container credentials config",
		Logger: w.log, OnChange: w.reload})
}

// reload reads the file and publishes its content unless it is unchanged or
// malformed.
func (w *FileWatcher) reload() {
	data, err := os.ReadFile(w.path)
	var st fileState
	switch {
	case errors.Is(err, fs.ErrNotExist):
		data, err = nil, nil
	case err != nil:
		st.readErr = err.Error()
	default:
		st.exists, st.sum = true, sha256.Sum256(data)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen && st == w.last {
		return
	}
	w.seen, w.last = true, st

	if err != nil {
		w.rec.fail()
		w.log.Error("cannot read container credentials config; keeping the last good set",
			"entries", w.current.Load().Len(), "err", fmt.Errorf("reading container credentials config: %w", err))
		return
	}
	cc, err := identity.ParseContainerCredentials(data)
	if err != nil {
		w.rec.fail()
		w.log.Error("rejected container credentials config; keeping the last good set",
			"entries", w.current.Load().Len(), "err", err)
		return
	}
	w.current.Store(cc)
	w.rec.ok(cc.Len())
	if !st.exists {
		w.log.Info("container credentials config not found; the set is empty")
		return
	}
	w.log.Info("loaded container credentials config", "entries", cc.Len())
}

package sts

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podiam/podiam/internal/configwatch"
)

// DefaultWatchPollInterval is the fallback re-read interval of a [Watcher].
const DefaultWatchPollInterval = time.Minute

// WatcherOptions configures a [Watcher].
type WatcherOptions struct {
	// Path is the config file. Required. It may be a symlink, as in a ConfigMap volume.
	Path string
	// PollInterval is how often the file is re-read regardless of events, which
	// catches changes fsnotify cannot see (a symlink whose target is in another
	// directory, a file the config refers to) and re-establishes a lost directory
	// watch. Zero or negative means DefaultWatchPollInterval.
	PollInterval time.Duration
	// Logger receives one line per reload or rejected version. Nil means slog.Default().
	Logger *slog.Logger
	// OnReload, optional, is called after every attempt to apply a changed file: with
	// nil when the new config is in effect, with the reason when it was rejected and the
	// last good one stays (for a reload metric). It is called from the watching
	// goroutine and must not block.
	OnReload func(err error)
}

// Watcher keeps the config current from its file: a changed file is loaded with
// [Load] and replaces the config in effect only when it is valid as a whole;
// otherwise the last good config stays and the reason is logged.
//
// Like the project's other file watchers it watches the file's parent directory, so it
// sees a file replaced by rename and the atomic "..data" symlink swap with which the
// kubelet updates a ConfigMap volume, and it re-reads the file every PollInterval.
// Content is compared by hash, so only real changes are applied. The hash covers the
// files the config refers to (CA files, kubeconfigs, trust policy files), so a change
// to one of them reloads the config too, at the next event or poll.
type Watcher struct {
	path     string
	poll     time.Duration
	log      *slog.Logger
	onReload func(error)

	current atomic.Pointer[Config]

	mu    sync.Mutex // serialises reload; guards files and last
	files []string   // the files the last version read refers to
	last  [sha256.Size]byte
}

// NewWatcher loads the config file once, synchronously; unlike later reloads, an
// invalid or missing file at start-up is an error, since there is no last good
// config to keep.
func NewWatcher(o WatcherOptions) (*Watcher, error) {
	if o.Path == "" {
		return nil, errors.New("sts config path is empty")
	}
	path, err := filepath.Abs(o.Path)
	if err != nil {
		return nil, fmt.Errorf("resolving sts config path %q: %w", o.Path, err)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultWatchPollInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	w := &Watcher{
		path:     path,
		poll:     o.PollInterval,
		log:      o.Logger.With("path", path),
		onReload: o.OnReload,
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sts config: %w", err)
	}
	c, files, err := load(path, data)
	if err != nil {
		return nil, err
	}
	w.current.Store(c)
	w.files, w.last = files, fingerprint(data, files)
	return w, nil
}

// load parses data read from path like [Load] does. It also returns the files the
// document refers to, valid or not.
func load(path string, data []byte) (*Config, []string, error) {
	if len(data) > maxConfigSize {
		return nil, nil, fmt.Errorf("sts config %s: larger than %d bytes", path, maxConfigSize)
	}
	c, files, err := parse(data, filepath.Dir(path))
	if err != nil {
		return nil, files, fmt.Errorf("sts config %s: %w", path, err)
	}
	c.path = path
	return c, files, nil
}

// fingerprint hashes the config file's content and the content of the files it
// refers to, so that a changed CA file or trust policy file reloads the config too.
func fingerprint(data []byte, files []string) [sha256.Size]byte {
	h := sha256.New()
	h.Write(data)
	for _, f := range files {
		h.Write([]byte("\x00" + f + "\x00"))
		if content, err := os.ReadFile(f); err != nil {
			h.Write([]byte("error: " + err.Error()))
		} else {
			sum := sha256.Sum256(content)
			h.Write(sum[:])
		}
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// Current returns the config in effect. It never blocks and is never nil.
func (w *Watcher) Current() *Config { return w.current.Load() }

// Run watches the file until ctx is done. Call it once. If fsnotify is unavailable
// or the directory cannot be watched, Run logs a warning and relies on polling,
// retrying the watch on every poll.
func (w *Watcher) Run(ctx context.Context) {
	configwatch.WatchFile(ctx, configwatch.WatchOptions{Path: w.path, PollInterval: w.poll, Name: "sts config",
		Logger: w.log, OnChange: w.reload})
}

// reload reads the file and applies it when it changed and is valid. A file that
// cannot be read (removed, half-swapped) is treated like an invalid one: the last
// good config stays, and the next event or poll tries again.
func (w *Watcher) reload() {
	data, err := os.ReadFile(w.path)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		// Reported once per distinct state, not on every poll.
		if w.last != ([sha256.Size]byte{}) {
			w.last = [sha256.Size]byte{}
			w.rejected(fmt.Errorf("sts config: %w", err))
		}
		return
	}
	sum := fingerprint(data, w.files)
	if sum == w.last {
		return
	}
	c, files, err := load(w.path, data)
	// Keep the hash taken before parsing when the version refers to the same files:
	// a file changed while it was parsed then differs at the next look. A version
	// referring to other files is hashed with those.
	if !slices.Equal(files, w.files) {
		sum = fingerprint(data, files)
	}
	w.files, w.last = files, sum
	if err != nil {
		w.rejected(err)
		return
	}
	w.current.Store(c)
	w.log.Info("loaded sts config", "config", c)
	if w.onReload != nil {
		w.onReload(nil)
	}
}

func (w *Watcher) rejected(err error) {
	w.log.Error("rejected sts config; keeping the last good one", "err", err)
	if w.onReload != nil {
		w.onReload(err)
	}
}

package configwatch

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
)

// SettleDelay coalesces a burst of file-system events (a ConfigMap volume update
// is several) into one call, and gives an in-place writer time to finish.
const SettleDelay = 100 * time.Millisecond

// WatchOptions configures [WatchFile].
type WatchOptions struct {
	// Path is the watched file, absolute. It may be a symlink, as in a ConfigMap
	// volume, and need not exist yet.
	Path string
	// PollInterval is how often OnChange is called regardless of events, which
	// catches what fsnotify cannot see (a symlink whose target is in another
	// directory, a file the watched one refers to) and re-establishes a lost
	// directory watch. Zero or negative means DefaultPollInterval.
	PollInterval time.Duration
	// Name names the file in log lines ("sts config").
	Name string
	// Logger receives the watch's warnings. Nil means slog.Default().
	Logger *slog.Logger
	// OnChange re-reads the file. It is called once when the watch is in place,
	// after every burst of events in the file's directory, and every PollInterval.
	// The calls may well see no change: OnChange compares content itself.
	OnChange func()
}

// WatchFile calls o.OnChange whenever o.Path may have changed, until ctx is
// done. It watches the file's parent directory rather than the file, so it sees
// a file created after start-up, a file replaced by rename, and the atomic
// "..data" symlink swap with which the kubelet updates a ConfigMap volume. If
// fsnotify is unavailable or the directory cannot be watched (it does not exist
// yet), it logs a warning and relies on polling, retrying the watch on every
// poll.
func WatchFile(ctx context.Context, o WatchOptions) {
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	log := loggerOrDefault(o.Logger)
	dir := filepath.Dir(o.Path)
	ticker := time.NewTicker(o.PollInterval)
	defer ticker.Stop()

	var (
		events <-chan fsnotify.Event
		errs   <-chan error
	)
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn("cannot watch "+o.Name+"; polling only", "interval", o.PollInterval,
			"err", fmt.Errorf("creating fsnotify watcher: %w", err))
		fw = nil
	} else {
		defer fw.Close()
		events, errs = fw.Events, fw.Errors
		ensureWatch(fw, dir, o, log, true)
	}
	// Catch a change made between the caller's first read and the watch being in place.
	o.OnChange()

	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if settle == nil {
				settle = time.After(SettleDelay)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// Typically an event-queue overflow: events may have been lost, so re-read.
			log.Warn(o.Name+" watch error", "err", err)
			if settle == nil {
				settle = time.After(SettleDelay)
			}
		case <-settle:
			settle = nil
			o.OnChange()
		case <-ticker.C:
			if fw != nil {
				ensureWatch(fw, dir, o, log, false)
			}
			o.OnChange()
		}
	}
}

// ensureWatch (re-)adds the directory watch if it is missing, for instance
// because the directory did not exist at start-up or was removed and recreated.
// It warns on the first failure only, to keep a missing directory from flooding
// the log.
func ensureWatch(fw *fsnotify.Watcher, dir string, o WatchOptions, log *slog.Logger, first bool) {
	if slices.Contains(fw.WatchList(), dir) {
		return
	}
	if err := fw.Add(dir); err != nil {
		if first {
			log.Warn("cannot watch "+o.Name+" directory; polling until it can be watched",
				"interval", o.PollInterval, "err", fmt.Errorf("watching %s: %w", dir, err))
		}
		return
	}
	if !first {
		log.Info("watching "+o.Name+" directory again", "dir", dir)
	}
}

package oidc

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Syncer keeps a destination in step with the cluster's documents: signing
// keys rotate, and the published JWKS must follow.
type Syncer struct {
	Source      Source
	Destination Destination
	Options     PublishOptions
	// Interval is the time between two rounds after a success.
	Interval time.Duration
	// RetryMin is the first wait after a failed round; it doubles on each
	// further failure up to Interval. Zero means 5s.
	RetryMin time.Duration
	Logger   *slog.Logger
	// OnRound, if set, is called after each round (tests use it).
	OnRound func(Result, error)
}

// Run publishes at once, then every Interval, until ctx ends; it returns
// nil then. A failed round (API server or bucket unreachable, another
// issuer) is logged and retried sooner, never ending the loop: keeping the
// last good documents published is always better than stopping. A key that
// left the cluster stays published, with a warning every round, unless
// Options.AllowKeyRemoval; keys the cluster adds are published either way.
// An unreadable JWKS or invalid entries at the destination fail every round
// unless Options.AllowKeyRemoval.
func (s *Syncer) Run(ctx context.Context) error {
	if s.Interval <= 0 {
		return errors.New("sync interval must be positive")
	}
	logger := s.Logger
	if logger == nil {
		logger = slog.Default()
	}
	retryMin := s.RetryMin
	if retryMin <= 0 {
		retryMin = 5 * time.Second
	}
	logger.Info("keeping the issuer documents in sync", "issuer", s.Options.Issuer,
		"destination", s.Destination.String(), "interval", s.Interval.String())
	retry := min(retryMin, s.Interval)
	for {
		res, err := Publish(ctx, s.Source, s.Destination, s.Options)
		if ctx.Err() != nil {
			return nil
		}
		wait := s.Interval
		if err != nil {
			logger.Error("publishing the issuer documents failed; retrying", "error", err.Error(), "retryIn", retry.String())
			wait = retry
			retry = min(2*retry, s.Interval)
		} else {
			retry = min(retryMin, s.Interval)
			logRound(logger, res)
		}
		if s.OnRound != nil {
			s.OnRound(res, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			logger.Info("stopping the issuer document sync")
			return nil
		case <-t.C:
		}
	}
}

// logRound logs what a successful round did: every write at info, a round
// that wrote nothing at debug (the steady state).
func logRound(logger *slog.Logger, res Result) {
	for _, w := range res.Warnings() {
		logger.Warn(w)
	}
	if len(res.Written) == 0 {
		logger.Debug("issuer documents up to date")
		return
	}
	logger.Info("published the issuer documents", "written", res.Written, "jwksURI", res.JWKSURI)
}

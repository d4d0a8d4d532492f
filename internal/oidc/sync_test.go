package oidc

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podiam/podiam/test/testutil"
)

type round struct {
	res Result
	err error
}

// TestSyncerRun drives the loop through a steady state, a failing API
// server, the recovery and a rotation, then stops it: failures never end
// the loop, and a steady state writes nothing.
func TestSyncerRun(t *testing.T) {
	t.Parallel()
	rsaKey, ec256, _ := pubTestKeys(t)
	dest := &recordingDest{Destination: &DirDestination{Root: t.TempDir()}}
	src := &fakeSource{live: pubLiveDocs(t, pubIssuer, rsaKey)}
	rounds := make(chan round)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var logs testutil.SyncBuffer
	s := &Syncer{
		Source: src, Destination: dest, Options: PublishOptions{Issuer: pubIssuer},
		Interval: 10 * time.Millisecond, RetryMin: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnRound: func(r Result, err error) {
			select { // never blocks the loop past the test's end
			case rounds <- round{r, err}:
			case <-ctx.Done():
			}
		},
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	next := func(what string) round {
		t.Helper()
		select {
		case r := <-rounds:
			return r
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no round within 10s", what)
			return round{}
		}
	}
	both := []string{JWKSPath, DiscoveryPath}
	if r := next("first"); r.err != nil || !slices.Equal(r.res.Written, both) {
		t.Fatalf("first round: %+v", r)
	}
	for i := range 3 {
		if r := next("steady"); r.err != nil || len(r.res.Written) != 0 {
			t.Fatalf("steady round %d: %+v", i, r)
		}
	}
	src.set(Live{}, errors.New("dial tcp 10.0.0.1:6443: connection refused"))
	for i := range 3 {
		if r := next("failing"); r.err == nil {
			t.Fatalf("failing round %d succeeded", i)
		}
	}
	src.set(pubLiveDocs(t, pubIssuer, rsaKey, ec256), nil)
	// Rounds already under way may still see the error; the loop recovers.
	for {
		r := next("recovery")
		if r.err == nil {
			if !slices.Equal(r.res.Written, both) {
				t.Fatalf("first round after the rotation wrote %q, want %q", r.res.Written, both)
			}
			break
		}
	}
	if got := dest.takePuts(); len(got) != 4 {
		t.Errorf("writes over the whole run: %q, want the two documents twice", got)
	}
	cancel()
	// Drain a round that may be in flight, then expect Run to return nil.
	for {
		select {
		case <-rounds:
			continue
		case err := <-done:
			if err != nil {
				t.Fatalf("Run returned %v after the context ended, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after the context ended")
		}
		break
	}
	for _, want := range []string{"publishing the issuer documents failed", "connection refused", "published the issuer documents", "issuer documents up to date"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
}

// TestSyncerKeyLeftCluster: after a key leaves the cluster, every round
// succeeds, warns naming it and keeps it published, and the next new key is
// published: without --allow-key-removal the sync never gets stuck. With it,
// the key goes.
func TestSyncerKeyLeftCluster(t *testing.T) {
	t.Parallel()
	rsaKey, ec256, ec384 := pubTestKeys(t)
	rsaKid := pubKid(t, rsaKey)
	root := t.TempDir()
	dest := &recordingDest{Destination: &DirDestination{Root: root}}
	if _, err := Publish(t.Context(), &fakeSource{live: pubLiveDocs(t, pubIssuer, rsaKey, ec256)}, dest, PublishOptions{Issuer: pubIssuer}); err != nil {
		t.Fatal(err)
	}
	dest.takePuts()
	src := &fakeSource{live: pubLiveDocs(t, pubIssuer, ec256)}

	// run runs a Syncer until it has done n rounds, then stops it and waits
	// for Run to return.
	run := func(o PublishOptions, n int, between func(i int, r round)) string {
		t.Helper()
		rounds := make(chan round)
		var logs testutil.SyncBuffer
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		s := &Syncer{
			Source: src, Destination: dest, Options: o,
			Interval: 5 * time.Millisecond, RetryMin: time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			OnRound: func(r Result, err error) {
				select { // never blocks the loop past the test's end
				case rounds <- round{r, err}:
				case <-ctx.Done():
				}
			},
		}
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		for i := range n {
			select {
			case r := <-rounds:
				between(i, r)
			case <-time.After(10 * time.Second):
				t.Fatalf("no round %d within 10s", i)
			}
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run returned %v after the context ended, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after the context ended")
		}
		return logs.String()
	}

	published := func() []string {
		t.Helper()
		body, err := os.ReadFile(filepath.Join(root, "openid", "v1", "jwks"))
		if err != nil {
			t.Fatal(err)
		}
		return publishedKids(t, body)
	}
	logs := run(PublishOptions{Issuer: pubIssuer}, 4, func(i int, r round) {
		if r.err != nil || !slices.Equal(r.res.RetainedKeys, []string{rsaKid}) || len(r.res.RemovedKeys) != 0 {
			t.Fatalf("round %d: error %v, retained %q, removed %q; want success retaining the RSA key", i, r.err, r.res.RetainedKeys, r.res.RemovedKeys)
		}
		if i == 1 {
			// The next rotation's key appears.
			src.set(pubLiveDocs(t, pubIssuer, ec256, ec384), nil)
		}
	})
	if got, want := published(), sortedKids(rsaKid, pubKid(t, ec256), pubKid(t, ec384)); !slices.Equal(got, want) {
		t.Errorf("published kids %q, want the new key and the retained one %q", got, want)
	}
	if got := dest.takePuts(); !slices.Equal(got, []string{JWKSPath, DiscoveryPath}) {
		t.Errorf("writes %q, want the two documents once, for the new key", got)
	}
	if n := strings.Count(logs, "level=WARN msg="+strconv.Quote(RetainedKeyWarning(rsaKid))); n < 4 {
		t.Errorf("%d retention warnings, want one per round (4):\n%s", n, logs)
	}

	logs = run(PublishOptions{Issuer: pubIssuer, AllowKeyRemoval: true}, 1, func(_ int, r round) {
		if r.err != nil || !slices.Equal(r.res.RemovedKeys, []string{rsaKid}) {
			t.Fatalf("round: error %v, removed %q; want the RSA key removed", r.err, r.res.RemovedKeys)
		}
	})
	if got, want := published(), sortedKids(pubKid(t, ec256), pubKid(t, ec384)); !slices.Equal(got, want) {
		t.Errorf("published kids after the removal %q, want %q", got, want)
	}
	if !strings.Contains(logs, "level=WARN msg="+strconv.Quote(RemovedKeyWarning(rsaKid))) {
		t.Errorf("logs lack the removal warning:\n%s", logs)
	}
}

func TestSyncerBadInterval(t *testing.T) {
	t.Parallel()
	s := &Syncer{Source: &fakeSource{}, Destination: &DirDestination{Root: t.TempDir()}}
	if err := s.Run(t.Context()); err == nil {
		t.Fatal("Run with a zero interval did not fail")
	}
}

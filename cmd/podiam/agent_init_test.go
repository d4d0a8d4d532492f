package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/podiam/podiam/internal/agent/netinit"
)

// agentInitArgs parses args as `podiam agent init`'s flags.
func agentInitArgs(t *testing.T, args ...string) agentInitFlags {
	t.Helper()
	cmd, f := agentInitCommand()
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("parsing %q: %v", args, err)
	}
	return *f
}

// The flags become the configuration given to netinit; bad ones stop with
// exit status 2 before the node is touched, every problem named at once.
func TestAgentInitFlags(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantIface string
		wantAddrs []string
		wantErr   []string
	}{
		{name: "defaults", wantIface: "pod-id-link0", wantAddrs: []string{"169.254.170.23/32", "fd00:ec2::23/128"}},
		{name: "interface and addresses", args: []string{"--interface=podiam0", "--address=169.254.170.23", "--address", "[fd00:ec2::23]"},
			wantIface: "podiam0", wantAddrs: []string{"169.254.170.23/32", "fd00:ec2::23/128"}},
		{name: "prefix length", args: []string{"--address=10.0.0.5/24"}, wantIface: "pod-id-link0", wantAddrs: []string{"10.0.0.5/24"}},
		{name: "bad address", args: []string{"--address=169.254.170.23:80"}, wantErr: []string{`--address: address "169.254.170.23:80"`}},
		{name: "twice", args: []string{"--address=169.254.170.23", "--address=169.254.170.23/32"}, wantErr: []string{"--address: address 169.254.170.23 is given twice"}},
		{name: "empty address", args: []string{"--address="}, wantErr: []string{`--address: address ""`}},
		{name: "interface too long", args: []string{"--interface=sixteen-bytes-xx"}, wantErr: []string{"--interface: interface name", "at most 15"}},
		{name: "everything bad", args: []string{"--interface=a b", "--address=nope", "--log-format=xml", "--log-level=loud"},
			wantErr: []string{"--interface:", `--address: address "nope"`, "--log-format", "--log-level"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got *netinit.Config
			apply := func(cfg netinit.Config) (netinit.Result, error) {
				got = &cfg
				return netinit.Result{Interface: cfg.Interface, Addresses: []netinit.AddressResult{{Prefix: cfg.Addresses[0], Outcome: netinit.Added}}}, nil
			}
			err := runAgentInit(&bytes.Buffer{}, agentInitArgs(t, tc.args...), apply)
			if len(tc.wantErr) > 0 {
				if err == nil || exitCode(err) != exitInitUsage {
					t.Fatalf("err = %v (exit %d), want exit %d", err, exitCode(err), exitInitUsage)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("err = %v, want it to say %q", err, w)
					}
				}
				if got != nil {
					t.Errorf("the node was set up despite bad flags: %+v", *got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var addrs []string
			for _, p := range got.Addresses {
				addrs = append(addrs, p.String())
			}
			if got.Interface != tc.wantIface || !slices.Equal(addrs, tc.wantAddrs) {
				t.Errorf("config %s %q, want %s %q", got.Interface, addrs, tc.wantIface, tc.wantAddrs)
			}
		})
	}
}

// What netinit did is logged; a skipped IPv6 address is a warning, not a
// failure; a failure exits with status 1 and says what failed.
func TestAgentInitReports(t *testing.T) {
	v4, v6 := netip.MustParsePrefix("169.254.170.23/32"), netip.MustParsePrefix("fd00:ec2::23/128")
	tests := []struct {
		name     string
		res      netinit.Result
		err      error
		wantExit int
		want     []string // in the log (or the error)
		notWant  []string
	}{
		{name: "created", res: netinit.Result{Interface: "pod-id-link0", Created: true, Addresses: []netinit.AddressResult{
			{Prefix: v4, Outcome: netinit.Added}, {Prefix: v6, Outcome: netinit.Added}}},
			want:    []string{`level=INFO msg="interface created" interface=pod-id-link0`, `msg="address added" interface=pod-id-link0 address=169.254.170.23/32`, `address=fd00:ec2::23/128`, `msg="node ready for podiam agent" interface=pod-id-link0 addresses="[169.254.170.23 fd00:ec2::23]"`},
			notWant: []string{"WARN"}},
		{name: "again", res: netinit.Result{Interface: "pod-id-link0", Addresses: []netinit.AddressResult{
			{Prefix: v4, Outcome: netinit.Present}, {Prefix: v6, Outcome: netinit.Present}}},
			want: []string{`msg="interface already there"`, `msg="address present" interface=pod-id-link0 address=169.254.170.23/32`}},
		{name: "IPv6 disabled", res: netinit.Result{Interface: "pod-id-link0", Created: true, Addresses: []netinit.AddressResult{
			{Prefix: v4, Outcome: netinit.Added}, {Prefix: v6, Outcome: netinit.Skipped, Err: errors.New("IPv6 is disabled on this node: permission denied")}}},
			want: []string{`level=WARN msg="address skipped: podiam agent serves the other addresses" interface=pod-id-link0 address=fd00:ec2::23/128 reason="IPv6 is disabled on this node: permission denied"`,
				`addresses=[169.254.170.23]`}},
		{name: "failed", err: fmt.Errorf("interface pod-id-link0 exists and is of type %q, not %q", "bridge", "dummy"), wantExit: exitInitFailed,
			want: []string{`setting up interface pod-id-link0: interface pod-id-link0 exists and is of type "bridge"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var log bytes.Buffer
			f := agentInitArgs(t, "--log-format=text")
			err := runAgentInit(&log, f, func(netinit.Config) (netinit.Result, error) { return tc.res, tc.err })
			if exitCode(err) != tc.wantExit {
				t.Fatalf("err = %v (exit %d), want exit %d", err, exitCode(err), tc.wantExit)
			}
			out := log.String()
			if err != nil {
				out = err.Error()
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not say %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output says %q:\n%s", w, out)
				}
			}
		})
	}
}

// `podiam agent init` and Amazon's spelling, `podiam agent initialize`,
// are the same command.
func TestAgentInitCommand(t *testing.T) {
	for _, name := range []string{"init", "initialize"} {
		cmd, _, err := newRootCommand().Find([]string{"agent", name})
		if err != nil || cmd.Name() != "init" || cmd.Parent().Name() != "agent" {
			t.Errorf("podiam agent %s: %v, %v", name, cmd.CommandPath(), err)
		}
	}
}

// The README's `podiam agent init` section lists every flag with its
// default.
func TestREADMEListsEveryAgentInitFlag(t *testing.T) {
	checkREADMEFlagTable(t, "#### `podiam agent init`", newAgentInitCommand().Flags(), 4)
}

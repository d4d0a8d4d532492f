package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/podiam/podiam/internal/agent/netinit"
)

// Exit codes of `podiam agent init`, so that a failed init container tells
// a mistake in its arguments from a node that refused.
const (
	exitInitFailed = 1 // the node could not be set up
	exitInitUsage  = 2 // bad flags; nothing was changed
)

// agentInitFlags are the flags of `podiam agent init`.
type agentInitFlags struct {
	iface               string
	addresses           []string
	logFormat, logLevel string
}

func newAgentInitCommand() *cobra.Command {
	cmd, _ := agentInitCommand()
	return cmd
}

// agentInitCommand returns `podiam agent init`, and the flag values it
// parses into. Amazon's name for it, `initialize`, is an alias, so that an
// existing init container's arguments work.
func agentInitCommand() (*cobra.Command, *agentInitFlags) {
	f := &agentInitFlags{}
	cmd := &cobra.Command{
		Use:     "init",
		Aliases: []string{"initialize"},
		Short:   "Put the agent's link-local addresses on a dummy interface (the agent's privileged init container)",
		Long: `podiam agent init prepares the node for podiam agent: it creates the dummy
interface --interface unless it exists, sets it up, and adds each --address it
lacks (by default 169.254.170.23 and fd00:ec2::23, the addresses the AWS SDKs
call for Pod Identity credentials). It is the agent DaemonSet's init
container: it needs hostNetwork and CAP_NET_ADMIN (privileged, or the
NET_ADMIN capability). It does what the init container of Amazon's agent does,
with the same interface name, so either agent finds the node ready.

Running it again changes nothing. On a node whose IPv6 is disabled, an IPv6
address is skipped with a warning and the rest is done: the agent then serves
IPv4 only. An interface of another type with the same name is an error.

Exit status: 0 done, 1 the node could not be set up, 2 bad flags (nothing
changed). Linux only.`,
		Example: `  # In the agent DaemonSet's init container (hostNetwork, NET_ADMIN):
  podiam agent init

  # Another interface name, IPv4 only:
  podiam agent init --interface=podiam0 --address=169.254.170.23`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAgentInit(cmd.ErrOrStderr(), *f, netinit.Apply)
		},
	}
	var defaults []string
	for _, p := range netinit.DefaultAddresses() {
		defaults = append(defaults, p.String())
	}
	fs := cmd.Flags()
	fs.StringVar(&f.iface, "interface", netinit.DefaultInterface, "name of the dummy interface the addresses are put on (Amazon's agent's)")
	fs.StringArrayVar(&f.addresses, "address", defaults,
		"address to put on --interface, repeatable: an IP address (a single host) or ADDRESS/LENGTH")
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd, f
}

// agentInitConfig checks the flags of `podiam agent init`, all at once.
func agentInitConfig(f agentInitFlags) (netinit.Config, slog.Level, error) {
	cfg := netinit.Config{Interface: f.iface}
	var errs []error
	level, err := parseLogFlags(f.logFormat, f.logLevel)
	if err != nil {
		errs = append(errs, err)
	}
	for _, s := range f.addresses {
		p, err := netinit.ParseAddress(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("--address: %w", err))
			continue
		}
		cfg.Addresses = append(cfg.Addresses, p)
	}
	if err := netinit.ValidInterfaceName(f.iface); err != nil {
		errs = append(errs, fmt.Errorf("--interface: %w", err))
	} else if len(errs) == 0 {
		// The rest of Validate: no address, or one given twice.
		if err := cfg.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("--address: %w", err))
		}
	}
	return cfg, level, errors.Join(errs...)
}

// runAgentInit sets the node up with apply (netinit.Apply), logging to w
// what it did.
func runAgentInit(w io.Writer, f agentInitFlags, apply func(netinit.Config) (netinit.Result, error)) error {
	cfg, level, err := agentInitConfig(f)
	if err != nil {
		return &exitError{code: exitInitUsage, err: err}
	}
	opts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	if f.logFormat == "text" {
		log = slog.New(slog.NewTextHandler(w, opts))
	} else {
		log = slog.New(slog.NewJSONHandler(w, opts))
	}

	res, err := apply(cfg)
	if err != nil {
		return &exitError{code: exitInitFailed, err: fmt.Errorf("setting up interface %s: %w", cfg.Interface, err)}
	}
	if res.Created {
		log.Info("interface created", "interface", res.Interface)
	} else {
		log.Info("interface already there", "interface", res.Interface)
	}
	var served []netip.Addr
	for _, a := range res.Addresses {
		switch a.Outcome {
		case netinit.Skipped:
			log.Warn("address skipped: podiam agent serves the other addresses", "interface", res.Interface, "address", a.Prefix, "reason", a.Err)
		default:
			served = append(served, a.Prefix.Addr())
			log.Info("address "+string(a.Outcome), "interface", res.Interface, "address", a.Prefix)
		}
	}
	log.Info("node ready for podiam agent", "interface", res.Interface, "addresses", served)
	return nil
}

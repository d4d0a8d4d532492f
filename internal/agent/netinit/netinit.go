// Package netinit prepares a node for `podiam agent`: it puts the link-local
// addresses the AWS SDKs call for Pod Identity credentials (SPEC §7) on a
// dummy network interface, so that the agent, with hostNetwork, can listen on
// them. It is `podiam agent init`, run as a privileged init container of the
// agent's DaemonSet, and does what the init container of Amazon's agent does
// (same interface name, same addresses), so that a node moved from one agent
// to the other keeps a single interface.
//
// Apply is idempotent: an interface and addresses already in place are left
// as they are. An IPv6 address on a node whose IPv6 is disabled is skipped
// (the agent then serves IPv4 only), since Amazon's agent crash-looping on
// such nodes is what podiam set out to avoid.
//
// This file is the part that does not talk to the kernel: which addresses,
// parsed and checked, and which of them are missing. netinit_linux.go talks
// to the kernel with netlink; on other systems Apply returns an error.
package netinit

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
)

// DefaultInterface is the name of the agent's interface, the one Amazon's
// agent creates.
const DefaultInterface = "pod-id-link0"

// DefaultAddresses are the addresses `podiam agent` listens on by default,
// each as a single-host prefix: the link-local addresses of the container
// credential provider (SPEC §7).
func DefaultAddresses() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("169.254.170.23/32"),
		netip.MustParsePrefix("fd00:ec2::23/128"),
	}
}

// Config is what Apply puts in place.
type Config struct {
	// Interface is the name of the dummy interface (DefaultInterface).
	Interface string
	// Addresses are put on Interface (DefaultAddresses).
	Addresses []netip.Prefix
}

// Validate checks c before anything touches the kernel, and reports every
// problem at once.
func (c Config) Validate() error {
	var errs []error
	if err := ValidInterfaceName(c.Interface); err != nil {
		errs = append(errs, err)
	}
	if len(c.Addresses) == 0 {
		errs = append(errs, errors.New("no address to add: give at least one"))
	}
	seen := map[netip.Addr]netip.Prefix{}
	for _, p := range c.Addresses {
		if err := checkPrefix(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if q, dup := seen[p.Addr()]; dup {
			errs = append(errs, fmt.Errorf("address %s is given twice (%s and %s)", p.Addr(), q, p))
			continue
		}
		seen[p.Addr()] = p
	}
	return errors.Join(errs...)
}

// ValidInterfaceName checks name as the kernel does (dev_valid_name): 1 to
// 15 bytes, not "." or "..", and no '/', ':' or white space.
func ValidInterfaceName(name string) error {
	switch {
	case name == "":
		return errors.New("interface name is empty")
	case len(name) > 15:
		return fmt.Errorf("interface name %q is %d bytes long; Linux allows at most 15", name, len(name))
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	case strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r == ':' || unicode.IsSpace(r) || r == 0 }):
		return fmt.Errorf("interface name %q: '/', ':' and white space are not allowed", name)
	}
	return nil
}

// ParseAddress parses an address as the agent's flags spell it: an IP
// address ("169.254.170.23", "fd00:ec2::23" or "[fd00:ec2::23]", as
// --bind-hosts writes it), which means that single host (/32 or /128), or
// an address with its prefix length ("169.254.170.23/32").
func ParseAddress(s string) (netip.Prefix, error) {
	in := s
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("address %q: want an IP address, optionally with /PREFIX-LENGTH: %w", in, err)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("address %q: want an IP address, optionally with /PREFIX-LENGTH: %w", in, err)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("address %q: a zone is not allowed", in)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if err := checkPrefix(p); err != nil {
		return netip.Prefix{}, err
	}
	return p, nil
}

// checkPrefix refuses addresses that cannot be an interface's own unicast
// address, or that would be silently rewritten.
func checkPrefix(p netip.Prefix) error {
	a := p.Addr()
	switch {
	case !p.IsValid():
		return errors.New("address is empty")
	case a.Is4In6():
		return fmt.Errorf("address %s: an IPv4-mapped IPv6 address; give the IPv4 address %s", p, a.Unmap())
	case a.IsUnspecified(), a.IsMulticast(), a.IsLoopback():
		return fmt.Errorf("address %s: not a unicast address an interface can have", p)
	}
	return nil
}

// Outcome is what happened to one address.
type Outcome string

// The outcomes of an address.
const (
	// Added: the address was added now.
	Added Outcome = "added"
	// Present: the interface already had the address.
	Present Outcome = "present"
	// Skipped: an IPv6 address on a node whose IPv6 is disabled; the agent
	// serves the other addresses.
	Skipped Outcome = "skipped"
)

// AddressResult is the outcome of one address.
type AddressResult struct {
	Prefix  netip.Prefix
	Outcome Outcome
	// Err is why the address was skipped.
	Err error
}

// Result is what Apply did.
type Result struct {
	// Interface is the interface's name.
	Interface string
	// Created is whether the interface was created now (false: it existed).
	Created bool
	// Addresses are the outcomes of Config.Addresses, in order.
	Addresses []AddressResult
}

// missing returns the addresses of want whose IP address is not among have.
// An address present with another prefix length counts as present: the
// node already answers on it, and changing it could cut a running agent off.
func missing(want, have []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, w := range want {
		found := false
		for _, h := range have {
			if h.Addr() == w.Addr() {
				found = true
				break
			}
		}
		if !found {
			out = append(out, w)
		}
	}
	return out
}

//go:build linux

package netinit

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkKind is the type of interface Apply creates: a dummy interface is
// always up and has no carrier to lose, and the kernel delivers what is sent
// to its addresses locally, which is all the agent needs.
const linkKind = "dummy"

// Apply puts cfg in place in the network namespace of the calling thread
// (the node's, for an init container with hostNetwork): it creates the dummy
// interface unless it exists, sets it up, and adds the addresses it lacks.
// It needs CAP_NET_ADMIN. An IPv6 address that the node refuses because its
// IPv6 is disabled is Skipped, not an error, as long as another address is
// in place.
func Apply(cfg Config) (Result, error) {
	return apply(cfg, linkKind)
}

// apply is Apply creating an interface of type kind: tests use another type
// when the kernel they run on has no dummy driver.
func apply(cfg Config, kind string) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	// The socket belongs to the calling thread's network namespace.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return Result{}, fmt.Errorf("opening a netlink socket: %w", err)
	}
	defer h.Close()

	res := Result{Interface: cfg.Interface}
	link, created, err := ensureLink(h, cfg.Interface, kind)
	if err != nil {
		return res, err
	}
	res.Created = created
	// Up before the addresses: the kernel then routes each address locally
	// as soon as it is added, and setting up a link that is up does nothing.
	if err := h.LinkSetUp(link); err != nil {
		return res, fmt.Errorf("setting interface %s up: %w", cfg.Interface, explain(err))
	}

	have, err := linkAddresses(h, link)
	if err != nil {
		return res, fmt.Errorf("listing the addresses of interface %s: %w", cfg.Interface, explain(err))
	}
	toAdd := missing(cfg.Addresses, have)
	inPlace := 0
	for _, p := range cfg.Addresses {
		r := AddressResult{Prefix: p, Outcome: Present}
		if slices.Contains(toAdd, p) {
			r.Outcome, r.Err = addAddress(h, link, p)
			if r.Outcome == "" {
				return res, fmt.Errorf("adding %s to interface %s: %w", p, cfg.Interface, explain(r.Err))
			}
		}
		if r.Outcome != Skipped {
			inPlace++
		}
		res.Addresses = append(res.Addresses, r)
	}
	if inPlace == 0 {
		return res, fmt.Errorf("no address could be put on interface %s, so the agent would have nothing to listen on: %w",
			cfg.Interface, res.Addresses[0].Err)
	}
	return res, nil
}

// ensureLink returns the interface name, creating it as a kind interface
// if there is none; an interface of another type with that name is an
// error, since its addresses could not be trusted to stay.
func ensureLink(h *netlink.Handle, name, kind string) (link netlink.Link, created bool, err error) {
	for range 2 {
		link, err = h.LinkByName(name)
		if err == nil {
			if t := link.Type(); t != kind {
				return nil, false, fmt.Errorf("interface %s exists and is of type %q, not %q: delete it (ip link delete %s) or choose another --interface",
					name, t, kind, name)
			}
			return link, created, nil
		}
		if !errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil, false, fmt.Errorf("looking up interface %s: %w", name, explain(err))
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		err = h.LinkAdd(&netlink.GenericLink{LinkAttrs: attrs, LinkType: kind})
		switch {
		case err == nil:
			created = true
		case errors.Is(err, unix.EEXIST):
			// Created meanwhile (another init container): look again.
		case errors.Is(err, unix.EOPNOTSUPP):
			return nil, false, fmt.Errorf("creating %s interface %s: %w (the kernel has no %s driver: CONFIG_DUMMY, module dummy)", kind, name, err, kind)
		default:
			return nil, false, fmt.Errorf("creating %s interface %s: %w", kind, name, explain(err))
		}
	}
	return nil, false, fmt.Errorf("interface %s: created but not found: %w", name, err)
}

// linkAddresses are the addresses of link, of both families.
func linkAddresses(h *netlink.Handle, link netlink.Link) ([]netip.Prefix, error) {
	var addrs []netlink.Addr
	var err error
	// A dump interrupted by a concurrent change may be incomplete: ask
	// again.
	for range 3 {
		if addrs, err = h.AddrList(link, netlink.FAMILY_ALL); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}

// addAddress adds p to link. Its outcome is Added, Present (added meanwhile),
// Skipped (IPv6 disabled, with the reason), or empty with the error.
func addAddress(h *netlink.Handle, link netlink.Link, p netip.Prefix) (Outcome, error) {
	a := &netlink.Addr{IPNet: &net.IPNet{
		IP:   net.IP(p.Addr().AsSlice()),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}}
	if p.Addr().Is6() {
		// No duplicate address detection: the agent listens right after,
		// and a tentative address cannot be bound. (A dummy interface skips
		// it anyway, being NOARP.)
		a.Flags = unix.IFA_F_NODAD
	}
	err := h.AddrAdd(link, a)
	switch {
	case err == nil:
		return Added, nil
	case errors.Is(err, unix.EEXIST):
		return Present, nil
	case p.Addr().Is6() && ipv6Unavailable(err):
		return Skipped, fmt.Errorf("IPv6 is disabled on this node: %w", err)
	}
	return "", err
}

// ipv6Unavailable reports whether err is the kernel refusing an IPv6 address
// because the node has no IPv6: EACCES when net.ipv6.conf.*.disable_ipv6 is
// 1, EAFNOSUPPORT when the kernel was booted with ipv6.disable=1,
// EOPNOTSUPP when it has no IPv6 at all.
func ipv6Unavailable(err error) bool {
	return errors.Is(err, unix.EACCES) || errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP)
}

// explain adds what to do to a permission error.
func explain(err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%w (this needs CAP_NET_ADMIN in the node's network namespace: run it in a privileged init container with hostNetwork)", err)
	}
	return err
}

//go:build linux

package netinit

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// enterNewNetns moves the test's goroutine into a new, empty network
// namespace, so that the node's own network is never touched. The goroutine
// stays locked to its thread, which therefore ends with the test instead of
// going back to the pool with the namespace. It returns the interface type
// to create: dummy, or ifb (also NOARP, always up) on a kernel built without
// the dummy driver.
func enterNewNetns(t *testing.T) (kind string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN to create a network namespace, CAP_NET_ADMIN in it); CI runs these as root")
	}
	runtime.LockOSThread() // never unlocked, on purpose
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare(CLONE_NEWNET): %v", err)
	}
	probe := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "probe0"}}
	switch err := netlink.LinkAdd(probe); {
	case err == nil:
		if err := netlink.LinkDel(probe); err != nil {
			t.Fatal(err)
		}
		return "dummy"
	case errors.Is(err, unix.EOPNOTSUPP):
		t.Log("the kernel has no dummy driver; testing with an ifb interface")
		return "ifb"
	default:
		t.Fatalf("probing for the dummy driver: %v", err)
	}
	return ""
}

// checkLink checks, with netlink and by listening, that the interface is
// up with exactly the addresses want (in the namespace of the test).
func checkLink(t *testing.T, name, kind string, want ...string) {
	t.Helper()
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("interface %s: %v", name, err)
	}
	if link.Type() != kind || link.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("interface %s: type %q, flags %v; want %s, up", name, link.Type(), link.Attrs().Flags, kind)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() && a.IP.To4() == nil {
			continue // the kernel's own fe80:: address
		}
		got = append(got, a.IPNet.String())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("interface %s has addresses %q, want %q", name, got, want)
	}
	// The agent must be able to listen on each.
	for _, w := range want {
		ip, _, _ := net.ParseCIDR(w)
		ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
		if err != nil {
			t.Errorf("listening on %s: %v", ip, err)
			continue
		}
		ln.Close()
	}
}

// outcomes renders a result's addresses as "ADDRESS=OUTCOME".
func outcomes(res Result) []string {
	var out []string
	for _, a := range res.Addresses {
		out = append(out, fmt.Sprintf("%s=%s", a.Prefix, a.Outcome))
	}
	return out
}

// Apply creates the interface with both addresses, up; run again it finds
// everything in place and changes nothing.
func TestApplyIdempotent(t *testing.T) {
	kind := enterNewNetns(t)
	cfg := Config{Interface: DefaultInterface, Addresses: DefaultAddresses()}
	for i, want := range []struct {
		created  bool
		outcomes []string
	}{
		{true, []string{"169.254.170.23/32=added", "fd00:ec2::23/128=added"}},
		{false, []string{"169.254.170.23/32=present", "fd00:ec2::23/128=present"}},
	} {
		res, err := apply(cfg, kind)
		if err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		if res.Interface != DefaultInterface || res.Created != want.created || !slices.Equal(outcomes(res), want.outcomes) {
			t.Errorf("run %d: %+v; want created=%v, %q", i+1, res, want.created, want.outcomes)
		}
		checkLink(t, DefaultInterface, kind, "169.254.170.23/32", "fd00:ec2::23/128")
	}
}

// An interface left down with one of the addresses (a node half set up) is
// set up and given the other.
func TestApplyCompletesExistingInterface(t *testing.T) {
	kind := enterNewNetns(t)
	link := &netlink.GenericLink{LinkAttrs: netlink.LinkAttrs{Name: "agent0"}, LinkType: kind}
	if err := netlink.LinkAdd(link); err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("169.254.170.23"), Mask: net.CIDRMask(32, 32)}}); err != nil {
		t.Fatal(err)
	}
	res, err := apply(Config{Interface: "agent0", Addresses: DefaultAddresses()}, kind)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"169.254.170.23/32=present", "fd00:ec2::23/128=added"}; res.Created || !slices.Equal(outcomes(res), want) {
		t.Errorf("%+v; want created=false, %q", res, want)
	}
	checkLink(t, "agent0", kind, "169.254.170.23/32", "fd00:ec2::23/128")
}

// On a node with IPv6 disabled, the IPv6 address is skipped with the reason
// and the IPv4 one is in place; the agent then serves IPv4 only.
func TestApplyIPv6Disabled(t *testing.T) {
	kind := enterNewNetns(t)
	// Written from this thread: the namespace's own setting.
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/all/disable_ipv6", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Interface: DefaultInterface, Addresses: DefaultAddresses()}
	for i, wantV4 := range []Outcome{Added, Present} {
		res, err := apply(cfg, kind)
		if err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		want := []string{"169.254.170.23/32=" + string(wantV4), "fd00:ec2::23/128=skipped"}
		if !slices.Equal(outcomes(res), want) {
			t.Fatalf("run %d: %q, want %q", i+1, outcomes(res), want)
		}
		if err := res.Addresses[1].Err; !errors.Is(err, unix.EACCES) || !strings.Contains(err.Error(), "IPv6 is disabled") {
			t.Errorf("run %d: skipped because %v; want EACCES, saying IPv6 is disabled", i+1, err)
		}
		checkLink(t, DefaultInterface, kind, "169.254.170.23/32")
	}

	// IPv6 addresses only: nothing to listen on is an error.
	_, err := apply(Config{Interface: "v6only", Addresses: DefaultAddresses()[1:]}, kind)
	if err == nil || !strings.Contains(err.Error(), "no address could be put on interface v6only") || !errors.Is(err, unix.EACCES) {
		t.Errorf("IPv6 only: %v; want an error saying no address could be put", err)
	}
}

// An interface of another type with the name is an error naming it, and is
// left as it was.
func TestApplyRefusesOtherInterfaceType(t *testing.T) {
	kind := enterNewNetns(t)
	bridge := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: DefaultInterface}}
	if err := netlink.LinkAdd(bridge); err != nil {
		t.Fatal(err)
	}
	_, err := apply(Config{Interface: DefaultInterface, Addresses: DefaultAddresses()}, kind)
	if err == nil || !strings.Contains(err.Error(), `interface pod-id-link0 exists and is of type "bridge"`) {
		t.Fatalf("apply = %v; want an error naming the bridge", err)
	}
	link, err := netlink.LinkByName(DefaultInterface)
	if err != nil {
		t.Fatal(err)
	}
	if addrs, _ := netlink.AddrList(link, netlink.FAMILY_V4); len(addrs) != 0 || link.Attrs().Flags&net.FlagUp != 0 {
		t.Errorf("the bridge was changed: addresses %v, flags %v", addrs, link.Attrs().Flags)
	}
}

// Invalid configuration is refused before the kernel is asked anything.
func TestApplyValidatesFirst(t *testing.T) {
	kind := enterNewNetns(t)
	_, err := apply(Config{Interface: "bad/name", Addresses: DefaultAddresses()}, kind)
	if err == nil || !strings.Contains(err.Error(), "bad/name") {
		t.Fatalf("apply = %v; want the name refused", err)
	}
	if links, err := netlink.LinkList(); err != nil || len(links) != 1 { // lo
		t.Errorf("links after a refused configuration: %v, %v", links, err)
	}
}

func TestIPv6Unavailable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{unix.EACCES, true},
		{fmt.Errorf("%w: IPv6 is disabled on this device", unix.EACCES), true},
		{unix.EAFNOSUPPORT, true},
		{unix.EOPNOTSUPP, true},
		{unix.EPERM, false},
		{unix.EEXIST, false},
		{unix.EINVAL, false},
		{errors.New("other"), false},
	}
	for _, tc := range tests {
		if got := ipv6Unavailable(tc.err); got != tc.want {
			t.Errorf("ipv6Unavailable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// A permission error says which capability is missing.
func TestExplain(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{syscall.EPERM, "CAP_NET_ADMIN"},
		{fmt.Errorf("wrapped: %w", unix.EPERM), "CAP_NET_ADMIN"},
		{unix.EINVAL, "invalid argument"},
	}
	for _, tc := range tests {
		got := explain(tc.err)
		if !strings.Contains(got.Error(), tc.want) || !errors.Is(got, tc.err) {
			t.Errorf("explain(%v) = %v, want it to say %q and wrap the error", tc.err, got, tc.want)
		}
		if tc.want != "CAP_NET_ADMIN" && strings.Contains(got.Error(), "CAP_NET_ADMIN") {
			t.Errorf("explain(%v) = %v: not a permission error", tc.err, got)
		}
	}
}

// The addresses are read back as the prefixes that were added.
func TestLinkAddresses(t *testing.T) {
	kind := enterNewNetns(t)
	if _, err := apply(Config{Interface: "agent0", Addresses: []netip.Prefix{
		netip.MustParsePrefix("169.254.170.23/32"), netip.MustParsePrefix("10.9.8.7/24"), netip.MustParsePrefix("fd00:ec2::23/128"),
	}}, kind); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	link, err := h.LinkByName("agent0")
	if err != nil {
		t.Fatal(err)
	}
	got, err := linkAddresses(h, link)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"169.254.170.23/32", "10.9.8.7/24", "fd00:ec2::23/128"} {
		if !slices.Contains(got, netip.MustParsePrefix(want)) {
			t.Errorf("linkAddresses = %v, want %s among them", got, want)
		}
	}
}

// Apply creates a dummy interface; on a kernel without the dummy driver it
// says so.
func TestApplyDummy(t *testing.T) {
	kind := enterNewNetns(t)
	res, err := Apply(Config{Interface: DefaultInterface, Addresses: DefaultAddresses()})
	if kind != "dummy" {
		if err == nil || !strings.Contains(err.Error(), "the kernel has no dummy driver") || !errors.Is(err, unix.EOPNOTSUPP) {
			t.Fatalf("Apply without a dummy driver = %v; want an error saying so", err)
		}
		return
	}
	if err != nil || !res.Created {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	checkLink(t, DefaultInterface, "dummy", "169.254.170.23/32", "fd00:ec2::23/128")
}

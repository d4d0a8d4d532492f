//go:build linux

package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// `podiam agent init` run for real, in a new network namespace of this
// test's own (the machine's network is never touched): twice, the second
// run finding everything in place. On a kernel without the dummy driver it
// fails with exit status 1, saying so.
func TestAgentInitInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN to create a network namespace, CAP_NET_ADMIN in it); CI runs this as root")
	}
	runtime.LockOSThread() // never unlocked: the thread ends with the test, with its namespace
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare(CLONE_NEWNET): %v", err)
	}
	for run, want := range []string{`"msg":"interface created"`, `"msg":"interface already there"`} {
		var stderr bytes.Buffer
		root := newRootCommand()
		root.SetArgs([]string{"agent", "init", "--interface=podiam-test0"})
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&stderr)
		err := root.Execute()
		if errors.Is(err, unix.EOPNOTSUPP) {
			if exitCode(err) != exitInitFailed || !strings.Contains(err.Error(), "setting up interface podiam-test0: creating dummy interface podiam-test0") ||
				!strings.Contains(err.Error(), "the kernel has no dummy driver") {
				t.Fatalf("without a dummy driver: %v (exit %d)", err, exitCode(err))
			}
			t.Log("the kernel has no dummy driver (CONFIG_DUMMY), and the error says so; internal/agent/netinit tests the rest with an ifb interface")
			return
		}
		if err != nil {
			t.Fatalf("run %d: %v\n%s", run+1, err, stderr.String())
		}
		if !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), `"addresses":["169.254.170.23","fd00:ec2::23"]`) {
			t.Errorf("run %d logged:\n%s\nwant %s and both addresses", run+1, stderr.String(), want)
		}
	}
	link, err := netlink.LinkByName("podiam-test0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || !addrs[0].IP.Equal(net.ParseIP("169.254.170.23")) || link.Type() != "dummy" || link.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("interface %s (%s, %v): IPv4 addresses %v, %v", link.Attrs().Name, link.Type(), link.Attrs().Flags, addrs, err)
	}
}

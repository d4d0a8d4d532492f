package netinit

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "169.254.170.23", want: "169.254.170.23/32"},
		{in: "fd00:ec2::23", want: "fd00:ec2::23/128"},
		{in: "[fd00:ec2::23]", want: "fd00:ec2::23/128"},
		{in: "169.254.170.23/32", want: "169.254.170.23/32"},
		{in: "fd00:ec2::23/128", want: "fd00:ec2::23/128"},
		{in: "[fd00:ec2::23/64]", want: "fd00:ec2::23/64"},
		{in: "10.1.2.3/24", want: "10.1.2.3/24"},
		{in: "", wantErr: "want an IP address"},
		{in: "pod-id", wantErr: "want an IP address"},
		{in: "169.254.170.23:80", wantErr: "want an IP address"},
		{in: "169.254.170.23/33", wantErr: "want an IP address"},
		{in: "fe80::1%eth0", wantErr: "zone"},
		{in: "::ffff:169.254.170.23", wantErr: "IPv4-mapped"},
		{in: "0.0.0.0", wantErr: "not a unicast"},
		{in: "::", wantErr: "not a unicast"},
		{in: "127.0.0.1", wantErr: "not a unicast"},
		{in: "224.0.0.1/32", wantErr: "not a unicast"},
		{in: "ff02::1", wantErr: "not a unicast"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseAddress(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseAddress(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("ParseAddress(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestValidInterfaceName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string
	}{
		{name: DefaultInterface},
		{name: "a"},
		{name: "fifteen-bytes-x"},
		{name: "", wantErr: "empty"},
		{name: "sixteen-bytes-xx", wantErr: "at most 15"},
		{name: ".", wantErr: "not allowed"},
		{name: "..", wantErr: "not allowed"},
		{name: "a/b", wantErr: "white space"},
		{name: "a:1", wantErr: "white space"},
		{name: "a b", wantErr: "white space"},
		{name: "a\tb", wantErr: "white space"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidInterfaceName(tc.name)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidInterfaceName(%q) = %v", tc.name, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ValidInterfaceName(%q) = %v, want an error with %q", tc.name, err, tc.wantErr)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	pp := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string
	}{
		{name: "defaults", cfg: Config{Interface: DefaultInterface, Addresses: DefaultAddresses()}},
		{name: "one address", cfg: Config{Interface: "x", Addresses: pp("169.254.170.23/32")}},
		{name: "no address", cfg: Config{Interface: "x"}, wantErr: []string{"no address"}},
		{name: "no interface", cfg: Config{Addresses: DefaultAddresses()}, wantErr: []string{"interface name is empty"}},
		{name: "twice", cfg: Config{Interface: "x", Addresses: pp("169.254.170.23/32", "169.254.170.23/16")},
			wantErr: []string{"169.254.170.23 is given twice"}},
		{name: "bad address", cfg: Config{Interface: "x", Addresses: pp("127.0.0.1/8")}, wantErr: []string{"not a unicast"}},
		{name: "zero address", cfg: Config{Interface: "x", Addresses: []netip.Prefix{{}}}, wantErr: []string{"empty"}},
		{name: "all at once", cfg: Config{Interface: "a/b"}, wantErr: []string{"white space", "no address"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors with %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to say %q", err, w)
				}
			}
		})
	}
}

// The defaults are the agent's link-local addresses, as ParseAddress reads
// their spelling in the agent's --bind-hosts.
func TestDefaultAddresses(t *testing.T) {
	var got []netip.Prefix
	for _, s := range []string{"169.254.170.23", "[fd00:ec2::23]"} {
		p, err := ParseAddress(s)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	if !slices.Equal(got, DefaultAddresses()) {
		t.Errorf("DefaultAddresses() = %v, want %v", DefaultAddresses(), got)
	}
}

func TestMissing(t *testing.T) {
	v4, v6 := netip.MustParsePrefix("169.254.170.23/32"), netip.MustParsePrefix("fd00:ec2::23/128")
	tests := []struct {
		name       string
		want, have []netip.Prefix
		missing    []netip.Prefix
	}{
		{name: "none there", want: []netip.Prefix{v4, v6}, missing: []netip.Prefix{v4, v6}},
		{name: "all there", want: []netip.Prefix{v4, v6}, have: []netip.Prefix{v6, v4}},
		{name: "v6 missing", want: []netip.Prefix{v4, v6}, have: []netip.Prefix{v4, netip.MustParsePrefix("fe80::1/64")}, missing: []netip.Prefix{v6}},
		// The address with another length is there: the node answers on it.
		{name: "other length", want: []netip.Prefix{v4}, have: []netip.Prefix{netip.MustParsePrefix("169.254.170.23/16")}},
		// A subnet containing the address is not the address.
		{name: "subnet only", want: []netip.Prefix{v4}, have: []netip.Prefix{netip.MustParsePrefix("169.254.0.1/16")}, missing: []netip.Prefix{v4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := missing(tc.want, tc.have); !slices.Equal(got, tc.missing) {
				t.Errorf("missing(%v, %v) = %v, want %v", tc.want, tc.have, got, tc.missing)
			}
		})
	}
}

package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/podiam/podiam/internal/webhook"
	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

// parseAgentFlags parses args as `podiam agent` does and validates them,
// with env standing in for the process environment.
func parseAgentFlags(t *testing.T, env map[string]string, args ...string) (*agentFlags, agentValidated, error) {
	t.Helper()
	cmd, f := agentCommand()
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("parsing %q: %v", args, err)
	}
	v, err := validateAgentFlags(f, func(k string) string { return env[k] })
	return f, v, err
}

// Good flags give the listen addresses and cache size the agent uses.
func TestValidateAgentFlagsAccepts(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		wantNode  string
		wantAddrs []string
		wantCache int
	}{
		{"Amazon's defaults", nil, []string{"--cluster-name=prod", "--node-name=node-1"},
			"node-1", []string{"169.254.170.23:80", "[fd00:ec2::23]:80"}, 2000},
		{"node from $NODE_NAME, shorthands", map[string]string{"NODE_NAME": "ip-10-0-0-1.ec2.internal"},
			[]string{"-c", "prod", "-p", "8080", "-b", "127.0.0.1", "-b", "[::1]"},
			"ip-10-0-0-1.ec2.internal", []string{"127.0.0.1:8080", "[::1]:8080"}, 2000},
		{"--node-name wins over $NODE_NAME", map[string]string{"NODE_NAME": "other"},
			[]string{"-c", "prod", "--node-name=node-1", "--bind-hosts=fd00::1"}, "node-1", []string{"[fd00::1]:80"}, 2000},
		{"--listen replaces --bind-hosts and --port", nil,
			[]string{"-c", "prod", "--node-name=n", "--listen=127.0.0.1:0", "--listen", "[::1]:8080", "-p", "81"},
			"n", []string{"127.0.0.1:0", "[::1]:8080"}, 2000},
		{"retention 0 disables the cache, as Amazon's", nil,
			[]string{"-c", "prod", "--node-name=n", "--max-credential-retention-before-renewal=0"},
			"n", []string{"169.254.170.23:80", "[fd00:ec2::23]:80"}, 0},
		{"podiam auth", nil,
			[]string{"-c", "prod", "--node-name=n", "--backend=podiam", "--auth-url=https://podiam-auth.podiam-system.svc:8443",
				"--auth-token-file=/var/run/token", "--auth-ca-file=/etc/ca.crt", "--max-cache-size=0", "--pod-rate-limit=0"},
			"n", []string{"169.254.170.23:80", "[fd00:ec2::23]:80"}, 0},
		{"eks with --endpoint and --rotate-credentials", nil,
			[]string{"-c", "prod", "--node-name=n", "--endpoint=http://127.0.0.1:9000", "--rotate-credentials", "--max-service-qps=0"},
			"n", []string{"169.254.170.23:80", "[fd00:ec2::23]:80"}, 2000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, v, err := parseAgentFlags(t, tt.env, tt.args...)
			if err != nil {
				t.Fatalf("%q: %v", tt.args, err)
			}
			if v.nodeName != tt.wantNode || !slices.Equal(v.listen, tt.wantAddrs) || v.maxCacheSize != tt.wantCache {
				t.Errorf("node %q, listen %q, cache %d; want %q, %q, %d", v.nodeName, v.listen, v.maxCacheSize, tt.wantNode, tt.wantAddrs, tt.wantCache)
			}
		})
	}
}

// Each bad value fails with an error that names its flag and says why.
func TestValidateAgentFlagsRejects(t *testing.T) {
	base := []string{"-c", "prod", "--node-name=n"}
	podiam := append(slices.Clone(base), "--backend=podiam", "--auth-url=https://auth", "--auth-token-file=/t")
	tests := []struct {
		name string
		args []string
		want []string // substrings, each in the error
	}{
		{"no cluster name", []string{"--node-name=n"}, []string{"--cluster-name is required"}},
		{"bad cluster name", []string{"-c", "prod/x", "--node-name=n"}, []string{`--cluster-name="prod/x"`}},
		{"no node name", []string{"-c", "prod"}, []string{"--node-name is required", "$NODE_NAME"}},
		{"bad node name", []string{"-c", "prod", "--node-name=Node_1"}, []string{`--node-name="Node_1": not a valid node name`}},
		{"port 0", append(slices.Clone(base), "-p", "0"), []string{"--port=0"}},
		{"listen without port", append(slices.Clone(base), "--listen=127.0.0.1"), []string{`--listen="127.0.0.1": want ADDRESS:PORT`}},
		{"listen bad port", append(slices.Clone(base), "--listen=127.0.0.1:http"), []string{`--listen="127.0.0.1:http"`}},
		{"listen without host", append(slices.Clone(base), "--listen=:80"), []string{`--listen=":80"`}},
		{"bad bind host", append(slices.Clone(base), "-b", "fd00::1::2"), []string{`--bind-hosts="fd00::1::2"`}},
		{"empty bind host", append(slices.Clone(base), "-b", "[]"), []string{`--bind-hosts="[]"`}},
		{"unspecified bind hosts", append(slices.Clone(base), "-b", "0.0.0.0", "-b", "[::]", "-b", "::ffff:0.0.0.0"),
			[]string{`--bind-hosts="0.0.0.0": an unspecified address`, `--bind-hosts="[::]"`, `--bind-hosts="::ffff:0.0.0.0"`}},
		{"unspecified listen", append(slices.Clone(base), "--listen=0.0.0.0:80", "--listen=[::]:8080"),
			[]string{`--listen="0.0.0.0:80": an unspecified address`, `--listen="[::]:8080"`}},
		{"no metrics address", append(slices.Clone(base), "--metrics-address="), []string{"--metrics-address is empty"}},
		{"unknown backend", append(slices.Clone(base), "--backend=sts"), []string{`--backend="sts": want podiam or eks`}},
		{"podiam without url", append(slices.Clone(base), "--backend=podiam", "--auth-token-file=/t"), []string{"--backend=podiam needs --auth-url=https://"}},
		{"podiam over http", append(slices.Clone(base), "--backend=podiam", "--auth-url=http://auth", "--auth-token-file=/t"),
			[]string{"needs --auth-url=https://", `"http://auth"`}},
		{"podiam without token", append(slices.Clone(base), "--backend=podiam", "--auth-url=https://auth"), []string{"--backend=podiam needs --auth-token-file"}},
		{"podiam with --endpoint", append(slices.Clone(podiam), "--endpoint=https://x"), []string{"--endpoint is EKS Auth's"}},
		{"podiam with --rotate-credentials", append(slices.Clone(podiam), "--rotate-credentials"), []string{"--rotate-credentials is for --backend=eks"}},
		{"eks with podiam's flags", append(slices.Clone(base), "--auth-url=https://auth", "--auth-token-file=/t", "--auth-ca-file=/c"),
			[]string{"--auth-url is for --backend=podiam", "--auth-token-file is for", "--auth-ca-file is for"}},
		{"bad endpoint", append(slices.Clone(base), "--endpoint=eks-auth.example"), []string{`--endpoint="eks-auth.example": want an http(s) URL`}},
		{"issuer with spaces", append(slices.Clone(base), "--issuer= https://x"), []string{"--issuer"}},
		{"negative cache size", append(slices.Clone(base), "--max-cache-size=-1"), []string{"--max-cache-size=-1"}},
		{"negative retention", append(slices.Clone(base), "--max-credential-retention-before-renewal=-1s"), []string{"--max-credential-retention-before-renewal=-1s"}},
		{"negative qps", append(slices.Clone(base), "--max-service-qps=-1"), []string{"--max-service-qps=-1"}},
		{"negative pod rate", append(slices.Clone(base), "--pod-rate-limit=-1"), []string{"--pod-rate-limit=-1"}},
		{"NaN pod rate", append(slices.Clone(base), "--pod-rate-limit=NaN"), []string{"--pod-rate-limit=NaN"}},
		{"pod burst 0", append(slices.Clone(base), "--pod-burst=0"), []string{"--pod-burst=0"}},
		{"negative shutdown", append(slices.Clone(base), "--shutdown-delay=-1s", "--shutdown-timeout=-1s"), []string{"--shutdown-delay=-1s", "--shutdown-timeout=-1s"}},
		{"bad log flags", append(slices.Clone(base), "--log-format=xml", "--log-level=loud"), []string{`--log-format="xml"`, `--log-level="loud"`}},
		{"all at once", []string{"--backend=x", "--pod-burst=0"}, []string{"--cluster-name is required", "--node-name is required", "--backend=", "--pod-burst=0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parseAgentFlags(t, nil, tt.args...)
			if err == nil {
				t.Fatalf("%q: no error", tt.args)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q: error %q does not contain %q", tt.args, err, w)
				}
			}
		})
	}
}

// amazonAgentFlag is one row of testdata/amazon-agent-flags.txt.
type amazonAgentFlag struct {
	name, shorthand, def, sample string
}

// readAmazonAgentFlags reads the flags of Amazon's agent.
func readAmazonAgentFlags(t *testing.T) []amazonAgentFlag {
	t.Helper()
	file, err := os.Open("testdata/amazon-agent-flags.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var flags []amazonAgentFlag
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cols := strings.Split(line, "\t")
		if len(cols) != 4 {
			t.Fatalf("amazon-agent-flags.txt: %q: want 4 tab-separated columns", line)
		}
		for i, c := range cols {
			switch c {
			case `""`:
				cols[i] = ""
			case "-":
				if i == 1 {
					cols[i] = ""
				}
			}
		}
		flags = append(flags, amazonAgentFlag{cols[0], cols[1], cols[2], cols[3]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(flags) < 10 {
		t.Fatalf("amazon-agent-flags.txt has %d flags; too few to mean anything", len(flags))
	}
	return flags
}

// agentCommands are `podiam agent` and `podiam agent server`, which must
// take the same flags.
func agentCommands() map[string]*cobra.Command {
	agent := newAgentCommand()
	server, _, err := agent.Find([]string{"server"})
	if err != nil || server == agent {
		panic("podiam agent has no server subcommand")
	}
	return map[string]*cobra.Command{"agent": agent, "agent server": server}
}

// `podiam agent` and `podiam agent server` take every flag of Amazon's agent
// with its shorthand and default, in each spelling a DaemonSet may use.
func TestAgentAcceptsEveryAmazonFlag(t *testing.T) {
	for cmdName, cmd := range agentCommands() {
		for _, af := range readAmazonAgentFlags(t) {
			t.Run(cmdName+" --"+af.name, func(t *testing.T) {
				pf := cmd.Flags().Lookup(af.name)
				if pf == nil {
					t.Fatalf("--%s: not a flag of podiam %s", af.name, cmdName)
				}
				if pf.Shorthand != af.shorthand || pf.DefValue != af.def {
					t.Errorf("--%s: shorthand %q, default %q; Amazon's %q, %q", af.name, pf.Shorthand, pf.DefValue, af.shorthand, af.def)
				}
				forms := [][]string{{"--" + af.name + "=" + af.sample}, {"--" + af.name, af.sample}}
				if af.shorthand != "" {
					forms = append(forms, []string{"-" + af.shorthand, af.sample}, []string{"-" + af.shorthand + "=" + af.sample})
				}
				if pf.Value.Type() == "bool" {
					forms = [][]string{{"--" + af.name + "=" + af.sample}, {"--" + af.name}}
				}
				for _, args := range forms {
					fs := agentCommands()[cmdName].Flags()
					if err := fs.Parse(args); err != nil {
						t.Fatalf("parsing %q: %v", args, err)
					}
					got := fs.Lookup(af.name).Value.String()
					if want := af.sample; got != want && got != "["+want+"]" {
						t.Errorf("%q: value %q, want %q", args, got, want)
					}
					if len(fs.Args()) != 0 {
						t.Errorf("%q: left-over arguments %q", args, fs.Args())
					}
				}
			})
		}
	}
}

// `podiam agent server` is `podiam agent`: the same flags, defaults and help.
func TestAgentServerIsAgent(t *testing.T) {
	cmds := agentCommands()
	describe := func(fs *pflag.FlagSet) []string {
		var out []string
		fs.VisitAll(func(f *pflag.Flag) {
			out = append(out, strings.Join([]string{f.Name, f.Shorthand, f.Value.Type(), f.DefValue, f.Usage}, "|"))
		})
		return out
	}
	a, s := describe(cmds["agent"].Flags()), describe(cmds["agent server"].Flags())
	if !slices.Equal(a, s) || len(a) < 20 {
		t.Errorf("flags differ or too few:\nagent:  %q\nserver: %q", a, s)
	}
}

// The README's `podiam agent` flags section lists every flag with its
// default.
func TestREADMEListsEveryAgentFlag(t *testing.T) {
	checkREADMEFlagTable(t, "### `podiam agent` flags", newAgentCommand().Flags(), 25)
}

// checkREADMEFlagTable checks that the README section under heading names
// every visible flag of fs, and that a table row giving a default as code
// gives the flag's own (each item of a list default); at least minFlags
// flags must be checked.
func checkREADMEFlagTable(t *testing.T, heading string, fs *pflag.FlagSet, minFlags int) {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), heading)
	if !ok {
		t.Fatalf("README.md has no %q section", heading)
	}
	if end := strings.Index(section, "\n#"); end >= 0 {
		section = section[:end]
	}
	// The table's rows: | `--flag`[, `-f`] | default | meaning |.
	var rows [][]string
	for line := range strings.Lines(section) {
		if cells := strings.Split(line, "|"); len(cells) >= 4 && strings.Contains(cells[1], "`--") {
			rows = append(rows, cells[1:3])
		}
	}
	n := 0
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Name == "help" {
			return
		}
		n++
		if !flagNamed(f.Name).MatchString(section) {
			t.Errorf("README.md's %q section does not list --%s", heading, f.Name)
			return
		}
		defs := []string{readmeDefault(f.DefValue)}
		if strings.HasSuffix(f.Value.Type(), "Array") || strings.HasSuffix(f.Value.Type(), "Slice") {
			defs = strings.Split(strings.TrimSuffix(strings.TrimPrefix(f.DefValue, "["), "]"), ",")
		}
		for _, r := range rows {
			if !flagNamed(f.Name).MatchString(r[0]) || !strings.Contains(r[1], "`") {
				continue
			}
			if f.Shorthand != "" && !strings.Contains(r[0], "`-"+f.Shorthand+"`") {
				t.Errorf("README.md's row of --%s does not give its shorthand `-%s`", f.Name, f.Shorthand)
			}
			for _, def := range defs {
				if def != "" && !strings.Contains(r[1], "`"+def+"`") {
					t.Errorf("README.md's row of --%s gives the default %q, want `%s`", f.Name, strings.TrimSpace(r[1]), def)
				}
			}
		}
	})
	if n < minFlags {
		t.Errorf("the %q section's check saw %d flags; too few to mean anything", heading, n)
	}
}

// fakeListener is a listener that records Close.
type fakeListener struct {
	addr   string
	closed atomic.Bool
}

func (l *fakeListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (l *fakeListener) Close() error              { l.closed.Store(true); return nil }
func (l *fakeListener) Addr() net.Addr {
	ap, _ := netip.ParseAddrPort(l.addr)
	return net.TCPAddrFromAddrPort(ap)
}

// listenErr is the error net.Listen returns for errno.
func listenErr(addr string, errno syscall.Errno) error {
	return &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", errno)}
}

// An IPv6 address the node does not have is skipped with a warning while
// another address works (Amazon's agent#16); every other failure stops the
// start and closes what was opened.
func TestListenCredentials(t *testing.T) {
	const v4, v6 = "169.254.170.23:80", "[fd00:ec2::23]:80"
	tests := []struct {
		name     string
		addrs    []string
		fail     map[string]syscall.Errno
		want     []string // addresses listened on
		wantErr  string
		wantWarn bool
	}{
		{"both", []string{v4, v6}, nil, []string{v4, v6}, "", false},
		{"no IPv6 address", []string{v4, v6}, map[string]syscall.Errno{v6: syscall.EADDRNOTAVAIL}, []string{v4}, "", true},
		{"no IPv6 at all", []string{v6, v4}, map[string]syscall.Errno{v6: syscall.EAFNOSUPPORT}, []string{v4}, "", true},
		{"IPv6 port taken", []string{v4, v6}, map[string]syscall.Errno{v6: syscall.EADDRINUSE}, nil, "listening on [fd00:ec2::23]:80", false},
		{"IPv6 permission", []string{v4, v6}, map[string]syscall.Errno{v6: syscall.EACCES}, nil, "listening on [fd00:ec2::23]:80", false},
		{"no IPv4 address", []string{v6, v4}, map[string]syscall.Errno{v4: syscall.EADDRNOTAVAIL}, nil, "listening on 169.254.170.23:80", false},
		{"only IPv6, missing", []string{v6}, map[string]syscall.Errno{v6: syscall.EADDRNOTAVAIL}, nil, "no address to serve credentials on", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opened []*fakeListener
			listen := func(network, addr string) (net.Listener, error) {
				if errno, ok := tt.fail[addr]; ok {
					return nil, listenErr(addr, errno)
				}
				l := &fakeListener{addr: addr}
				opened = append(opened, l)
				return l, nil
			}
			var logs strings.Builder
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			lns, err := listenCredentials(tt.addrs, listen, logger)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tt.wantErr)
				}
				for _, l := range opened {
					if !l.closed.Load() {
						t.Errorf("listener %s left open after the error", l.addr)
					}
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, ln := range lns {
					got = append(got, ln.(*fakeListener).addr)
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("listening on %q, want %q", got, tt.want)
				}
			}
			if warned := strings.Contains(logs.String(), "level=WARN"); warned != tt.wantWarn {
				t.Errorf("warned %v, want %v; logs:\n%s", warned, tt.wantWarn, logs.String())
			}
		})
	}
}

// The kernel's own error for an IPv6 address that no interface has is one
// that listenCredentials skips.
func TestListenCredentialsSkipsMissingIPv6(t *testing.T) {
	lns, err := listenCredentials([]string{"127.0.0.1:0", "[fd00:ec2::23]:0"}, net.Listen, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(lns)
	if len(lns) != 1 || !strings.HasPrefix(lns[0].Addr().String(), "127.0.0.1:") {
		t.Fatalf("listening on %q, want 127.0.0.1 only", addrsOf(lns))
	}
}

// The Host header may name a listener by its address, or by the host name
// it was configured with, with the port it got.
func TestHostAddrs(t *testing.T) {
	lns := []net.Listener{&fakeListener{addr: "127.0.0.1:4321"}, &fakeListener{addr: "[::1]:80"}}
	got := hostAddrs([]string{"localhost:0", "[::1]:80"}, lns)
	want := []string{"127.0.0.1:4321", "localhost:4321", "[::1]:80", "localhost:80", "[::1]:80"}
	if !slices.Equal(got, want) {
		t.Errorf("hostAddrs = %q, want %q", got, want)
	}
}

// EKS Auth's endpoint: --endpoint, else the AWS SDK's configuration for EKS
// Auth, else its global endpoint, else the region's.
func TestEKSAuthEndpoint(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		override string
		want     string
	}{
		{"region", nil, "", "https://eks-auth.eu-west-1.api.aws"},
		{"China", map[string]string{"AWS_REGION": "cn-north-1"}, "", "https://eks-auth.cn-north-1.api.amazonwebservices.com.cn"},
		{"global endpoint", map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}, "", "http://127.0.0.1:1"},
		{"EKS Auth's endpoint", map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_EKS_AUTH": "http://127.0.0.1:2"}, "", "http://127.0.0.1:2"},
		{"--endpoint", map[string]string{"AWS_ENDPOINT_URL_EKS_AUTH": "http://127.0.0.1:2"}, "http://127.0.0.1:3", "http://127.0.0.1:3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
			t.Setenv("AWS_REGION", "eu-west-1")
			for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EKS_AUTH", "AWS_PROFILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"} {
				t.Setenv(k, "")
				os.Unsetenv(k)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, err := config.LoadDefaultConfig(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			got, err := eksAuthEndpoint(t.Context(), cfg, tt.override)
			if err != nil || got != tt.want {
				t.Errorf("eksAuthEndpoint = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// podiam auth's certificate is verified against the CA file's current pool:
// its own CA passes, another fails.
func TestVerifyWithPool(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	srv.StartTLS()
	defer srv.Close()
	own := x509.NewCertPool()
	own.AddCert(srv.Certificate())
	other := x509.NewCertPool()
	var pool atomic.Pointer[x509.CertPool]
	tr := &http.Transport{TLSClientConfig: verifyWithPool(pool.Load)}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	for _, tt := range []struct {
		name string
		pool *x509.CertPool
		ok   bool
	}{{"own CA", own, true}, {"another CA", other, false}} {
		pool.Store(tt.pool)
		tr.CloseIdleConnections() // a new handshake, with the pool as it is now
		resp, err := client.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		if (err == nil) != tt.ok {
			t.Errorf("%s: error %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

// serveAgent serves the credentials handler on every listener, probes and
// metrics on theirs, fails /readyz until every check passes and while it
// shuts down, and returns once ctx ends, with the listeners closed.
func TestServeAgent(t *testing.T) {
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	creds1, creds2, probe, metricsLn := listen(), listen(), listen(), listen()
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "agent_test_total", Help: "test"}))
	var ready atomic.Bool
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- serveAgent(ctx, agentServer{
			Handler:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "credentials") }),
			Listeners: []net.Listener{creds1, creds2}, ProbeListener: probe, MetricsListener: metricsLn, Gatherer: reg,
			Checks:        []webhook.ReadyCheck{{Name: "keys", Ready: ready.Load}},
			ShutdownDelay: 300 * time.Millisecond, ShutdownTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler),
		})
	}()
	get := func(ln net.Listener, path string) (int, string) {
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	expect := func(ln net.Listener, path string, wantCode int, wantBody string) {
		t.Helper()
		if code, body := get(ln, path); code != wantCode || !strings.Contains(body, wantBody) {
			t.Errorf("GET %s on %s: %d %q, want %d %q", path, ln.Addr(), code, body, wantCode, wantBody)
		}
	}
	expect(creds1, "/v1/credentials", 200, "credentials")
	expect(creds2, "/v1/credentials", 200, "credentials")
	expect(probe, "/healthz", 200, "ok")
	expect(probe, "/readyz", 503, "not ready: keys")
	expect(metricsLn, "/metrics", 200, "agent_test_total")
	expect(metricsLn, "/readyz", 404, "")
	ready.Store(true)
	expect(probe, "/readyz", 200, "ok")

	cancel()
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, "readiness to fail while shutting down", func() (bool, string) {
		code, body := get(probe, "/readyz")
		return code == 503 && strings.Contains(body, "shutting down"), strconv.Itoa(code) + " " + body
	})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serveAgent: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serveAgent did not return after ctx ended")
	}
	for _, ln := range []net.Listener{creds1, creds2, probe, metricsLn} {
		if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			t.Errorf("%s still accepts connections", ln.Addr())
		}
	}
}

// TestServeAgentBounds checks the bounds of the credentials endpoint, open to
// every pod of the node: a cap on open connections (one more waits until one
// closes), headers of at most 24 KiB, and idle connections closed.
func TestServeAgentBounds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- serveAgent(ctx, agentServer{
			Handler:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "credentials") }),
			Listeners: []net.Listener{ln}, MaxConns: 1,
			ShutdownTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler),
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveAgent: %v", err)
		}
	}()
	get := func(header string) (int, error) {
		c := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
		req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/v1/credentials", nil)
		req.Header.Set("Authorization", header)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	tests := []struct {
		name   string
		header string
		want   int
	}{
		{"a token", strings.Repeat("t", 2<<10), http.StatusOK},
		{"headers near the cap", strings.Repeat("t", 20<<10), http.StatusOK},
		// net/http allows 4 KiB more than MaxHeaderBytes.
		{"headers over 24 KiB", strings.Repeat("t", 30<<10), http.StatusRequestHeaderFieldsTooLarge},
	}
	for _, tt := range tests {
		if code, err := get(tt.header); code != tt.want {
			t.Errorf("%s: %d %v, want %d", tt.name, code, err, tt.want)
		}
	}
	// One connection held open: a request on another waits past its timeout.
	held, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, "the cap to hold a second connection back", func() (bool, string) {
		code, err := get("tok")
		return err != nil, fmt.Sprint(code, err)
	})
	held.Close()
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, "a request once the held connection closed", func() (bool, string) {
		code, err := get("tok")
		return code == http.StatusOK, fmt.Sprint(code, err)
	})
}

// A listener that fails stops serveAgent with its error.
func TestServeAgentStopsOnError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	broken := &fakeListener{addr: "127.0.0.1:1"}
	broken.closed.Store(true)
	err = serveAgent(t.Context(), agentServer{
		Handler: http.NotFoundHandler(), Listeners: []net.Listener{ln, failingListener{broken}},
		ShutdownTimeout: time.Second, Logger: slog.New(slog.DiscardHandler),
	})
	if err == nil || !strings.Contains(err.Error(), "serving on 127.0.0.1:1") {
		t.Fatalf("serveAgent = %v, want the listener's error", err)
	}
}

// failingListener fails Accept with an error that is not net.ErrClosed.
type failingListener struct{ *fakeListener }

func (failingListener) Accept() (net.Conn, error) { return nil, errors.New("accept: broken") }

// runAgent against a real API server: it becomes ready once it has the
// cluster's keys and the node's pods, serves the credentials endpoint on the
// IPv4 address while the missing IPv6 one is skipped, checks the Host header
// and Authorization before any backend call, serves /metrics, and stops
// cleanly on SIGTERM (ctx).
func TestRunAgent(t *testing.T) {
	c := testcluster.StartForTest(t, testcluster.Options{})
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("agent-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	ports, err := testutil.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	// Log to nowhere: runAgent installs its logger globally.
	t.Cleanup(func() { slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil))) })
	f, _, err := parseAgentFlags(t, map[string]string{"NODE_NAME": "node-1"}, "--cluster-name=prod", "--node-name=node-1",
		"--kubeconfig="+c.Kubeconfig(), "--backend=podiam", "--auth-url=https://127.0.0.1:1", "--auth-token-file="+token,
		"--listen="+addr, "--listen=[fd00:ec2::23]:"+strconv.Itoa(ports[0]),
		"--probe-port="+strconv.Itoa(ports[1]), "--metrics-address=127.0.0.1", "--metrics-port="+strconv.Itoa(ports[2]),
		"--log-level=error")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runAgent(ctx, *f) }()

	get := func(url, host string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	probe := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	testutil.Eventually(t, time.Minute, 50*time.Millisecond, "the agent to be ready", func() (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("runAgent returned early: %v", err)
		default:
		}
		code, body := get(probe+"/readyz", "")
		return code == http.StatusOK, strconv.Itoa(code) + " " + body
	})
	if code, _ := get(probe+"/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	for _, tt := range []struct {
		host string
		want int
	}{{"", http.StatusBadRequest}, {"localhost:" + strconv.Itoa(ports[0]), http.StatusForbidden}, {"169.254.170.23", http.StatusForbidden}} {
		if code, body := get("http://"+addr+"/v1/credentials", tt.host); code != tt.want {
			t.Errorf("GET /v1/credentials with Host %q and no token: %d %q, want %d", tt.host, code, body, tt.want)
		}
	}
	if code, body := get("http://127.0.0.1:"+strconv.Itoa(ports[2])+"/metrics", ""); code != http.StatusOK ||
		!strings.Contains(body, `podiam_agent_requests_total{code="400"} 1`) || !strings.Contains(body, `podiam_agent_requests_total{code="403"} 2`) {
		t.Errorf("/metrics: %d, want the requests counted:\n%s", code, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runAgent: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("runAgent did not stop")
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Errorf("%s still accepts connections", addr)
	}
}

// awsTestEnv gives the AWS SDK an environment of the test's own: no
// credentials, config files or IMDS but those the test sets.
func awsTestEnv(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"AWS_SESSION_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EKS_AUTH",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	return dir
}

// Each backend gets its endpoint and authentication from its flags; what
// it cannot work without stops the start.
func TestNewAgentBackend(t *testing.T) {
	base := []string{"-c", "prod", "--node-name=n"}
	tests := []struct {
		name         string
		env          map[string]string
		args         []string
		wantEndpoint string
		wantAuth     string // the authenticator's type
		wantErr      string
	}{
		{"eks", map[string]string{"AWS_REGION": "eu-west-1"}, nil, "https://eks-auth.eu-west-1.api.aws", "*eksauth.SigV4", ""},
		{"eks --endpoint", map[string]string{"AWS_REGION": "eu-west-1"}, []string{"--endpoint=http://127.0.0.1:9"}, "http://127.0.0.1:9", "*eksauth.SigV4", ""},
		{"eks without region", nil, nil, "", "", "no AWS region"},
		{"podiam", nil, []string{"--backend=podiam", "--auth-url=https://auth:8443", "--auth-token-file=/t"}, "https://auth:8443", "*eksauth.BearerTokenFile", ""},
		{"podiam, CA file missing", nil, []string{"--backend=podiam", "--auth-url=https://auth", "--auth-token-file=/t", "--auth-ca-file=/nonexistent/ca.crt"},
			"", "", "--auth-ca-file: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			awsTestEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			f, _, err := parseAgentFlags(t, nil, append(slices.Clone(base), tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			c, err := newAgentBackend(t.Context(), *f, slog.New(slog.DiscardHandler))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%T", c.Auth); c.Endpoint != tt.wantEndpoint || got != tt.wantAuth {
				t.Errorf("endpoint %q, auth %s; want %q, %s", c.Endpoint, got, tt.wantEndpoint, tt.wantAuth)
			}
		})
	}
}

// --rotate-credentials reads the shared credentials file again: what the
// file holds now is served, for at most rotateCredentialsEvery.
func TestReloadCredentials(t *testing.T) {
	dir := awsTestEnv(t)
	t.Setenv("AWS_REGION", "eu-west-1")
	write := func(key string) {
		t.Helper()
		data := "[default]\naws_access_key_id = " + key + "\naws_secret_access_key = secret\n"
		if err := os.WriteFile(filepath.Join(dir, "credentials"), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range []string{"AKIDFIRST", "AKIDSECOND"} {
		write(key)
		before := time.Now()
		creds, err := reloadCredentials(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if creds.AccessKeyID != key || !creds.CanExpire || creds.Expires.Before(before.Add(rotateCredentialsEvery)) ||
			creds.Expires.After(time.Now().Add(rotateCredentialsEvery)) {
			t.Errorf("credentials %s, expiring %v at %v; want %s, in %s", creds.AccessKeyID, creds.CanExpire, creds.Expires, key, rotateCredentialsEvery)
		}
	}
}

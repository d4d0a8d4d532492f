// Command stsload measures a running `podiam sts` over HTTP: it is the OIDC
// issuer the STS fetches keys from and the load generator, so that the script
// (hack/bench-sts.sh) only has to start the real binary in between.
//
// It serves a discovery document and the JWKS of an RSA-2048 key it generates
// over HTTPS on 127.0.0.1 (httptest's self-signed certificate, written to
// -dir/ca.pem), writes an STS config for that issuer to -dir/sts.yaml (one
// account, the provider, a role whose trust policy admits the tokens), signs a
// pool of distinct tokens, then waits for the STS at -url to answer. The first
// answered call fills the STS's key cache; every measured call then finds it
// warm. Runs, one after the other:
//
//   - web: AssumeRoleWithWebIdentity form POSTs, one token of the pool each;
//   - caller: GetCallerIdentity signed with SigV4 (aws-sdk-go-v2's signer, per
//     request, as a client does) with the credentials of one
//     AssumeRoleWithWebIdentity.
//
// Each of -c workers owns one keep-alive HTTP/1.1 connection and sends its
// requests back to back. Requests started during -warmup are not counted; of
// the others it reports requests/s, latency percentiles and the errors (with
// the first error's body). With -server-pid-file it also reports the CPU time the
// server used per request over the measured window (from /proc), which unlike
// requests/s holds up when other work shares the machine.
//
// Exit status: 0 every measured request succeeded (and -min-rps was met);
// 1 some request failed; 2 setup error; 3 no failures but -min-rps missed.
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/go-jose/go-jose/v4"
)

// Names the generated config and tokens use.
const (
	accountID = "111122223333"
	roleName  = "bench"
	audience  = "sts.amazonaws.com"
	namespace = "bench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("stsload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		dir     = fs.String("dir", "", "directory to write ca.pem and sts.yaml to (required)")
		stsURL  = fs.String("url", "", "URL of the STS, e.g. http://127.0.0.1:8080/ (required)")
		runs    = fs.String("runs", "web,caller", "comma-separated runs: web (AssumeRoleWithWebIdentity), caller (GetCallerIdentity with SigV4)")
		conc    = fs.Int("c", 4, "concurrent workers, each with its own keep-alive connection")
		dur     = fs.Duration("d", 10*time.Second, "measured duration of each run, after -warmup")
		warmup  = fs.Duration("warmup", 2*time.Second, "warm-up of each run; requests started during it are not counted")
		nTokens = fs.Int("tokens", 1000, "distinct tokens in the pool, signed before the runs")
		wait    = fs.Duration("wait", 60*time.Second, "how long to wait for the STS to answer")
		pidFile = fs.String("server-pid-file", "", "if set, a file with the STS's process id (read after the first call): report the CPU time it used per request over each measured window")
		minRPS  = fs.Float64("min-rps", 0, "if > 0, exit 3 when a web run is below this many requests/s")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || *stsURL == "" || fs.NArg() > 0 || *conc < 1 || *nTokens < 1 {
		fmt.Fprintln(stderr, "stsload: need -dir and -url, -c >= 1, -tokens >= 1 and no arguments")
		fs.Usage()
		return 2
	}
	iss, err := startIssuer()
	if err != nil {
		fmt.Fprintf(stderr, "stsload: %v\n", err)
		return 2
	}
	defer iss.srv.Close()
	if err := iss.writeFiles(*dir); err != nil {
		fmt.Fprintf(stderr, "stsload: %v\n", err)
		return 2
	}
	bodies, err := iss.webIdentityBodies(*nTokens)
	if err != nil {
		fmt.Fprintf(stderr, "stsload: signing tokens: %v\n", err)
		return 2
	}
	fmt.Fprintf(stdout, "issuer %s, %d tokens signed\n", iss.srv.URL, len(bodies))

	// The first call waits for the STS to start and fills its key cache; its
	// credentials sign the GetCallerIdentity run.
	creds, err := firstCall(*stsURL, bodies[0], *wait)
	if err != nil {
		fmt.Fprintf(stderr, "stsload: %v\n", err)
		return 2
	}

	serverPID := 0
	if *pidFile != "" {
		if serverPID, err = readPID(*pidFile); err != nil {
			fmt.Fprintf(stderr, "stsload: -server-pid-file: %v\n", err)
			return 2
		}
	}

	status := 0
	for _, name := range strings.Split(*runs, ",") {
		var newReq requestFunc
		switch name {
		case "web":
			newReq = webIdentityRequests(*stsURL, bodies)
		case "caller":
			newReq = callerIdentityRequests(*stsURL, creds)
		default:
			fmt.Fprintf(stderr, "stsload: unknown run %q\n", name)
			return 2
		}
		res := measure(name, newReq, *conc, *warmup, *dur, serverPID)
		res.write(stdout)
		switch {
		case res.failed > 0:
			status = 1
		case name == "web" && *minRPS > 0 && res.rps() < *minRPS && status == 0:
			fmt.Fprintf(stdout, "FAIL        %.0f requests/s < %.0f\n", res.rps(), *minRPS)
			status = 3
		}
	}
	return status
}

// issuer is the OIDC issuer the STS verifies the tokens against.
type issuer struct {
	srv    *httptest.Server
	key    *rsa.PrivateKey
	kid    string
	signer jose.Signer
}

// startIssuer generates the signing key and serves the discovery document and
// the JWKS over HTTPS on 127.0.0.1.
func startIssuer() (*issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating the signing key: %w", err)
	}
	jwk := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.RS256), Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("key thumbprint: %w", err)
	}
	jwk.KeyID = hex.EncodeToString(thumb[:16])
	iss := &issuer{key: key, kid: jwk.KeyID}
	iss.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", jwk.KeyID))
	if err != nil {
		return nil, fmt.Errorf("token signer: %w", err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	if err != nil {
		return nil, fmt.Errorf("encoding the JWKS: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                iss.srv.URL,
			"jwks_uri":                              iss.srv.URL + "/openid/v1/jwks",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /openid/v1/jwks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(jwks)
	})
	// httptest's certificate is self-signed for 127.0.0.1: it is its own CA.
	iss.srv = httptest.NewTLSServer(mux)
	return iss, nil
}

// hostPath is the issuer without its scheme, as IAM writes it in provider ARNs
// and condition keys.
func (iss *issuer) hostPath() string { return strings.TrimPrefix(iss.srv.URL, "https://") }

// writeFiles writes ca.pem and sts.yaml to dir; sts.yaml last and by rename,
// so that a script waiting for it finds both complete.
func (iss *issuer) writeFiles(dir string) error {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: iss.srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca, 0o644); err != nil {
		return fmt.Errorf("writing the issuer's CA: %w", err)
	}
	hp := iss.hostPath()
	config := fmt.Sprintf(`# Written by hack/stsload: the issuer it serves and the role its tokens assume.
accounts:
- id: %q
  oidcProviders:
  - url: %s
    clientIDs: [%s]
    caFile: ca.pem
  roles:
  - name: %s
    trustPolicy:
      Version: "2012-10-17"
      Statement:
      - Effect: Allow
        Principal:
          Federated: arn:aws:iam::%s:oidc-provider/%s
        Action: sts:AssumeRoleWithWebIdentity
        Condition:
          StringEquals:
            "%s:aud": %s
          StringLike:
            "%s:sub": "system:serviceaccount:%s:*"
`, accountID, iss.srv.URL, audience, roleName, accountID, hp, hp, audience, hp, namespace)
	tmp := filepath.Join(dir, ".sts.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(config), 0o644); err != nil {
		return fmt.Errorf("writing the STS config: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "sts.yaml")); err != nil {
		return fmt.Errorf("writing the STS config: %w", err)
	}
	return nil
}

// webIdentityBodies signs n tokens of distinct service accounts, valid for an
// hour, and returns the AssumeRoleWithWebIdentity form bodies carrying them.
func (iss *issuer) webIdentityBodies(n int) ([]string, error) {
	now := time.Now()
	roleARN := "arn:aws:iam::" + accountID + ":role/" + roleName
	bodies := make([]string, n)
	for i := range bodies {
		claims, err := json.Marshal(map[string]any{
			"iss": iss.srv.URL,
			"sub": fmt.Sprintf("system:serviceaccount:%s:sa-%d", namespace, i),
			"aud": []string{audience},
			"iat": now.Unix(),
			"nbf": now.Unix(),
			"exp": now.Add(time.Hour).Unix(),
			"kubernetes.io": map[string]any{
				"namespace":      namespace,
				"serviceaccount": map[string]string{"name": fmt.Sprintf("sa-%d", i), "uid": fmt.Sprintf("00000000-0000-0000-0000-%012d", i)},
			},
		})
		if err != nil {
			return nil, err
		}
		jws, err := iss.signer.Sign(claims)
		if err != nil {
			return nil, err
		}
		token, err := jws.CompactSerialize()
		if err != nil {
			return nil, err
		}
		bodies[i] = url.Values{
			"Action":           {"AssumeRoleWithWebIdentity"},
			"Version":          {"2011-06-15"},
			"RoleArn":          {roleARN},
			"RoleSessionName":  {fmt.Sprintf("bench-%d", i)},
			"WebIdentityToken": {token},
		}.Encode()
	}
	return bodies, nil
}

// requestFunc builds worker w's i-th request.
type requestFunc func(w, i int) (*http.Request, error)

const formType = "application/x-www-form-urlencoded"

// webIdentityRequests cycles each worker through the token pool, the workers
// offset from each other.
func webIdentityRequests(stsURL string, bodies []string) requestFunc {
	return func(w, i int) (*http.Request, error) {
		body := bodies[(w*len(bodies)/8+i)%len(bodies)]
		req, err := http.NewRequest(http.MethodPost, stsURL, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", formType)
		return req, nil
	}
}

// callerIdentityRequests signs every GetCallerIdentity with creds, now.
func callerIdentityRequests(stsURL string, creds aws.Credentials) requestFunc {
	const body = "Action=GetCallerIdentity&Version=2011-06-15"
	sum := sha256.Sum256([]byte(body))
	hash := hex.EncodeToString(sum[:])
	signer := v4.NewSigner()
	return func(_, _ int) (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, stsURL, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", formType)
		if err := signer.SignHTTP(context.Background(), creds, req, hash, "sts", "us-east-1", time.Now()); err != nil {
			return nil, fmt.Errorf("signing: %w", err)
		}
		return req, nil
	}
}

// firstCall sends one AssumeRoleWithWebIdentity, retrying until the STS
// answers or wait is over, and returns the credentials it issued.
func firstCall(stsURL, body string, wait time.Duration) (aws.Credentials, error) {
	deadline := time.Now().Add(wait)
	for {
		resp, err := http.Post(stsURL, formType, strings.NewReader(body))
		if err == nil {
			data, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr != nil {
				return aws.Credentials{}, fmt.Errorf("first call: %w", rerr)
			}
			if resp.StatusCode != http.StatusOK {
				return aws.Credentials{}, fmt.Errorf("first call: status %d: %s", resp.StatusCode, data)
			}
			var out struct {
				Credentials struct {
					AccessKeyID     string `xml:"AccessKeyId"`
					SecretAccessKey string `xml:"SecretAccessKey"`
					SessionToken    string `xml:"SessionToken"`
				} `xml:"AssumeRoleWithWebIdentityResult>Credentials"`
			}
			if err := xml.Unmarshal(data, &out); err != nil || out.Credentials.AccessKeyID == "" {
				return aws.Credentials{}, fmt.Errorf("first call: no credentials in %s (%v)", data, err)
			}
			c := out.Credentials
			return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}, nil
		}
		if time.Now().After(deadline) {
			return aws.Credentials{}, fmt.Errorf("the STS at %s did not answer within %s: %w", stsURL, wait, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// result is one run's outcome.
type result struct {
	name          string
	conc          int
	ok, failed    int
	elapsed       time.Duration
	lat           []time.Duration // of the ok measured requests, sorted
	firstErr      string
	serverCPU     time.Duration // -1: not measured
	serverCPUNote string
}

func (r *result) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

// percentile is the nearest-rank p-th percentile of the sorted latencies.
func (r *result) percentile(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(float64(len(r.lat))*p/100+0.5) - 1
	return r.lat[min(max(i, 0), len(r.lat)-1)]
}

func (r *result) write(w io.Writer) {
	fmt.Fprintf(w, "== %s: %d connections, %s measured\n", r.name, r.conc, r.elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "requests/s  %.0f (%d ok, %d errors)\n", r.rps(), r.ok, r.failed)
	fmt.Fprintf(w, "latency     p50 %s  p90 %s  p99 %s  max %s\n", fmtDur(r.percentile(50)),
		fmtDur(r.percentile(90)), fmtDur(r.percentile(99)), fmtDur(r.percentile(100)))
	if r.serverCPU >= 0 && r.ok+r.failed > 0 {
		per := r.serverCPU / time.Duration(r.ok+r.failed)
		fmt.Fprintf(w, "server CPU  %s per request, at most %.0f requests/s per core%s\n",
			fmtDur(per), float64(time.Second)/float64(per), r.serverCPUNote)
	}
	if r.firstErr != "" {
		fmt.Fprintf(w, "first error %s\n", r.firstErr)
	}
}

func fmtDur(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 0, 64) + "µs"
}

// measure runs conc workers for warmup+dur, each on its own keep-alive
// connection.
func measure(name string, newReq requestFunc, conc int, warmup, dur time.Duration, serverPID int) *result {
	start := time.Now()
	warmEnd, deadline := start.Add(warmup), start.Add(warmup+dur)
	type worker struct {
		ok, failed int
		lat        []time.Duration
		firstErr   string
		last       time.Time
	}
	workers := make([]worker, conc)
	var wg sync.WaitGroup
	for w := range workers {
		st := &workers[w]
		st.lat = make([]time.Duration, 0, 1<<16)
		client := &http.Client{Transport: &http.Transport{
			MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true, ForceAttemptHTTP2: false,
		}}
		wg.Go(func() {
			defer client.CloseIdleConnections()
			buf := make([]byte, 8<<10)
			for i := 0; ; i++ {
				t0 := time.Now()
				if !t0.Before(deadline) {
					return
				}
				status, body, err := do(client, newReq, w, i, buf)
				lat := time.Since(t0)
				if t0.Before(warmEnd) {
					continue
				}
				st.last = t0.Add(lat)
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("status %d: %s", status, body)
				}
				if err != nil {
					st.failed++
					if st.firstErr == "" {
						st.firstErr = err.Error()
					}
					continue
				}
				st.ok++
				st.lat = append(st.lat, lat)
			}
		})
	}
	// The server's CPU time over the measured window.
	res := &result{name: name, conc: conc, serverCPU: -1}
	var cpu0 time.Duration
	var cpuErr error
	if serverPID > 0 {
		time.Sleep(time.Until(warmEnd))
		cpu0, cpuErr = processCPU(serverPID)
	}
	wg.Wait()
	if serverPID > 0 && cpuErr == nil {
		cpu1, err := processCPU(serverPID)
		if err == nil {
			res.serverCPU = cpu1 - cpu0
			res.serverCPUNote = " (" + fmtDur(cpu1-cpu0) + " in all)"
		}
	}
	var last time.Time
	for _, st := range workers {
		res.ok += st.ok
		res.failed += st.failed
		res.lat = append(res.lat, st.lat...)
		if res.firstErr == "" {
			res.firstErr = st.firstErr
		}
		if st.last.After(last) {
			last = st.last
		}
	}
	slices.Sort(res.lat)
	if !last.IsZero() {
		res.elapsed = last.Sub(warmEnd)
	}
	return res
}

// do sends one request and reads the whole response into buf (growing it).
func do(client *http.Client, newReq requestFunc, w, i int, buf []byte) (int, []byte, error) {
	req, err := newReq(w, i)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b := bytes.NewBuffer(buf[:0])
	if _, err := b.ReadFrom(resp.Body); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("reading the response: %w", err)
	}
	return resp.StatusCode, b.Bytes(), nil
}

// processCPU is the user+system CPU time process pid has used, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func processCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from its ")".
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unexpected /proc stat format")
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// readPID reads a process id from path, waiting a little for the file: the
// script writes it just after starting the STS.
func readPID(path string) (int, error) {
	for tries := 0; ; tries++ {
		data, err := os.ReadFile(path)
		if err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
				return pid, nil
			}
		}
		if tries == 50 {
			return 0, fmt.Errorf("no process id in %s", path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

package oidc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Key IDs computed independently with OpenSSL (testdata/keys/README.md):
//
//	openssl pkey -pubin -in rsa.pub -outform DER | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d =
const (
	kidRSA  = "YwZwRR-_9XPtaNP7kZKtHwsXhW4N7hRZ4dUJqUc8nos"
	kidP256 = "Z6oEABxzF9x--uznVQ42jJv5hiCgxcxbotrCVYSdmb8"
	kidP384 = "NR2369o1X8t9cyhkcdoAe0e4nkFqrbfYmtGh2-rn7wY"
	kidP521 = "psW_79CiisE_uG6s13g9XT2t_2lwYWi6pdCsdZA_I2Y"
)

func keyFile(name string) string { return filepath.Join("testdata", "keys", name) }

// kids returns the key IDs of keys, failing t on error.
func kids(t *testing.T, keys []crypto.PublicKey) []string {
	t.Helper()
	var out []string
	for _, k := range keys {
		kid, err := KeyID(k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, kid)
	}
	return out
}

// TestLoadKeysFormats loads every format real tools write; the same key in
// another format must give the same kid as OpenSSL computes it.
func TestLoadKeysFormats(t *testing.T) {
	tests := []struct {
		files []string
		want  []string // kids, in order
	}{
		{[]string{"rsa.pub"}, []string{kidRSA}},
		{[]string{"rsa-pkcs1.pub"}, []string{kidRSA}},
		{[]string{"rsa-pkcs1.key"}, []string{kidRSA}},
		{[]string{"rsa-pkcs8.key"}, []string{kidRSA}},
		{[]string{"rsa.crt"}, []string{kidRSA}},
		{[]string{"ec-p256.pub"}, []string{kidP256}},
		{[]string{"ec-p256-params.key"}, []string{kidP256}}, // EC PARAMETERS block skipped
		{[]string{"ec-p384.key"}, []string{kidP384}},
		{[]string{"ec-p384-pkcs8.key"}, []string{kidP384}},
		{[]string{"ec-p521.key"}, []string{kidP521}},
		{[]string{"ec-p521.crt"}, []string{kidP521}},
		{[]string{"two-blocks.pem"}, []string{kidP384, kidRSA}},
		{[]string{"rsa.pub", "ec-p256.pub", "rsa-pkcs1.key"}, []string{kidRSA, kidP256, kidRSA}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.files, "+"), func(t *testing.T) {
			var files []string
			for _, f := range tt.files {
				files = append(files, keyFile(f))
			}
			keys, err := LoadKeys(files...)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				switch k.(type) {
				case *rsa.PublicKey, *ecdsa.PublicKey: // public halves only
				default:
					t.Errorf("got a %T, want *rsa.PublicKey or *ecdsa.PublicKey", k)
				}
			}
			if got := kids(t, keys); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("kids = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestLoadKeysRejects checks each bad file gives one error naming the file,
// the block and the problem, and never a line of the key.
func TestLoadKeysRejects(t *testing.T) {
	tests := []struct {
		file string
		want []string // substrings of the error, besides the file name
	}{
		{"empty.pem", []string{"file is empty"}},
		{"not-pem.txt", []string{"not PEM"}},
		{"rsa.der", []string{"not PEM", "openssl pkey -inform DER"}},
		{"rsa-encrypted-pkcs1.key", []string{`block 1 ("RSA PRIVATE KEY")`, "the key is encrypted"}},
		{"rsa-encrypted-pkcs8.key", []string{`block 1 ("ENCRYPTED PRIVATE KEY")`, "the key is encrypted"}},
		{"ed25519.key", []string{`block 1 ("PRIVATE KEY")`, "Ed25519"}},
		{"ed25519.pub", []string{`block 1 ("PUBLIC KEY")`, "Ed25519"}},
		{"rsa1024.key", []string{`block 1 ("RSA PRIVATE KEY")`, "1024 bits", "2048"}},
		{"ec-p224.key", []string{`block 1 ("EC PRIVATE KEY")`, "P-224"}},
		{"ec-secp256k1.key", []string{`block 1 ("EC PRIVATE KEY")`, "other than P-256"}},
		{"dsa.key", []string{`block 1 ("PRIVATE KEY")`, "DSA key"}},
		{"dsa.pub", []string{`block 1 ("PUBLIC KEY")`, "DSA key"}},
		{"rsa.csr", []string{`block 1 ("CERTIFICATE REQUEST")`, "unsupported PEM block type"}},
		{"no-such-file", []string{"no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := keyFile(tt.file)
			_, err := LoadKeys(keyFile("rsa.pub"), path) // a good file first: the bad one must still fail
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range append([]string{path}, tt.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			assertNoKeyMaterial(t, err, path)
		})
	}
}

// assertNoKeyMaterial fails t if err contains a base64 line of file.
func assertNoKeyMaterial(t *testing.T, err error, file string) {
	t.Helper()
	data, readErr := os.ReadFile(file)
	if readErr != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") && !strings.Contains(line, ":") && strings.Contains(err.Error(), line[:16]) {
			t.Errorf("error shows key material: %v", err)
		}
	}
}

// TestParseKeysBlocks covers block layouts the files above do not.
func TestParseKeysBlocks(t *testing.T) {
	rsaPub, err := os.ReadFile(keyFile("rsa.pub"))
	if err != nil {
		t.Fatal(err)
	}
	p256, err := os.ReadFile(keyFile("ec-p256-params.key"))
	if err != nil {
		t.Fatal(err)
	}
	params := strings.SplitAfter(string(p256), "-----END EC PARAMETERS-----\n")[0]
	truncated := string(rsaPub[:len(rsaPub)-30])                                      // no END line
	badBase64 := strings.Replace(string(rsaPub), "\n", "\n!!", 2)                     // corrupt body
	pkixAsPKCS1 := strings.ReplaceAll(string(rsaPub), "PUBLIC KEY", "RSA PUBLIC KEY") // tools that mislabel
	tests := []struct {
		name    string
		data    string
		wantErr string // "" for success
		count   int
	}{
		{"text around blocks", "Certificate:\n  Data: ...\n" + string(rsaPub) + "trailing words\n", "", 1},
		{"mislabelled PKIX key", pkixAsPKCS1, "", 1},
		{"same key twice", string(rsaPub) + string(rsaPub), "", 2},
		{"only EC PARAMETERS", params, "no key in its 1 PEM block(s)", 0},
		{"second block truncated", string(rsaPub) + truncated, "block 2 is not valid PEM", 0},
		{"first block corrupt", badBase64 + string(rsaPub), "block 1 is not valid PEM", 0},
		{"white space only", " \n\t\n", "file is empty", 0},
		{"unknown block type", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n", `block 1 ("OPENSSH PRIVATE KEY"): unsupported PEM block type`, 0},
		{"long block type cut", "-----BEGIN " + strings.Repeat("X", 100) + "-----\nAAAA\n-----END " + strings.Repeat("X", 100) + "-----\n", `"` + strings.Repeat("X", 40) + `..."`, 0},
		{"garbage in a key block", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", `block 1 ("PUBLIC KEY"): cannot parse`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := parseKeys("k.pem", []byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "k.pem") {
					t.Fatalf("error = %v, want one naming k.pem and containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != tt.count {
				t.Errorf("got %d keys, want %d", len(keys), tt.count)
			}
		})
	}
}

func TestLoadKeysNoFiles(t *testing.T) {
	if _, err := LoadKeys(); err == nil {
		t.Fatal("LoadKeys() with no file accepted")
	}
}

func TestLoadKeysTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.pem")
	if err := os.WriteFile(path, make([]byte, maxKeyFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("error = %v, want one about the size", err)
	}
}

func TestKeyIDRejectsUnknownKey(t *testing.T) {
	if _, err := KeyID("not a key"); err == nil {
		t.Fatal("KeyID of a string accepted")
	}
}

// FuzzParseKeys feeds arbitrary file contents to the PEM loader: it must not
// panic, every key it returns must be one NewJWKS publishes, and an error
// must not show a line of the input's key material. Seeds: the files of
// testdata/keys and testdata/fuzz/FuzzParseKeys.
func FuzzParseKeys(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "keys", "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parseKeys("fuzz.pem", data)
		if err != nil {
			if keys != nil {
				t.Fatalf("keys and an error: %v", err)
			}
			for _, line := range strings.Split(string(data), "\n") {
				line = strings.TrimSpace(line)
				// A body line long enough to be key material, not a
				// BEGIN/END or header line (their parts may be quoted).
				if len(line) >= 48 && !strings.Contains(line, "-----") && !strings.Contains(line, ":") && strings.Contains(err.Error(), line) {
					t.Fatalf("error shows input line %q: %v", line, err)
				}
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("no keys and no error")
		}
		if _, err := NewJWKS(keys, true); err != nil {
			t.Fatalf("loaded a key NewJWKS refuses: %v", err)
		}
	})
}

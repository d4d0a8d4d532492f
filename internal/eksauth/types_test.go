package eksauth

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// update rewrites the golden files from the current output.
var update = flag.Bool("update", false, "rewrite testdata golden files")

// testOutput is the response the golden file and the round trips use.
func testOutput() *Output {
	return &Output{
		Subject:  Subject{Namespace: "payments", ServiceAccount: "api"},
		Audience: Audience,
		PodIdentityAssociation: PodIdentityAssociation{
			AssociationArn: "arn:aws:eks:us-west-2:111122223333:podidentityassociation/prod/a-0123456789abcdef0",
			AssociationID:  "a-0123456789abcdef0",
		},
		AssumedRoleUser: AssumedRoleUser{
			Arn:          "arn:aws:sts::111122223333:assumed-role/payments-api/eks-prod-api-7d9f-0a1b2c3d",
			AssumeRoleID: "AROAEXAMPLEEXAMPLE:eks-prod-api-7d9f-0a1b2c3d",
		},
		Credentials: Credentials{
			AccessKeyID:     "ASIAEXAMPLEEXAMPLE01",
			SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
			SessionToken:    "FwoGZXIvYXdzEXAMPLE+token/with=chars",
			Expiration:      time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC),
		},
	}
}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file: %v", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs:\n got %s\nwant %s", name, got, want)
	}
}

func TestOutputGolden(t *testing.T) {
	got, err := json.Marshal(testOutput())
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "response.golden.json", got)

	// The golden file decodes back to the same value.
	var back Output
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if back != *testOutput() {
		t.Errorf("round trip: got %+v want %+v", back, *testOutput())
	}
}

func TestExpirationEncoding(t *testing.T) {
	tests := []struct {
		name    string
		t       time.Time
		want    string
		wantErr bool
	}{
		{name: "whole seconds", t: time.Unix(1764226800, 0), want: `1764226800`},
		{name: "fraction kept", t: time.Unix(1764226800, 500000000), want: `1764226800.5`},
		{name: "zero time", t: time.Time{}, want: `0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := json.Marshal(Credentials{Expiration: tt.t})
			if err != nil {
				t.Fatal(err)
			}
			var w map[string]json.RawMessage
			if err := json.Unmarshal(raw, &w); err != nil {
				t.Fatal(err)
			}
			if got := string(w["expiration"]); got != tt.want {
				t.Errorf("expiration = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestExpirationDecoding(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		want    time.Time
		wantErr bool
	}{
		{name: "integer", json: `1764226800`, want: time.Unix(1764226800, 0)},
		{name: "fraction", json: `1764226800.25`, want: time.Unix(1764226800, 250000000)},
		{name: "exponent as Java writes it", json: `1.7642268E9`, want: time.Unix(1764226800, 0)},
		{name: "string is not the wire format", json: `"2026-11-27T07:00:00Z"`, wantErr: true},
		{name: "negative", json: `-1`, wantErr: true},
		{name: "beyond year 9999", json: `1e300`, wantErr: true},
		{name: "missing", json: `null`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Credentials
			err := json.Unmarshal([]byte(`{"accessKeyId":"A","expiration":`+tt.json+`}`), &c)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %v", c.Expiration)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !c.Expiration.Equal(tt.want) || c.AccessKeyID != "A" {
				t.Errorf("got %v %q, want %v", c.Expiration, c.AccessKeyID, tt.want)
			}
		})
	}
}

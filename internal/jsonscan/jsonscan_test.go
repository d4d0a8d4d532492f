package jsonscan

import (
	"reflect"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// member reads "a" and "b" and skips the rest.
type member struct {
	A string
	B []int
}

// Field implements Fields.

func (m *member) Field(name []byte) any {
	switch string(name) {
	case "a":
		return &m.A
	case "b":
		return &m.B
	}
	return nil
}

func TestDecodeObject(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    member // decoded into member{A: "kept"}
		wantErr string // substring; empty for success
	}{
		{"members", `{"a":"x","b":[1,2]}`, member{A: "x", B: []int{1, 2}}, ""},
		{"empty", `{}`, member{A: "kept"}, ""},
		{"null leaves v unchanged", `null`, member{A: "kept"}, ""},
		{"unknown members skipped", `{"c":{"deep":[1,{"a":"no"}]},"a":"x","d":null}`, member{A: "x"}, ""},
		{"escaped name means what it decodes to", `{"\u0061":"x","\u0062":[3]}`, member{A: "x", B: []int{3}}, ""},
		{"names match exactly", `{"A":"x","B":[1]}`, member{A: "kept"}, ""},
		{"last duplicate wins", `{"a":"x","a":"y"}`, member{A: "y"}, ""},
		{"not an object", `[1]`, member{}, "JSON [ is not an object"},
		// The library words it "cannot" or "unable to", at random per process.
		{"wrong member type", `{"a":1}`, member{}, "unmarshal JSON number into Go string"},
		{"truncated", `{"a":"x"`, member{}, "EOF"},
		{"missing colon", `{"a" "x"}`, member{}, "invalid character"},
		{"bad escape in name", `{"\u00zz":1}`, member{}, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := member{A: "kept"}
			dec := jsontext.NewDecoder(strings.NewReader(tt.in), Options)
			err := DecodeObject(dec, &got)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("decoded %+v, want %+v", got, tt.want)
			}
		})
	}
}

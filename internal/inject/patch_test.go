package inject

import (
	"encoding/json"
	"testing"
)

func TestPatchEncoding(t *testing.T) {
	tests := []struct {
		name  string
		build func(p *patch)
		want  string
	}{
		{"empty", func(*patch) {}, ""},
		{"create array", func(p *patch) {
			p.addItems("/spec/volumes", false, []jsonValue{mount{"a", "/a"}, mount{"b", "/b"}})
		}, `[{"op":"add","path":"/spec/volumes","value":[{"name":"a","mountPath":"/a","readOnly":true},{"name":"b","mountPath":"/b","readOnly":true}]}]`},
		{"append items", func(p *patch) {
			p.addItems("/spec/containers/0/env", true, []jsonValue{&envVar{name: "A", value: "1"}, &envVar{name: "B", fieldPath: "metadata.name"}})
		}, `[{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"A","value":"1"}},{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"B","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}}]`},
		{"no items adds nothing", func(p *patch) { p.addItems("/x", false, nil) }, ""},
		{"scalars and members", func(p *patch) {
			p.add("/a", intValue(-5))
			p.add("/b", member{"k", stringValue("v\"<")})
		}, `[{"op":"add","path":"/a","value":-5},{"op":"add","path":"/b","value":{"k":"v\"<"}}]`},
		{"token volume", func(p *patch) {
			p.add("/v", tokenVolume{target{volume: "t", audience: "aud", tokenPath: "token"}, 600})
		}, `[{"op":"add","path":"/v","value":{"name":"t","projected":{"sources":[{"serviceAccountToken":{"audience":"aud","expirationSeconds":600,"path":"token"}}]}}}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p patch
			tt.build(&p)
			got := string(p.encode())
			if got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
			if got != "" && !json.Valid([]byte(got)) {
				t.Fatalf("invalid JSON: %s", got)
			}
		})
	}
}

func TestEscapePointer(t *testing.T) {
	for in, want := range map[string]string{
		"eks.amazonaws.com/pod-identity": "eks.amazonaws.com~1pod-identity",
		"a~b/c":                          "a~0b~1c",
		"plain":                          "plain",
	} {
		if got := escapePointer(in); got != want {
			t.Errorf("escapePointer(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAppendStringInvalidUTF8(t *testing.T) {
	got := appendString(nil, "a\xffb")
	if !json.Valid(got) {
		t.Fatalf("appendString produced invalid JSON %q", got)
	}
}

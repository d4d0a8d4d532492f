package inject

import (
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/go-json-experiment/json"

	"github.com/podiam/podiam/internal/identity"
	"github.com/podiam/podiam/internal/jsonscan"
)

// podOfContainers returns a pod whose containers and init containers are the
// given JSON objects, repeated.
func podOfContainers(container string, n int, initContainer string, nInit int) []byte {
	var b strings.Builder
	b.WriteString(`{"metadata":{"name":"p"},"spec":{"containers":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strings.ReplaceAll(container, "#", strconv.Itoa(i)))
	}
	b.WriteString(`],"initContainers":[`)
	for i := range nInit {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strings.ReplaceAll(initContainer, "#", strconv.Itoa(i)))
	}
	b.WriteString(`]}}`)
	return []byte(b.String())
}

// jsonArray returns a JSON array of n times item.
func jsonArray(item string, n int) string {
	if n == 0 {
		return "[]"
	}
	return "[" + strings.Repeat(item+",", n-1) + item + "]"
}

// podOfLists returns a pod of one container "c" with the given volume mounts
// and env, and the given volumes (JSON arrays).
func podOfLists(mounts, env, volumes string) []byte {
	return []byte(`{"metadata":{"name":"p"},"spec":{"volumes":` + volumes +
		`,"containers":[{"name":"c","env":` + env + `,"volumeMounts":` + mounts + `}]}}`)
}

// TestInjectBounds sends pods made to cost much more to answer than to send:
// the answer and the memory of decoding and injecting one stay small.
func TestInjectBounds(t *testing.T) {
	const body = 3 << 20 // the webhook's body limit
	conflicting := `{"name":"c#","volumeMounts":[{"name":"data","mountPath":"` + DefaultTokenMountPath + `"}]}`
	longARN := identity.Identity{Mode: identity.ModeIRSA, RoleARN: "arn:aws:iam::111122223333:role/" + strings.Repeat("r", 8<<10),
		Audience: "sts.amazonaws.com", TokenExpiration: 86400}
	for _, tc := range []struct {
		name         string
		pod          []byte
		id           identity.Identity
		wantPatch    bool
		wantOver     string
		wantWarnings []string // prefixes
		wantOmitted  int
		wantInjected int
		wantConflict int
		maxAlloc     uint64 // bytes allocated by decoding and injecting
	}{{
		// Each "{}" is 3 bytes of request and was about 500 bytes of patch.
		name:         "a 3 MiB pod of empty containers",
		pod:          podOfContainers("{}", (body-100)/3, "", 0),
		id:           irsa,
		wantOver:     OverLimitContainers,
		wantWarnings: []string{"pod has more than 256 containers and init containers; not injecting"},
		maxAlloc:     16 << 20,
	}, {
		name:         "containers and init containers count together",
		pod:          podOfContainers(`{"name":"c#"}`, 200, `{"name":"i#"}`, MaxContainers-200+1),
		id:           pi,
		wantOver:     OverLimitContainers,
		wantWarnings: []string{"pod has more than 256 containers"},
		maxAlloc:     1 << 20,
	}, {
		name:         "exactly the limit is injected",
		pod:          podOfContainers(`{"name":"c#"}`, 200, `{"name":"i#"}`, MaxContainers-200),
		id:           irsa,
		wantPatch:    true,
		wantInjected: MaxContainers,
		maxAlloc:     4 << 20,
	}, {
		name:         "a conflict in every container builds only the warnings shown",
		pod:          podOfContainers(conflicting, MaxContainers, "", 0),
		id:           irsa,
		wantWarnings: slicesRepeat(`container "c`, MaxWarnings),
		wantOmitted:  MaxContainers - MaxWarnings,
		wantConflict: MaxContainers,
		maxAlloc:     1 << 20,
	}, {
		// Each "{}" decoded to about 30 bytes and its share of the slice's
		// growth: 91 MiB for the pod.
		name:         "a 3 MiB env of empty items is injected",
		pod:          podOfLists(`[]`, jsonArray(`{}`, (body-200)/3), `[]`),
		id:           irsa,
		wantPatch:    true,
		wantInjected: 1,
		maxAlloc:     1 << 20,
	}, {
		// Decoding keeps one of each name injection looks for.
		name:         "a 3 MiB env of one injected variable is injected once, with a warning",
		pod:          podOfLists(`[]`, jsonArray(`{"name":"`+EnvRoleARN+`"}`, (body-200)/24), `[]`),
		id:           irsa,
		wantPatch:    true,
		wantWarnings: []string{`container "c" sets AWS_ROLE_ARN but not AWS_WEB_IDENTITY_TOKEN_FILE`},
		wantInjected: 1,
		maxAlloc:     1 << 20,
	}, {
		name:         "a 3 MiB list of empty volume mounts",
		pod:          podOfLists(jsonArray(`{}`, (body-200)/3), `[]`, `[]`),
		id:           irsa,
		wantOver:     OverLimitListItems,
		wantWarnings: []string{"pod has more than 16384 volumes and volume mounts; not injecting"},
		maxAlloc:     4 << 20,
	}, {
		name:         "a 3 MiB list of empty volumes",
		pod:          podOfLists(`[]`, `[]`, jsonArray(`{}`, (body-200)/3)),
		id:           pi,
		wantOver:     OverLimitListItems,
		wantWarnings: []string{"pod has more than 16384 volumes and volume mounts"},
		maxAlloc:     4 << 20,
	}, {
		name:         "volumes and volume mounts count together",
		pod:          podOfLists(jsonArray(`{"name":"m","mountPath":"/m"}`, 385), `null`, jsonArray(`{"name":"v"}`, MaxListItems-384)),
		id:           irsa,
		wantOver:     OverLimitListItems,
		wantWarnings: []string{"pod has more than 16384 volumes"},
		maxAlloc:     4 << 20,
	}, {
		name:         "exactly the item limit is injected",
		pod:          podOfLists(jsonArray(`{"name":"m","mountPath":"/m"}`, 384), `null`, jsonArray(`{"name":"v"}`, MaxListItems-384)),
		id:           irsa,
		wantPatch:    true,
		wantInjected: 1,
		maxAlloc:     4 << 20,
	}, {
		name:         "a patch over the byte bound",
		pod:          podOfContainers(`{"name":"c#"}`, 200, "", 0),
		id:           longARN,
		wantOver:     OverLimitPatch,
		wantWarnings: []string{"the patch would be over 1048576 bytes; not injecting"},
		maxAlloc:     8 << 20,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.pod) > body {
				t.Fatalf("pod of %d bytes is over the body limit", len(tc.pod))
			}
			cfg := testConfig()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			pod, err := DecodePod(tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			res := cfg.Inject(pod, tc.id)
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > tc.maxAlloc {
				t.Errorf("decoding and injecting allocated %d MiB, want at most %d MiB", alloc>>20, tc.maxAlloc>>20)
			}
			if (res.Patch != nil) != tc.wantPatch {
				t.Errorf("patch of %d bytes, want patch %v", len(res.Patch), tc.wantPatch)
			}
			if len(res.Patch) > MaxPatchBytes+64<<10 {
				t.Errorf("patch of %d bytes, over the bound", len(res.Patch))
			}
			if res.OverLimit != tc.wantOver {
				t.Errorf("OverLimit %q, want %q", res.OverLimit, tc.wantOver)
			}
			if len(res.Warnings) != len(tc.wantWarnings) {
				t.Fatalf("%d warnings, want %d like %q; the first: %.300q", len(res.Warnings), len(tc.wantWarnings), tc.wantWarnings, firstOf(res.Warnings))
			}
			for i, w := range tc.wantWarnings {
				if !strings.HasPrefix(res.Warnings[i], w) {
					t.Errorf("warning %d = %q, want prefix %q", i, res.Warnings[i], w)
				}
			}
			if res.OmittedWarnings != tc.wantOmitted || res.Injected != tc.wantInjected || res.SkippedByConflict != tc.wantConflict {
				t.Errorf("omitted %d, injected %d, skipped by conflict %d; want %d, %d, %d",
					res.OmittedWarnings, res.Injected, res.SkippedByConflict, tc.wantOmitted, tc.wantInjected, tc.wantConflict)
			}
		})
	}
}

func firstOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// TestInjectBoundsKeepWarningAllocations checks that warnings past MaxWarnings
// are not formatted: a pod with a conflict in each of its containers costs
// about the same allocations whatever their number.
func TestInjectBoundsKeepWarningAllocations(t *testing.T) {
	conflicting := `{"name":"c#","volumeMounts":[{"name":"data","mountPath":"` + DefaultTokenMountPath + `/x"}]}`
	allocs := func(n int) float64 {
		pod, err := DecodePod(podOfContainers(conflicting, n, "", 0))
		if err != nil {
			t.Fatal(err)
		}
		cfg := testConfig()
		return testing.AllocsPerRun(10, func() { cfg.Inject(pod, irsa) })
	}
	few, many := allocs(MaxWarnings), allocs(MaxContainers)
	// 240 more messages would be at least 240 more allocations.
	if many > few+MaxContainers/8 {
		t.Errorf("%d conflicting containers: %v allocations, %d: %v; want about the same", MaxContainers, many, MaxWarnings, few)
	}
}

// TestContainerListDecode checks the bounded list against plain slice
// decoding: the same up to the limit, then the rest only checked and skipped.
func TestContainerListDecode(t *testing.T) {
	many := func(item string, n int) string { return "[" + strings.Repeat(item+",", n-1) + item + "]" }
	for _, tc := range []struct {
		name    string
		raw     string
		wantLen int  // -1: the same as plain decoding
		wantErr bool // plain decoding agrees where wantLen is -1
	}{
		{"null", `null`, -1, false},
		{"empty", `[]`, -1, false},
		{"some", `[{"name":"a","env":[{"name":"E"}],"volumeMounts":[{"name":"m","mountPath":"/m"}]},null,{}]`, -1, false},
		{"at the limit", many(`{"name":"a"}`, MaxContainers+1), -1, false},
		{"over the limit keeps one more than it", many(`{"name":"a"}`, 10*MaxContainers), MaxContainers + 1, false},
		{"not an array", `{"name":"a"}`, -1, true},
		{"an element not an object", `[{},"x"]`, -1, true},
		{"an element past the limit not an object", many(`{}`, MaxContainers+5) + `x`, 0, true},
		{"a string past the limit", strings.TrimSuffix(many(`{}`, MaxContainers+5), "]") + `,"x"]`, 0, true},
		{"truncated past the limit", strings.TrimSuffix(many(`{}`, MaxContainers+5), "]"), 0, true},
		{"invalid JSON past the limit", strings.TrimSuffix(many(`{}`, MaxContainers+5), "]") + `,{"a":}]`, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got containerList
			err := json.Unmarshal([]byte(tc.raw), &got, jsonscan.Options)
			if tc.wantLen >= 0 {
				if (err != nil) != tc.wantErr {
					t.Fatalf("error %v, want error %v", err, tc.wantErr)
				}
				if err == nil && len(got) != tc.wantLen {
					t.Errorf("%d containers kept, want %d", len(got), tc.wantLen)
				}
				return
			}
			var want []container
			wantErr := json.Unmarshal([]byte(tc.raw), &want, jsonscan.Options)
			if (err != nil) != (wantErr != nil) || (err != nil) != tc.wantErr {
				t.Fatalf("error %v, plain decoding's %v, want error %v", err, wantErr, tc.wantErr)
			}
			if err == nil && (!reflect.DeepEqual([]container(got), want) || (got == nil) != (want == nil)) {
				t.Errorf("got %+v, plain decoding %+v", got, want)
			}
		})
	}
}

package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
)

// MappingEntry is one value of the kOps-style ConfigMap mapping. Field names match
// the Amazon EKS pod identity webhook so existing ConfigMaps work unchanged.
type MappingEntry struct {
	RoleARN         string `json:"RoleARN"`
	Audience        string `json:"Audience,omitempty"`
	UseRegionalSTS  *bool  `json:"UseRegionalSTS,omitempty"`
	TokenExpiration int64  `json:"TokenExpiration,omitempty"`
}

// Mapping maps "namespace/name" keys, which may contain glob patterns, to entries.
// A nil *Mapping is empty. A Mapping is immutable once parsed, so it can be shared
// between goroutines and swapped atomically.
type Mapping struct {
	exact    map[nsName]MappingEntry
	patterns []pattern // most specific first
}

// nsName is a map key that needs no string concatenation on lookup.
type nsName struct{ namespace, name string }

type pattern struct {
	key, namespace, name string
	entry                MappingEntry
}

// ParseMapping parses the JSON value of the ConfigMap's "config" key. Any bad key or
// entry rejects the whole document, so the caller can keep its last good mapping
// instead of applying half of a broken one.
func ParseMapping(data []byte) (*Mapping, error) {
	m := &Mapping{exact: map[nsName]MappingEntry{}}
	if len(bytes.TrimSpace(data)) == 0 {
		return m, nil
	}
	var raw map[string]MappingEntry
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("decoding mapping: %w", err)
	}
	var errs []error
	for key, e := range raw {
		ns, name, ok := strings.Cut(key, "/")
		switch {
		case !ok || ns == "" || name == "" || strings.Contains(name, "/"):
			errs = append(errs, fmt.Errorf("key %q: want namespace/name", key))
			continue
		case e.RoleARN == "":
			errs = append(errs, fmt.Errorf("key %q: RoleARN is empty", key))
			continue
		case e.TokenExpiration < 0:
			errs = append(errs, fmt.Errorf("key %q: TokenExpiration %d is negative", key, e.TokenExpiration))
			continue
		}
		if !isGlob(key) {
			m.exact[nsName{ns, name}] = e
			continue
		}
		if _, err := path.Match(ns, ""); err != nil {
			errs = append(errs, fmt.Errorf("key %q: bad namespace pattern: %w", key, err))
			continue
		}
		if _, err := path.Match(name, ""); err != nil {
			errs = append(errs, fmt.Errorf("key %q: bad name pattern: %w", key, err))
			continue
		}
		m.patterns = append(m.patterns, pattern{key: key, namespace: ns, name: name, entry: e})
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return nil, errors.Join(errs...)
	}
	sort.Slice(m.patterns, func(i, j int) bool { return morespecific(m.patterns[i], m.patterns[j]) })
	return m, nil
}

// morespecific orders patterns: more literal characters first, then a more literal
// namespace, then the key itself so the order never depends on map iteration.
func morespecific(a, b pattern) bool {
	if la, lb := literals(a.key), literals(b.key); la != lb {
		return la > lb
	}
	if la, lb := literals(a.namespace), literals(b.namespace); la != lb {
		return la > lb
	}
	return a.key < b.key
}

func isGlob(s string) bool { return strings.ContainsAny(s, `*?[\`) }

func literals(s string) int {
	n := 0
	for _, c := range s {
		if !strings.ContainsRune(`*?[]\`, c) {
			n++
		}
	}
	return n
}

// Lookup returns the entry for a ServiceAccount: the exact key first, then the most
// specific matching pattern. It also returns the key that matched.
func (m *Mapping) Lookup(namespace, name string) (MappingEntry, string, bool) {
	if m == nil {
		return MappingEntry{}, "", false
	}
	if e, ok := m.exact[nsName{namespace, name}]; ok {
		return e, namespace + "/" + name, true
	}
	for _, p := range m.patterns {
		if match(p.namespace, namespace) && match(p.name, name) {
			return p.entry, p.key, true
		}
	}
	return MappingEntry{}, "", false
}

// Len returns the number of keys.
func (m *Mapping) Len() int {
	if m == nil {
		return 0
	}
	return len(m.exact) + len(m.patterns)
}

func match(pattern, s string) bool {
	ok, _ := path.Match(pattern, s) // patterns were validated when parsed
	return ok
}

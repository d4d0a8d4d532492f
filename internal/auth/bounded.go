package auth

import "time"

// expiring is an entry of a bounded cache: it is dropped once now is not
// before its expiry.
type expiring interface {
	expiry() time.Time
}

// putBounded stores v under k in m, a cache of at most max entries. When m
// is full, its expired entries are dropped first; if all max are still live,
// v is not stored, so the map never grows past max and the caller simply
// goes without caching. The caller holds the lock guarding m.
func putBounded[V expiring](m map[string]V, k string, v V, max int, now time.Time) {
	if len(m) >= max {
		for key, e := range m {
			if !now.Before(e.expiry()) {
				delete(m, key)
			}
		}
		if len(m) >= max {
			return
		}
	}
	m[k] = v
}

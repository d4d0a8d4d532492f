package main

import "fmt"

// pageCache is how much of a file is in the page cache, in bytes.
type pageCache struct {
	Resident, Size int64
}

// String is "X of Y MiB".
func (p pageCache) String() string {
	return fmt.Sprintf("%.1f of %.1f MiB", float64(p.Resident)/(1<<20), float64(p.Size)/(1<<20))
}

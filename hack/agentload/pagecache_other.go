//go:build !linux

package main

import "errors"

// errNoPageCache: mincore and fadvise are read and used on Linux only, where
// the agent runs.
var errNoPageCache = errors.New("page cache inspection needs Linux")

func filePageCache(string) (pageCache, error) { return pageCache{}, errNoPageCache }

func evictPageCache(string) (pageCache, error) { return pageCache{}, errNoPageCache }

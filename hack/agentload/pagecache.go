//go:build linux

package main

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// filePageCache reports how much of path is in the page cache (mincore on
// a shared read-only mapping, which faults nothing in).
func filePageCache(path string) (pageCache, error) {
	f, err := os.Open(path)
	if err != nil {
		return pageCache{}, fmt.Errorf("reading the page cache of %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return pageCache{}, fmt.Errorf("reading the page cache of %s: %w", path, err)
	}
	p := pageCache{Size: st.Size()}
	if p.Size == 0 {
		return p, nil
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(p.Size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return p, fmt.Errorf("mapping %s: %w", path, err)
	}
	defer unix.Munmap(m)
	page := int64(os.Getpagesize())
	vec := make([]byte, (p.Size+page-1)/page)
	// x/sys/unix has no wrapper for mincore(2).
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return p, fmt.Errorf("mincore on %s: %w", path, errno)
	}
	for i, v := range vec {
		if v&1 != 0 {
			p.Resident += min(page, p.Size-int64(i)*page)
		}
	}
	return p, nil
}

// evictPageCache drops path's pages from the page cache, as memory pressure
// would: written back first (a dirty page is not dropped), then
// POSIX_FADV_DONTNEED. It returns what is left, which is not nothing when a
// running process maps the file.
func evictPageCache(path string) (pageCache, error) {
	f, err := os.Open(path)
	if err != nil {
		return pageCache{}, fmt.Errorf("evicting %s from the page cache: %w", path, err)
	}
	err = unix.Fdatasync(int(f.Fd()))
	if err == nil {
		err = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
	f.Close()
	if err != nil {
		return pageCache{}, fmt.Errorf("evicting %s from the page cache: %w", path, err)
	}
	return filePageCache(path)
}

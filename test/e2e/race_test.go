//go:build race

package e2e

// Under `go test -race` the suite builds podiam with -race too: the dependencies
// are then compiled once for both, and the real binary runs under the race
// detector.
func init() { podiamBuildFlags = []string{"-race"} }

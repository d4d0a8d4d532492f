package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ContainerCredentials is the set of ServiceAccounts that get Pod Identity, read from
// the file given by --watch-container-credentials-config. A nil set is empty. It is
// immutable once parsed.
type ContainerCredentials struct {
	set map[nsName]struct{}
}

type containerCredentialsFile struct {
	Identities []struct {
		Namespace      string `json:"namespace"`
		ServiceAccount string `json:"serviceAccount"`
	} `json:"identities"`
}

// ParseContainerCredentials parses the file content. Empty content is an empty set
// (the file may not have been written yet); anything malformed is an error so the
// caller keeps its last good set, which is what a half-written file needs.
func ParseContainerCredentials(data []byte) (*ContainerCredentials, error) {
	cc := &ContainerCredentials{set: map[nsName]struct{}{}}
	if len(bytes.TrimSpace(data)) == 0 {
		return cc, nil
	}
	var f containerCredentialsFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("decoding container credentials config: %w", err)
	}
	var errs []error
	for i, id := range f.Identities {
		if id.Namespace == "" || id.ServiceAccount == "" {
			errs = append(errs, fmt.Errorf("identities[%d]: namespace and serviceAccount are required", i))
			continue
		}
		cc.set[nsName{id.Namespace, id.ServiceAccount}] = struct{}{}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cc, nil
}

// Contains reports whether the ServiceAccount gets Pod Identity.
func (c *ContainerCredentials) Contains(namespace, name string) bool {
	if c == nil {
		return false
	}
	_, ok := c.set[nsName{namespace, name}]
	return ok
}

// Len returns the number of ServiceAccounts in the set.
func (c *ContainerCredentials) Len() int {
	if c == nil {
		return 0
	}
	return len(c.set)
}

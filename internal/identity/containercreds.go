package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
)

// Sources of Pod Identity, as Identity.Source names them.
const (
	SourceContainerCredentials = "container-credentials"
	SourceAssociation          = "association"
)

// PodIdentitySet reports whether a ServiceAccount gets Pod Identity. The
// PodIdentityAssociation watcher (internal/association) is one.
type PodIdentitySet interface {
	Contains(namespace, name string) bool
}

// ContainerCredentials is the set of ServiceAccounts that get Pod Identity, read from
// the file given by --watch-container-credentials-config, optionally joined with the
// ServiceAccounts that have a PodIdentityAssociation (WithAssociations). A nil set is
// empty. The file's part is immutable once parsed; the associations are a live view.
type ContainerCredentials struct {
	set map[nsName]struct{}
	// associations, if not nil, adds the ServiceAccounts with an association;
	// it is a live view, not a snapshot.
	associations PodIdentitySet
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
	return c.Source(namespace, name) != ""
}

// Source returns why the ServiceAccount gets Pod Identity: SourceContainerCredentials
// if the file lists it (the file is asked first), SourceAssociation if it has a
// PodIdentityAssociation, "" if it gets none.
func (c *ContainerCredentials) Source(namespace, name string) string {
	if c == nil {
		return ""
	}
	if _, ok := c.set[nsName{namespace, name}]; ok {
		return SourceContainerCredentials
	}
	if c.associations != nil && c.associations.Contains(namespace, name) {
		return SourceAssociation
	}
	return ""
}

// WithAssociations returns a set holding c's ServiceAccounts and those that a
// contains. c is not modified; a nil c stands for an empty file.
func (c *ContainerCredentials) WithAssociations(a PodIdentitySet) *ContainerCredentials {
	out := &ContainerCredentials{associations: a}
	if c != nil {
		out.set = c.set
	}
	return out
}

// JoinAssociations returns a snapshot func (the webhook's ContainerCredentials
// option) that joins file's current set with a. The join is built once per file
// snapshot, so a call allocates nothing unless the file changed. A nil file stands
// for no file.
func JoinAssociations(file func() *ContainerCredentials, a PodIdentitySet) func() *ContainerCredentials {
	type joined struct{ from, to *ContainerCredentials }
	var last atomic.Pointer[joined]
	return func() *ContainerCredentials {
		var cur *ContainerCredentials
		if file != nil {
			cur = file()
		}
		if j := last.Load(); j != nil && j.from == cur {
			return j.to
		}
		j := &joined{from: cur, to: cur.WithAssociations(a)}
		last.Store(j)
		return j.to
	}
}

// Len returns the number of ServiceAccounts the file lists (associations are
// not counted).
func (c *ContainerCredentials) Len() int {
	if c == nil {
		return 0
	}
	return len(c.set)
}

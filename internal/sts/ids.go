package sts

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
)

// Prefixes of the unique identifiers IAM and STS hand out. Clients and trust policies
// (aws:userid, the principal ids in a trust policy) recognise the kind of principal by them.
const (
	// RoleIDPrefix starts the unique id of a role (AROA…).
	RoleIDPrefix = "AROA"
	// UserIDPrefix starts the unique id of an IAM user (AIDA…).
	UserIDPrefix = "AIDA"
	// SessionKeyIDPrefix starts the access key id of temporary credentials (ASIA…).
	SessionKeyIDPrefix = "ASIA"
	// UserKeyIDPrefix starts the access key id of a user's long-term credentials (AKIA…).
	UserKeyIDPrefix = "AKIA"
)

// idEncoding is the alphabet of AWS identifiers: upper-case letters and the digits 2-7.
var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// uniqueIDLen is the length of AWS's role and user ids: the prefix and 17 characters.
const uniqueIDLen = 21

// RoleID returns the stable unique id (AROA + 17 characters) of the role path+name in
// accountID. It is a hash of the three, so every replica and every restart agrees on
// it without sharing state.
func RoleID(accountID, path, name string) string {
	return stableID(RoleIDPrefix, "role", accountID, path, name)
}

// UserID returns the stable unique id (AIDA + 17 characters) of the user name in
// accountID, derived like [RoleID].
func UserID(accountID, name string) string {
	return stableID(UserIDPrefix, "user", accountID, "/", name)
}

// stableID hashes kind, account, path and name (separated by NUL, which none of them
// may contain) into an id of AWS's shape.
func stableID(prefix, kind, accountID, path, name string) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + accountID + "\x00" + path + "\x00" + name))
	return prefix + idEncoding.EncodeToString(sum[:])[:uniqueIDLen-len(prefix)]
}

// NewAccessKeyID returns a random access key id for temporary credentials: ASIA and
// 16 base32 characters (80 random bits), 20 characters like AWS's.
func NewAccessKeyID() (string, error) {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating access key id: %w", err)
	}
	return SessionKeyIDPrefix + idEncoding.EncodeToString(b[:]), nil
}

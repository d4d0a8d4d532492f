package identity

import (
	"fmt"
	"regexp"
	"strings"
)

// ARNComposer lets a role-arn annotation or mapping RoleARN name a role by its
// name (and path) instead of its full ARN, as the Amazon webhook's
// --compose-role-arn does. A nil *ARNComposer composes nothing.
type ARNComposer struct {
	// Partition is the ARN partition: aws, aws-cn, aws-us-gov, ...
	Partition string
	// AccountID is the 12-digit account that owns the roles.
	AccountID string
}

var (
	accountIDPattern = regexp.MustCompile(`^\d{12}$`)
	partitionPattern = regexp.MustCompile(`^aws(-[a-z0-9]+)*$`)
)

// NewARNComposer checks partition and account ID and returns a composer for them.
func NewARNComposer(partition, accountID string) (*ARNComposer, error) {
	if !accountIDPattern.MatchString(accountID) {
		return nil, fmt.Errorf("account ID %q: want 12 digits", accountID)
	}
	if !partitionPattern.MatchString(partition) {
		return nil, fmt.Errorf("partition %q: want aws, aws-cn, aws-us-gov, ...", partition)
	}
	return &ARNComposer{Partition: partition, AccountID: accountID}, nil
}

// Compose returns role unchanged when it already is an ARN (or c is nil), else
// arn:<partition>:iam::<account>:role/<role>. A leading "/" of a path is dropped,
// so "/team/app" and "team/app" give the same ARN.
func (c *ARNComposer) Compose(role string) string {
	if c == nil || role == "" || strings.HasPrefix(role, "arn:") {
		return role
	}
	return "arn:" + c.Partition + ":iam::" + c.AccountID + ":role/" + strings.TrimPrefix(role, "/")
}

// regionPartitions maps region-name prefixes to partitions. No prefix begins
// another ("us-iso-" does not begin "us-isob-east-1": the dash follows "iso"),
// so at most one matches and the order does not matter (a test checks it). The
// first four are the ones the Amazon webhook knows; the others are the
// partitions AWS added since.
var regionPartitions = []struct{ prefix, partition string }{
	{"cn-", "aws-cn"},
	{"us-gov-", "aws-us-gov"},
	{"us-iso-", "aws-iso"},
	{"us-isob-", "aws-iso-b"},
	{"eu-isoe-", "aws-iso-e"},
	{"us-isof-", "aws-iso-f"},
	{"eusc-", "aws-eusc"},
}

// PartitionForRegion returns the partition a region belongs to: "aws" unless its
// name says otherwise (cn-north-1 is in aws-cn, us-gov-west-1 in aws-us-gov, ...).
// An empty region is in "aws".
func PartitionForRegion(region string) string {
	for _, p := range regionPartitions {
		if strings.HasPrefix(region, p.prefix) {
			return p.partition
		}
	}
	return "aws"
}

package identity

import (
	"strings"
	"testing"
)

func TestPartitionForRegion(t *testing.T) {
	tests := []struct{ region, want string }{
		{"", "aws"},
		{"us-east-1", "aws"},
		{"eu-west-1", "aws"},
		{"cn-north-1", "aws-cn"},
		{"cn-northwest-1", "aws-cn"},
		{"us-gov-west-1", "aws-us-gov"},
		{"us-iso-east-1", "aws-iso"},
		{"us-isob-east-1", "aws-iso-b"},
		{"eu-isoe-west-1", "aws-iso-e"},
		{"us-isof-south-1", "aws-iso-f"},
		{"eusc-de-east-1", "aws-eusc"},
	}
	for _, tt := range tests {
		if got := PartitionForRegion(tt.region); got != tt.want {
			t.Errorf("PartitionForRegion(%q) = %q, want %q", tt.region, got, tt.want)
		}
	}
}

// PartitionForRegion takes the first prefix that matches: that is the only one
// as long as no prefix begins another.
func TestRegionPartitionPrefixesDisjoint(t *testing.T) {
	for _, a := range regionPartitions {
		for _, b := range regionPartitions {
			if a != b && strings.HasPrefix(b.prefix, a.prefix) {
				t.Errorf("prefix %q begins %q: order the table most specific first", a.prefix, b.prefix)
			}
		}
	}
}

func TestARNComposerCompose(t *testing.T) {
	c := &ARNComposer{Partition: "aws-cn", AccountID: "111122223333"}
	tests := []struct {
		name     string
		composer *ARNComposer
		role     string
		want     string
	}{
		{"name", c, "app", "arn:aws-cn:iam::111122223333:role/app"},
		{"path and name", c, "team/app", "arn:aws-cn:iam::111122223333:role/team/app"},
		{"leading slash of the path", c, "/team/app", "arn:aws-cn:iam::111122223333:role/team/app"},
		{"already an ARN", c, "arn:aws:iam::444455556666:role/other", "arn:aws:iam::444455556666:role/other"},
		{"empty", c, "", ""},
		{"disabled", nil, "app", "app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.composer.Compose(tt.role); got != tt.want {
				t.Errorf("Compose(%q) = %q, want %q", tt.role, got, tt.want)
			}
		})
	}
}

func TestNewARNComposer(t *testing.T) {
	tests := []struct {
		partition, account string
		wantErr            string // empty: no error
	}{
		{"aws", "111122223333", ""},
		{"aws-us-gov", "111122223333", ""},
		{"aws", "", "account ID"},
		{"aws", "11112222333", "account ID"},
		{"aws", "11112222333x", "account ID"},
		{"", "111122223333", "partition"},
		{"gcp", "111122223333", "partition"},
		{"aws-", "111122223333", "partition"},
	}
	for _, tt := range tests {
		c, err := NewARNComposer(tt.partition, tt.account)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("NewARNComposer(%q, %q): %v", tt.partition, tt.account, err)
		case tt.wantErr == "" && (c.Partition != tt.partition || c.AccountID != tt.account):
			t.Errorf("NewARNComposer(%q, %q) = %+v", tt.partition, tt.account, c)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("NewARNComposer(%q, %q) error = %v, want it to mention %q", tt.partition, tt.account, err, tt.wantErr)
		}
	}
}

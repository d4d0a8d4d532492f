package webhook

import (
	"context"
	"os"
	"testing"

	"github.com/podiam/podiam/internal/identity"
	"github.com/podiam/podiam/internal/inject"
)


func BenchmarkReviewIRSA(b *testing.B) {
	body, err := os.ReadFile("testdata/review-deployment-3c.json")
	if err != nil {
		b.Fatal(err)
	}
	keys := identity.NewKeys(identity.DefaultAnnotationPrefix)
	h := &Handler{
		Resolver:        &identity.Resolver{Keys: keys, Defaults: identity.Defaults{Audience: "sts.amazonaws.com", TokenExpiration: 86400, ContainerCredentialsAudience: "pods.eks.amazonaws.com"}},
		Injector:        &inject.Config{Keys: keys, TokenMountPath: inject.DefaultTokenMountPath, Region: "eu-west-1"},
		ServiceAccounts: staticSAs{"shop/orders-api": {keys.RoleARN: "arn:aws:iam::111122223333:role/orders-api", keys.RegionalSTS: "true"}},
		Logger:          discardLogger(),
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Review(context.Background(), body); err != nil {
			b.Fatal(err)
		}
	}
}

// Package fakes3 runs an S3-compatible server in the test process: gofakes3
// (in memory) on a loopback httptest server, recording the requests it gets.
// gofakes3 keeps Content-Type but not Cache-Control, so tests check headers
// on the requests as the SDK sent them.
package fakes3

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Region and the static credentials every client of the server uses.
const (
	Region          = "eu-west-1"
	AccessKeyID     = "AKIDPODIAMTEST"
	SecretAccessKey = "podiam-test-secret"
)

// Request is one request the server received.
type Request struct {
	Method, Path, ContentType, CacheControl string
}

// Server is a running fake S3 endpoint; it stops when its test ends.
type Server struct {
	// URL is the endpoint (AWS_ENDPOINT_URL_S3), addressed in path style.
	URL string

	mu  sync.Mutex
	log []Request
}

// Start starts a server holding the given (empty) buckets.
func Start(t testing.TB, buckets ...string) *Server {
	t.Helper()
	backend := s3mem.New()
	for _, b := range buckets {
		if err := backend.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{}
	h := gofakes3.New(backend).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.log = append(s.log, Request{Method: r.Method, Path: r.URL.Path,
			ContentType: r.Header.Get("Content-Type"), CacheControl: r.Header.Get("Cache-Control")})
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Puts returns the PUT requests received since the last call.
func (s *Server) Puts() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for _, r := range s.log {
		if r.Method == http.MethodPut {
			out = append(out, r)
		}
	}
	s.log = nil
	return out
}

// Client is the real SDK client for the server: path style, static
// credentials.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
	})
}

// Env is the environment under which a podiam process reaches the server
// through the SDK's usual configuration.
func (s *Server) Env() []string {
	return []string{"AWS_ENDPOINT_URL_S3=" + s.URL, "AWS_REGION=" + Region,
		"AWS_ACCESS_KEY_ID=" + AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + SecretAccessKey}
}

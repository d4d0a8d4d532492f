package eksauth

import (
	"net/http"
	"strings"
	"testing"
)

// allCodes is every code with the status the API reference gives it.
var allCodes = []struct {
	code      string
	status    int
	retryable bool
}{
	{CodeAccessDenied, 400, false},
	{CodeExpiredToken, 400, false},
	{CodeInternalServer, 500, true},
	{CodeInvalidParameter, 400, false},
	{CodeInvalidRequest, 400, false},
	{CodeInvalidToken, 400, false},
	{CodeResourceNotFound, 404, false},
	{CodeServiceUnavailable, 503, true},
	{CodeThrottling, 429, true},
}

func TestStatusAndRetryable(t *testing.T) {
	for _, tt := range allCodes {
		t.Run(tt.code, func(t *testing.T) {
			e := NewError(tt.code, "m")
			if got := e.HTTPStatus(); got != tt.status {
				t.Errorf("status = %d, want %d", got, tt.status)
			}
			if got := e.Retryable(); got != tt.retryable {
				t.Errorf("Retryable = %v, want %v", got, tt.retryable)
			}
		})
	}
	if got := StatusFor("NoSuchCode"); got != 500 {
		t.Errorf("unknown code status = %d, want 500", got)
	}
}

func TestDecodeErrorForms(t *testing.T) {
	for _, tt := range allCodes {
		forms := []struct {
			name   string
			header string
			body   string
		}{
			{name: "header", header: tt.code, body: `{"message":"why"}`},
			{name: "header with URL", header: tt.code + ":http://internal.amazon.com/coral/com.amazon.eksauth/", body: `{"message":"why"}`},
			{name: "body __type", body: `{"__type":"com.amazonaws.eksauth#` + tt.code + `","message":"why"}`},
			{name: "body code", body: `{"code":"` + tt.code + `","Message":"why"}`},
			{name: "header wins over body", header: tt.code, body: `{"__type":"Other","message":"why"}`},
		}
		for _, f := range forms {
			t.Run(tt.code+"/"+f.name, func(t *testing.T) {
				h := http.Header{}
				if f.header != "" {
					h.Set("X-Amzn-Errortype", f.header)
				}
				e := DecodeError(tt.status, h, []byte(f.body))
				if e.Code != tt.code || e.Message != "why" || e.HTTPStatus() != tt.status || e.Retryable() != tt.retryable {
					t.Errorf("got %+v retryable=%v, want code %s message why status %d", e, e.Retryable(), tt.code, tt.status)
				}
			})
		}
	}
}

func TestDecodeErrorWithoutCode(t *testing.T) {
	tests := []struct {
		status int
		body   string
		want   string
	}{
		{502, "<html>bad gateway</html>", CodeServiceUnavailable},
		{500, "", CodeInternalServer},
		{429, "slow down", CodeThrottling},
		{404, "", CodeResourceNotFound},
		{403, "", CodeAccessDenied},
		{400, "{", CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := DecodeError(tt.status, http.Header{}, []byte(tt.body)); got.Code != tt.want {
				t.Errorf("code = %s, want %s", got.Code, tt.want)
			}
		})
	}
}

func TestDecodeErrorCapsMessage(t *testing.T) {
	e := DecodeError(400, http.Header{}, []byte(`{"message":"`+strings.Repeat("x", 10000)+`"}`))
	if len(e.Message) != maxMessage {
		t.Errorf("message length = %d, want %d", len(e.Message), maxMessage)
	}
}

// FuzzDecodeError: any status, header and body decode without panicking
// into an error with a clean code and a bounded message.
func FuzzDecodeError(f *testing.F) {
	f.Add(400, "InvalidTokenException", []byte(`{"message":"bad"}`))
	f.Add(500, "", []byte(`{"__type":"a#b:c","message":1}`))
	f.Add(429, "x:y#z", []byte("\xff"))
	f.Fuzz(func(t *testing.T, status int, header string, body []byte) {
		h := http.Header{}
		h.Set("X-Amzn-Errortype", header)
		e := DecodeError(status, h, body)
		if e.Code == "" || strings.ContainsAny(e.Code, ":#") {
			t.Fatalf("code %q", e.Code)
		}
		if len(e.Message) > maxMessage {
			t.Fatalf("message of %d bytes", len(e.Message))
		}
		_ = e.Error()
		_ = e.Retryable()
	})
}

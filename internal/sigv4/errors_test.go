package sigv4

import (
	"net/http"
	"strings"
	"testing"
)

func TestErrorHTTPStatus(t *testing.T) {
	tests := []struct {
		code string
		want int
	}{
		{CodeIncompleteSignature, http.StatusBadRequest},
		{CodeMissingAuthenticationToken, http.StatusForbidden},
		{CodeInvalidClientTokenId, http.StatusForbidden},
		{CodeSignatureDoesNotMatch, http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			if got := (&Error{Code: tc.code}).HTTPStatus(); got != tc.want {
				t.Fatalf("HTTPStatus = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestErrorStringForLogs: Error() is what ends up in logs; it names the code
// and the reason, and leaves out the message, which may echo the client's
// Authorization header.
func TestErrorStringForLogs(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"reason preferred", &Error{Code: CodeIncompleteSignature, Message: "Authorization=AWS4-HMAC-SHA256 Signature=secretish", Reason: "missing Credential"},
			"sigv4: IncompleteSignature: missing Credential"},
		{"message when no reason", &Error{Code: CodeInvalidClientTokenId, Message: MessageInvalidClientTokenId},
			"sigv4: InvalidClientTokenId: " + MessageInvalidClientTokenId},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Fatalf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestVerifyErrorsKeepSecretsOut: no error of a failed verification carries
// the secret, the session token or the signature in its log text.
func TestVerifyErrorsKeepSecretsOut(t *testing.T) {
	r, body := signedGCI(t, sessionCreds)
	auth := r.Header.Get("Authorization")
	sig := auth[strings.Index(auth, "Signature=")+len("Signature="):]
	r.Header.Set("Content-Type", "text/plain")
	_, err := Verify(r, body, signTime, testLookup)
	if err == nil {
		t.Fatal("tampered request verified")
	}
	for _, secret := range []string{testSessionSec, testSessionToken, sig} {
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("error %q contains a secret", err)
		}
	}
}

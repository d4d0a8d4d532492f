package eksauth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Error codes of AssumeRoleForPodIdentity, as EKS Auth sends them.
const (
	CodeAccessDenied       = "AccessDeniedException"
	CodeExpiredToken       = "ExpiredTokenException"
	CodeInternalServer     = "InternalServerException"
	CodeInvalidParameter   = "InvalidParameterException"
	CodeInvalidRequest     = "InvalidRequestException"
	CodeInvalidToken       = "InvalidTokenException"
	CodeResourceNotFound   = "ResourceNotFoundException"
	CodeServiceUnavailable = "ServiceUnavailableException"
	CodeThrottling         = "ThrottlingException"
)

// codeStatus is the HTTP status the EKS Auth API reference gives each code.
var codeStatus = map[string]int{
	CodeAccessDenied:       http.StatusBadRequest,
	CodeExpiredToken:       http.StatusBadRequest,
	CodeInternalServer:     http.StatusInternalServerError,
	CodeInvalidParameter:   http.StatusBadRequest,
	CodeInvalidRequest:     http.StatusBadRequest,
	CodeInvalidToken:       http.StatusBadRequest,
	CodeResourceNotFound:   http.StatusNotFound,
	CodeServiceUnavailable: http.StatusServiceUnavailable,
	CodeThrottling:         http.StatusTooManyRequests,
}

// StatusFor is the HTTP status EKS Auth answers code with (500 for a code it
// does not define).
func StatusFor(code string) int {
	if s, ok := codeStatus[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is an EKS Auth error: a code, a message for the caller and the HTTP
// status it travels with.
type Error struct {
	// Code is one of the Code* constants (or whatever code a server sent).
	Code string
	// Message is sent to the caller; it must never hold a token or a secret.
	Message string
	// Status is the HTTP status; 0 means StatusFor(Code).
	Status int
}

// NewError builds an Error with code's usual status.
func NewError(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("eksauth: %s (HTTP %d): %s", e.Code, e.HTTPStatus(), e.Message)
}

// HTTPStatus is the status the error is (or was) sent with.
func (e *Error) HTTPStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	return StatusFor(e.Code)
}

// Retryable says whether the same request may succeed later: throttling and
// server-side failures are, a refused token or a missing association is not.
// Deciding whether and when to retry is the caller's business.
func (e *Error) Retryable() bool {
	return e.Code == CodeThrottling || e.HTTPStatus() >= 500
}

// errorBody is the rest-json error body. __type repeats the header's code
// for clients that read only the body.
type errorBody struct {
	Type    string `json:"__type,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
	// Some services spell it with a capital.
	MessageUpper string `json:"Message,omitempty"`
}

// maxErrorBody caps how much of an error body is read and kept.
const maxErrorBody = 64 << 10

// maxMessage caps the message kept from a server's error body, so a hostile
// server cannot make the caller log megabytes.
const maxMessage = 1024

// DecodeError builds the Error of a failed response from its status, headers
// and body, as the AWS SDKs do: the code from X-Amzn-Errortype, else the
// body's __type, else its code; a code is cut at ':' (a URL may follow) and
// after '#' (a Smithy namespace may precede). With no code at all, the status
// stands in for it.
func DecodeError(status int, header http.Header, body []byte) *Error {
	var b errorBody
	_ = json.Unmarshal(body, &b) // a body that is not JSON still has a status
	code := sanitizeCode(header.Get("X-Amzn-Errortype"))
	if code == "" {
		code = sanitizeCode(b.Type)
	}
	if code == "" {
		code = sanitizeCode(b.Code)
	}
	if code == "" {
		code = fallbackCode(status)
	}
	msg := b.Message
	if msg == "" {
		msg = b.MessageUpper
	}
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	return &Error{Code: code, Message: msg, Status: status}
}

// sanitizeCode strips what may surround an error code on the wire.
func sanitizeCode(code string) string {
	if i := strings.IndexByte(code, ':'); i >= 0 {
		code = code[:i]
	}
	if i := strings.LastIndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	return strings.TrimSpace(code)
}

// fallbackCode names an error that came without a code (a proxy's page, say).
func fallbackCode(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return CodeThrottling
	case status == http.StatusServiceUnavailable || status == http.StatusBadGateway || status == http.StatusGatewayTimeout:
		return CodeServiceUnavailable
	case status >= 500:
		return CodeInternalServer
	case status == http.StatusNotFound:
		return CodeResourceNotFound
	case status == http.StatusForbidden || status == http.StatusUnauthorized:
		return CodeAccessDenied
	default:
		return CodeInvalidRequest
	}
}

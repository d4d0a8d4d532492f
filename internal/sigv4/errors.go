package sigv4

import (
	"fmt"
	"net/http"
)

// Error codes as AWS STS spells them. The STS writes an *Error's code and
// message into its XML error body unchanged.
const (
	// CodeIncompleteSignature: the Authorization header or the presigned query
	// parameters are present but malformed or missing a part.
	CodeIncompleteSignature = "IncompleteSignature"
	// CodeMissingAuthenticationToken: the request carries no signature at all.
	CodeMissingAuthenticationToken = "MissingAuthenticationToken"
	// CodeInvalidClientTokenId: the access key id is unknown.
	CodeInvalidClientTokenId = "InvalidClientTokenId"
	// CodeSignatureDoesNotMatch: the signature is wrong, its credential scope
	// is wrong, or it is outside the allowed clock skew (AWS answers an expired
	// signature with this code too).
	CodeSignatureDoesNotMatch = "SignatureDoesNotMatch"
)

// Messages AWS sends with the codes above (the ones that do not depend on the
// request).
const (
	// MessageInvalidClientTokenId is AWS's message for an unknown access key id.
	MessageInvalidClientTokenId = "The security token included in the request is invalid."
	// MessageSignatureDoesNotMatch is AWS's message for a wrong signature.
	MessageSignatureDoesNotMatch = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	// MessageMissingAuthenticationToken is AWS's message for an unsigned request.
	MessageMissingAuthenticationToken = "Request is missing Authentication Token"
)

// Error is a verification failure carrying AWS's error code and message, so
// that the STS can put both on the wire unchanged.
type Error struct {
	// Code is one of the Code* constants.
	Code string
	// Message is the text AWS sends with Code. Like AWS's, it may echo parts
	// of the request (the Authorization header of a malformed request).
	Message string
	// Reason explains the failure for logs (which check failed, what was
	// expected). It never holds a secret, a session token or a signature and
	// is never sent to clients.
	Reason string
}

// Error implements error. It prefers Reason over Message so that logging the
// error says why without echoing what the client sent.
func (e *Error) Error() string {
	if e.Reason != "" {
		return "sigv4: " + e.Code + ": " + e.Reason
	}
	return "sigv4: " + e.Code + ": " + e.Message
}

// HTTPStatus is the status AWS STS answers this error with: 400 for a
// malformed signature, 403 for every authentication failure.
func (e *Error) HTTPStatus() int {
	if e.Code == CodeIncompleteSignature {
		return http.StatusBadRequest
	}
	return http.StatusForbidden
}

// ErrUnknownAccessKey builds the error a SecretLookup returns for an access
// key id it does not know (AWS's InvalidClientTokenId).
func ErrUnknownAccessKey() *Error {
	return &Error{Code: CodeInvalidClientTokenId, Message: MessageInvalidClientTokenId, Reason: "unknown access key id"}
}

func incomplete(message, reasonFormat string, args ...any) *Error {
	return &Error{Code: CodeIncompleteSignature, Message: message, Reason: fmt.Sprintf(reasonFormat, args...)}
}

// mismatch builds a SignatureDoesNotMatch error; message "" means AWS's
// generic message.
func mismatch(message, reasonFormat string, args ...any) *Error {
	if message == "" {
		message = MessageSignatureDoesNotMatch
	}
	return &Error{Code: CodeSignatureDoesNotMatch, Message: message, Reason: fmt.Sprintf(reasonFormat, args...)}
}

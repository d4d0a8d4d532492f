package sts

import (
	"net/http"
	"strconv"
	"unicode/utf8"
)

// Namespace is the XML namespace of every STS response, success or error.
const Namespace = "https://sts.amazonaws.com/doc/2011-06-15/"

// expirationLayout is how AWS writes Credentials.Expiration: ISO 8601, UTC, whole
// seconds.
const expirationLayout = "2006-01-02T15:04:05Z"

// The responses are written by hand rather than with encoding/xml: the element
// order is fixed by the contract (SPEC §5) and appending to one buffer costs a few
// hundred nanoseconds where reflection costs several microseconds, a sizeable share
// of a request's budget. Text is escaped as encoding/xml.EscapeText escapes it.

// xmlWriter appends an indented XML document to buf, AWS's layout: two spaces per
// level, one element per line.
type xmlWriter struct {
	buf   []byte
	depth int
}

func (w *xmlWriter) indent() {
	for range w.depth {
		w.buf = append(w.buf, "  "...)
	}
}

// open writes <name> on its own line and indents what follows.
func (w *xmlWriter) open(name string) {
	w.indent()
	w.buf = append(w.buf, '<')
	w.buf = append(w.buf, name...)
	w.buf = append(w.buf, ">\n"...)
	w.depth++
}

// openRoot writes the document's root element with the STS namespace.
func (w *xmlWriter) openRoot(name string) {
	w.buf = append(w.buf, '<')
	w.buf = append(w.buf, name...)
	w.buf = append(w.buf, ` xmlns="`+Namespace+`">`+"\n"...)
	w.depth++
}

// close writes </name> on its own line.
func (w *xmlWriter) close(name string) {
	w.depth--
	w.indent()
	w.buf = append(w.buf, "</"...)
	w.buf = append(w.buf, name...)
	w.buf = append(w.buf, ">\n"...)
}

// elem writes <name>text</name>, text escaped.
func (w *xmlWriter) elem(name, text string) {
	w.indent()
	w.buf = append(w.buf, '<')
	w.buf = append(w.buf, name...)
	w.buf = append(w.buf, '>')
	w.buf = appendEscaped(w.buf, text)
	w.buf = append(w.buf, "</"...)
	w.buf = append(w.buf, name...)
	w.buf = append(w.buf, ">\n"...)
}

// optElem writes the element only when text is not empty: AWS leaves out absent
// optional members.
func (w *xmlWriter) optElem(name, text string) {
	if text != "" {
		w.elem(name, text)
	}
}

// appendEscaped appends s with the escapes of encoding/xml.EscapeText: the five XML
// specials, tab, newline and carriage return as character references, and invalid
// UTF-8 or characters XML 1.0 forbids as U+FFFD.
func appendEscaped(buf []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '&' && c != '<' && c != '>' && c != '"' && c != '\'' {
			i++
			continue
		}
		r, width := rune(c), 1
		if c >= utf8.RuneSelf {
			r, width = utf8.DecodeRuneInString(s[i:])
		}
		var esc string
		switch r {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '"':
			esc = "&#34;"
		case '\'':
			esc = "&#39;"
		case '\t':
			esc = "&#x9;"
		case '\n':
			esc = "&#xA;"
		case '\r':
			esc = "&#xD;"
		default:
			if !isXMLChar(r) || (r == utf8.RuneError && width == 1) {
				esc = "\uFFFD"
				break
			}
			i += width
			continue
		}
		buf = append(buf, s[last:i]...)
		buf = append(buf, esc...)
		i += width
		last = i
	}
	return append(buf, s[last:]...)
}

// isXMLChar reports whether r may appear in an XML 1.0 document.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// assumedRoleUser is the AssumedRoleUser element of both AssumeRole responses.
type assumedRoleUser struct {
	ARN, AssumedRoleID string
}

func (w *xmlWriter) assumedRoleUser(u assumedRoleUser) {
	w.open("AssumedRoleUser")
	w.elem("Arn", u.ARN)
	w.elem("AssumedRoleId", u.AssumedRoleID)
	w.close("AssumedRoleUser")
}

// credentials writes the Credentials element in AWS's member order.
func (w *xmlWriter) credentials(c *Credentials) {
	w.open("Credentials")
	w.elem("SessionToken", c.SessionToken)
	w.elem("SecretAccessKey", c.SecretAccessKey)
	w.elem("Expiration", c.Expiration.UTC().Format(expirationLayout))
	w.elem("AccessKeyId", c.AccessKeyID)
	w.close("Credentials")
}

// responseMetadata closes a success document: ResponseMetadata and the root.
func (w *xmlWriter) responseMetadata(root, requestID string) {
	w.open("ResponseMetadata")
	w.elem("RequestId", requestID)
	w.close("ResponseMetadata")
	w.close(root)
}

// webIdentityResult is the result of AssumeRoleWithWebIdentity.
type webIdentityResult struct {
	Subject        string
	SourceIdentity string
	Audience       string
	User           assumedRoleUser
	Credentials    *Credentials
	Provider       string
}

// appendWebIdentityResponse appends the AssumeRoleWithWebIdentity success document.
func appendWebIdentityResponse(buf []byte, r *webIdentityResult, requestID string) []byte {
	w := xmlWriter{buf: buf}
	w.openRoot("AssumeRoleWithWebIdentityResponse")
	w.open("AssumeRoleWithWebIdentityResult")
	w.elem("SubjectFromWebIdentityToken", r.Subject)
	w.optElem("SourceIdentity", r.SourceIdentity)
	w.elem("Audience", r.Audience)
	w.assumedRoleUser(r.User)
	w.credentials(r.Credentials)
	w.elem("Provider", r.Provider)
	w.close("AssumeRoleWithWebIdentityResult")
	w.responseMetadata("AssumeRoleWithWebIdentityResponse", requestID)
	return w.buf
}

// assumeRoleResult is the result of AssumeRole.
type assumeRoleResult struct {
	SourceIdentity string
	User           assumedRoleUser
	Credentials    *Credentials
	// PackedPolicySize is written when the request carried a policy or tags
	// (AWS's percentage of the packed limit); negative leaves it out.
	PackedPolicySize int
}

// appendAssumeRoleResponse appends the AssumeRole success document.
func appendAssumeRoleResponse(buf []byte, r *assumeRoleResult, requestID string) []byte {
	w := xmlWriter{buf: buf}
	w.openRoot("AssumeRoleResponse")
	w.open("AssumeRoleResult")
	w.optElem("SourceIdentity", r.SourceIdentity)
	w.assumedRoleUser(r.User)
	w.credentials(r.Credentials)
	if r.PackedPolicySize >= 0 {
		w.elem("PackedPolicySize", strconv.Itoa(r.PackedPolicySize))
	}
	w.close("AssumeRoleResult")
	w.responseMetadata("AssumeRoleResponse", requestID)
	return w.buf
}

// callerIdentity is the result of GetCallerIdentity.
type callerIdentity struct {
	ARN, UserID, Account string
}

// appendCallerIdentityResponse appends the GetCallerIdentity success document.
func appendCallerIdentityResponse(buf []byte, r callerIdentity, requestID string) []byte {
	w := xmlWriter{buf: buf}
	w.openRoot("GetCallerIdentityResponse")
	w.open("GetCallerIdentityResult")
	w.elem("Arn", r.ARN)
	w.elem("UserId", r.UserID)
	w.elem("Account", r.Account)
	w.close("GetCallerIdentityResult")
	w.responseMetadata("GetCallerIdentityResponse", requestID)
	return w.buf
}

// appendErrorResponse appends AWS's error document: Type Sender for a client's
// fault (4xx), Receiver for the server's.
func appendErrorResponse(buf []byte, e *apiError, requestID string) []byte {
	typ := "Sender"
	if e.Status >= http.StatusInternalServerError {
		typ = "Receiver"
	}
	w := xmlWriter{buf: buf}
	w.openRoot("ErrorResponse")
	w.open("Error")
	w.elem("Type", typ)
	w.elem("Code", e.Code)
	w.elem("Message", e.Message)
	w.close("Error")
	w.elem("RequestId", requestID)
	w.close("ErrorResponse")
	return w.buf
}

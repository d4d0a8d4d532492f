package eksauth

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// MaxRequestBody caps the request body DecodeRequest reads. A projected
// token is a few KiB; this leaves room for large claims and nothing more.
const MaxRequestBody = 64 << 10

// pathPrefix and pathSuffix surround the cluster name in the request path.
const (
	pathPrefix = "/clusters/"
	pathSuffix = "/assume-role-for-pod-identity"
)

// clusterNameRE is EKS's cluster name pattern; the length (1–100) is checked apart.
var clusterNameRE = regexp.MustCompile(`^[0-9A-Za-z][A-Za-z0-9\-_]*$`)

// tokenRE is the token pattern of the API reference: three base64url parts.
var tokenRE = regexp.MustCompile(`^[A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_=]+$`)

// ValidClusterName reports whether name is a valid EKS cluster name.
func ValidClusterName(name string) bool {
	return len(name) >= 1 && len(name) <= 100 && clusterNameRE.MatchString(name)
}

// Path is the request path of AssumeRoleForPodIdentity for a cluster.
func Path(clusterName string) string {
	return pathPrefix + clusterName + pathSuffix
}

// DecodeRequest parses an AssumeRoleForPodIdentity request: the method, the
// path and its cluster name, the content type and the JSON body (at most
// MaxRequestBody bytes). It does not look at the caller's credentials. The
// error, if any, is ready for WriteError and never echoes the token.
func DecodeRequest(r *http.Request) (clusterName string, in *Input, err *Error) {
	path := r.URL.EscapedPath()
	if !strings.HasPrefix(path, pathPrefix) || !strings.HasSuffix(path, pathSuffix) ||
		len(path) < len(pathPrefix)+len(pathSuffix) {
		return "", nil, &Error{Code: CodeResourceNotFound, Message: "unknown operation: only POST " + pathPrefix + "{clusterName}" + pathSuffix + " is served"}
	}
	clusterName = path[len(pathPrefix) : len(path)-len(pathSuffix)]
	if strings.Contains(clusterName, "/") {
		return "", nil, &Error{Code: CodeResourceNotFound, Message: "unknown operation: only POST " + pathPrefix + "{clusterName}" + pathSuffix + " is served"}
	}
	if r.Method != http.MethodPost {
		return "", nil, &Error{Code: CodeInvalidRequest, Message: "method " + strconv.Quote(r.Method) + " not allowed; use POST", Status: http.StatusMethodNotAllowed}
	}
	if !ValidClusterName(clusterName) {
		return "", nil, NewError(CodeInvalidParameter, "clusterName must be 1 to 100 characters matching [0-9A-Za-z][A-Za-z0-9\\-_]*")
	}
	if mt, _, perr := mime.ParseMediaType(r.Header.Get("Content-Type")); perr != nil || mt != "application/json" {
		return "", nil, &Error{Code: CodeInvalidRequest, Message: "Content-Type must be application/json", Status: http.StatusUnsupportedMediaType}
	}
	body, rerr := io.ReadAll(io.LimitReader(r.Body, MaxRequestBody+1))
	if rerr != nil {
		return "", nil, NewError(CodeInvalidRequest, "reading the request body failed")
	}
	if len(body) > MaxRequestBody {
		return "", nil, &Error{Code: CodeInvalidRequest, Message: "request body larger than " + strconv.Itoa(MaxRequestBody) + " bytes", Status: http.StatusRequestEntityTooLarge}
	}
	in, err = decodeInput(body)
	if err != nil {
		return "", nil, err
	}
	return clusterName, in, nil
}

// decodeInput parses and validates the JSON body.
func decodeInput(body []byte) (*Input, *Error) {
	var raw struct {
		Token *string `json:"token"`
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if derr := dec.Decode(&raw); derr != nil {
		return nil, NewError(CodeInvalidRequest, "request body is not a JSON object")
	}
	if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
		return nil, NewError(CodeInvalidRequest, "request body has data after the JSON object")
	}
	if raw.Token == nil || *raw.Token == "" {
		return nil, NewError(CodeInvalidParameter, "token is required")
	}
	if !tokenRE.MatchString(*raw.Token) {
		return nil, NewError(CodeInvalidToken, "token is not a JSON Web Token")
	}
	return &Input{Token: *raw.Token}, nil
}

// WriteResponse writes a successful AssumeRoleForPodIdentity response.
func WriteResponse(w http.ResponseWriter, out *Output) {
	body, err := json.Marshal(out)
	if err != nil { // plain strings and a time cannot fail to marshal
		WriteError(w, NewError(CodeInternalServer, "encoding the response failed"))
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// WriteError writes e as EKS Auth does: its code in X-Amzn-Errortype, its
// status, and a JSON body with message (and __type, for clients that read
// only the body).
func WriteError(w http.ResponseWriter, e *Error) {
	body, _ := json.Marshal(errorBody{Type: e.Code, Message: e.Message}) // strings only: cannot fail
	w.Header().Set("X-Amzn-Errortype", e.Code)
	writeJSON(w, e.HTTPStatus(), body)
}

// writeJSON writes a JSON body with its length.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // the client hung up; nothing to do
}

package oidc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/podiam/podiam/internal/httpserve"
)

// ServeOptions configures a [DocumentHandler].
type ServeOptions struct {
	// Dir holds the documents as `podiam oidc publish --to DIR` writes them:
	// DiscoveryPath, and the JWKS at the path its jwks_uri names relative to
	// the issuer (JWKSPath or keys.json).
	Dir string
	// PathPrefix is the URL path the documents are served under. Empty means
	// the path of the discovery document's issuer (https://host/clusters/a
	// serves /clusters/a/.well-known/openid-configuration); "/" serves them at
	// the root, for a reverse proxy that strips the issuer's path.
	PathPrefix string
	// Logger receives one line per document (re)loaded or kept. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// DocumentHandler serves exactly two documents of an issuer, the discovery
// document and the JWKS it points to, from a directory. Request paths are only
// compared with those two paths, never turned into file names, so no request
// reaches another file, and directories are never listed; the files are opened
// through an os.Root, so a symlink cannot lead outside the directory either.
//
// Each request looks at its file's metadata (one stat) and re-reads the file
// when it changed, so a new publish, a rename over the file or the kubelet's
// symlink swap of a ConfigMap volume is served by the next request. A file
// that turns unreadable or is not valid JSON (caught half-written, say) keeps
// its last good content, which is logged.
//
// Only GET and HEAD are answered (405 otherwise), with Content-Type
// application/json, Cache-Control [CacheControl], an ETag, and 304 for a
// matching If-None-Match. /healthz answers "ok".
type DocumentHandler struct {
	root        *os.Root
	prefix      string // from ServeOptions, without a trailing slash
	fixedPrefix bool   // false: the prefix is the issuer's path
	log         *slog.Logger

	mu    sync.Mutex
	files map[string]*document // by path relative to root
	// bad is the metadata of a file version that could not be used, so that
	// it is logged once rather than on every request.
	bad map[string]fs.FileInfo
	// routes is derived from the loaded discovery document.
	routes routes
}

// document is the last good content of one file.
type document struct {
	info fs.FileInfo // at the read, to tell a change
	body []byte
	etag string
}

// routes maps the two request paths to files.
type routes struct {
	discovery string // request path of the discovery document
	jwks      string // request path of the JWKS; "" when jwks_uri is elsewhere
	jwksFile  string // its file under the root
}

// NewDocumentHandler opens o.Dir and loads its discovery document, which must
// be there: without it there is nothing to serve.
func NewDocumentHandler(o ServeOptions) (*DocumentHandler, error) {
	root, err := os.OpenRoot(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("opening document directory: %w", err)
	}
	h := &DocumentHandler{root: root, files: map[string]*document{}, bad: map[string]fs.FileInfo{}, log: o.Logger}
	if o.PathPrefix != "" {
		h.fixedPrefix = true
		if p := strings.Trim(o.PathPrefix, "/"); p != "" {
			h.prefix = "/" + p
		}
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.log = h.log.With("dir", o.Dir)
	if _, _, err := h.current(); err != nil {
		root.Close()
		return nil, fmt.Errorf("%w (write it with podiam oidc publish --to %s)", err, o.Dir)
	}
	return h, nil
}

// Close releases the directory.
func (h *DocumentHandler) Close() error { return h.root.Close() }

// ServeHTTP implements http.Handler.
func (h *DocumentHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/healthz" {
		_, _ = w.Write([]byte("ok\n"))
		return
	}
	disc, rt, err := h.current()
	if err != nil {
		http.Error(w, "discovery document unavailable", http.StatusInternalServerError)
		return
	}
	var doc *document
	path := r.URL.Path
	if r.URL.RawPath != "" {
		// Escapes beyond the usual (%2F for a slash, say) name another
		// resource than the document's path, even though they decode to it.
		path = ""
	}
	switch path {
	case "":
		http.NotFound(w, r)
		return
	case rt.discovery:
		doc = disc
	case rt.jwks: // never "": handled above
		if doc, err = h.load(rt.jwksFile); err != nil {
			h.log.Error("cannot serve the JWKS", "err", err)
			http.Error(w, "JWKS unavailable", http.StatusInternalServerError)
			return
		}
	default:
		http.NotFound(w, r)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", ContentType)
	hdr.Set("Cache-Control", CacheControl)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("ETag", doc.etag)
	// ServeContent answers HEAD, If-None-Match (304) and If-Modified-Since.
	http.ServeContent(w, r, "", doc.info.ModTime(), bytes.NewReader(doc.body))
}

// current returns the discovery document and the routes it implies,
// re-reading it if it changed.
func (h *DocumentHandler) current() (*document, routes, error) {
	doc, err := h.load(DiscoveryPath)
	if err != nil {
		return nil, routes{}, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return doc, h.routes, nil
}

// load returns the last good content of the file at rel, re-reading it when
// its metadata changed. A file that has never been read successfully is an
// error.
func (h *DocumentHandler) load(rel string) (*document, error) {
	info, statErr := h.root.Stat(rel)
	h.mu.Lock()
	old, bad := h.files[rel], h.bad[rel]
	h.mu.Unlock()
	if statErr == nil && old != nil && (sameFile(info, old.info) || bad != nil && sameFile(info, bad)) {
		return old, nil
	}
	doc, rt, err := h.read(rel, info, statErr)
	if err != nil {
		if old == nil {
			return nil, err
		}
		h.mu.Lock()
		h.bad[rel] = info // nil when the file is gone: logged again until it is back
		h.mu.Unlock()
		h.log.Warn("keeping the last good document", "file", rel, "err", err)
		return old, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.files[rel] = doc
	delete(h.bad, rel)
	if rel == DiscoveryPath {
		h.routes = rt
	}
	h.log.Info("loaded document", "file", rel, "bytes", len(doc.body), "etag", doc.etag)
	return doc, nil
}

// read reads and checks the file at rel, whose Stat gave info and statErr.
func (h *DocumentHandler) read(rel string, info fs.FileInfo, statErr error) (*document, routes, error) {
	if statErr != nil {
		return nil, routes{}, fmt.Errorf("document %s: %w", rel, statErr)
	}
	if !info.Mode().IsRegular() {
		return nil, routes{}, fmt.Errorf("document %s is not a regular file", rel)
	}
	body, err := h.root.ReadFile(rel)
	if err != nil {
		return nil, routes{}, fmt.Errorf("reading document %s: %w", rel, err)
	}
	if !json.Valid(body) {
		return nil, routes{}, fmt.Errorf("document %s is not valid JSON", rel)
	}
	var rt routes
	if rel == DiscoveryPath {
		if rt, err = h.routesOf(body); err != nil {
			return nil, routes{}, err
		}
	}
	sum := sha256.Sum256(body)
	return &document{info: info, body: body, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}, rt, nil
}

// routesOf derives the request paths from a discovery document: both under
// the prefix (the issuer's path unless set), the JWKS at the path of its
// jwks_uri relative to the issuer, which is where publish writes it.
func (h *DocumentHandler) routesOf(discovery []byte) (routes, error) {
	var d Discovery
	if err := json.Unmarshal(discovery, &d); err != nil {
		return routes{}, fmt.Errorf("document %s: %w", DiscoveryPath, err)
	}
	iss, err := url.Parse(d.Issuer)
	if err != nil || iss.Host == "" {
		return routes{}, fmt.Errorf("document %s: issuer %q is not a URL with a host", DiscoveryPath, d.Issuer)
	}
	prefix := h.prefix
	if !h.fixedPrefix {
		prefix = strings.TrimSuffix(iss.Path, "/")
	}
	rt := routes{discovery: prefix + "/" + DiscoveryPath}
	rel, under := strings.CutPrefix(d.JWKSURI, strings.TrimSuffix(d.Issuer, "/")+"/")
	u, err := url.Parse(rel)
	if !under || err != nil || u.RawQuery != "" || u.Fragment != "" ||
		!filepath.IsLocal(filepath.FromSlash(u.Path)) || u.Path == DiscoveryPath {
		h.log.Warn("jwks_uri is not under the issuer; only the discovery document is served",
			"issuer", d.Issuer, "jwks_uri", d.JWKSURI)
		return rt, nil
	}
	rt.jwks, rt.jwksFile = prefix+"/"+u.Path, filepath.FromSlash(u.Path)
	return rt, nil
}

// sameFile tells whether a and b describe the same unchanged file: a rename
// over it or a symlink swap changes the file, an in-place write its size or
// modification time.
func sameFile(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// ShutdownTimeout bounds the drain of in-flight requests in [Serve].
const ShutdownTimeout = 10 * time.Second

// Serve serves h over TLS on ln until ctx is done, then stops accepting and
// drains in-flight requests for up to ShutdownTimeout (httpserve.Run).
// tlsCfg supplies the certificate (its GetCertificate may reload it) and, by
// its NextProtos, whether HTTP/2 is offered. A nil logger means
// slog.Default().
func Serve(ctx context.Context, ln net.Listener, tlsCfg *tls.Config, h http.Handler, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	srv := &http.Server{
		Handler:   h,
		TLSConfig: tlsCfg,
		// Two small documents: a client slower than this is not a reader.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("serving OIDC documents", "address", ln.Addr().String())
	err := httpserve.Run(ctx, httpserve.Options{ShutdownTimeout: ShutdownTimeout, Logger: logger},
		httpserve.Endpoint{Server: srv, Listener: tls.NewListener(ln, tlsCfg)})
	if err != nil {
		return fmt.Errorf("serving OIDC documents: %w", err)
	}
	return nil
}

package inject

import (
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// patch builds a JSONPatch (RFC 6902) document of "add" operations. It writes
// JSON directly: the values are a handful of fixed shapes, and reflection-based
// encoding was the largest cost of an admission request.
type patch struct {
	buf []byte
}

// jsonValue is a value of a patch operation that writes itself as JSON.
type jsonValue interface {
	appendJSON([]byte) []byte
}

func (p *patch) add(path string, v jsonValue) {
	if len(p.buf) == 0 {
		p.buf = append(p.buf, '[') // first op
	} else {
		p.buf = append(p.buf, ',')
	}
	p.buf = append(p.buf, `{"op":"add","path":`...)
	p.buf = appendString(p.buf, path)
	p.buf = append(p.buf, `,"value":`...)
	p.buf = v.appendJSON(p.buf)
	p.buf = append(p.buf, '}')
}

// addItems appends items to the array at path, one op per item, or creates the
// array with all items at once when it does not exist. Replacing an existing
// array would drop what other webhooks or the user put there.
func (p *patch) addItems(path string, exists bool, items []jsonValue) {
	if len(items) == 0 {
		return
	}
	if !exists {
		p.add(path, array(items))
		return
	}
	for _, it := range items {
		p.add(path+"/-", it)
	}
}

// encode returns the JSON document, or nil for an empty patch.
func (p *patch) encode() []byte {
	if len(p.buf) == 0 {
		return nil
	}
	return append(p.buf, ']')
}

func appendString(b []byte, s string) []byte {
	b, err := jsontext.AppendQuote(b, s)
	if err != nil {
		// Only invalid UTF-8 fails; AppendQuote has then already written it
		// with replacement characters, which is the best we can do.
		return b
	}
	return b
}

// envVar is an environment variable, either a literal value or a field reference.
type envVar struct {
	name, value, fieldPath string
}

func (e *envVar) appendJSON(b []byte) []byte {
	b = append(b, `{"name":`...)
	b = appendString(b, e.name)
	if e.fieldPath != "" {
		b = append(b, `,"valueFrom":{"fieldRef":{"fieldPath":`...)
		b = appendString(b, e.fieldPath)
		return append(b, `}}}`...)
	}
	b = append(b, `,"value":`...)
	b = appendString(b, e.value)
	return append(b, '}')
}

// array is a JSON array of values.
type array []jsonValue

func (a array) appendJSON(b []byte) []byte {
	b = append(b, '[')
	for i, v := range a {
		if i > 0 {
			b = append(b, ',')
		}
		b = v.appendJSON(b)
	}
	return append(b, ']')
}

// mount is a read-only volume mount.
type mount struct {
	name, path string
}

func (m mount) appendJSON(b []byte) []byte {
	b = append(b, `{"name":`...)
	b = appendString(b, m.name)
	b = append(b, `,"mountPath":`...)
	b = appendString(b, m.path)
	return append(b, `,"readOnly":true}`...)
}

// tokenVolume is a projected ServiceAccount token volume.
type tokenVolume struct {
	target
	expiration int64
}

func (v tokenVolume) appendJSON(b []byte) []byte {
	b = append(b, `{"name":`...)
	b = appendString(b, v.volume)
	b = append(b, `,"projected":{"sources":[{"serviceAccountToken":{"audience":`...)
	b = appendString(b, v.audience)
	b = append(b, `,"expirationSeconds":`...)
	b = strconv.AppendInt(b, v.expiration, 10)
	b = append(b, `,"path":`...)
	b = appendString(b, v.tokenPath)
	return append(b, `}}]}}`...)
}

type intValue int64

func (n intValue) appendJSON(b []byte) []byte { return strconv.AppendInt(b, int64(n), 10) }

type stringValue string

func (s stringValue) appendJSON(b []byte) []byte { return appendString(b, string(s)) }

// member is a one-member object {key: value}.
type member struct {
	key   string
	value jsonValue
}

func (m member) appendJSON(b []byte) []byte {
	b = append(b, '{')
	b = appendString(b, m.key)
	b = append(b, ':')
	b = m.value.appendJSON(b)
	return append(b, '}')
}

// escapePointer escapes a JSON Pointer reference token (RFC 6901).
func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

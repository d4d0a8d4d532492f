// Package jsonscan decodes JSON objects member by member, for the types whose
// decoding is on the webhook's hot path: the AdmissionReview's request and a
// pod's containers. Decoded by reflection, every member a struct does not have
// costs two map lookups (exact, then case-folded name) and a token-by-token
// skip; read by DecodeObject it is one switch and one scan. The result is what
// the struct decoding gives: names match exactly (an escaped name means what
// it decodes to), the last of duplicates wins, null is the zero value.
package jsonscan

import (
	"bytes"
	"fmt"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Options are the decoding options of every document the webhook reads. They
// accept what the API server's own decoder accepts: duplicate names are
// tolerated (the last wins) rather than failing admission.
var Options = json.JoinOptions(jsontext.AllowDuplicateNames(true))

// Fields is implemented by the types that DecodeObject decodes.
type Fields interface {
	// Field returns a pointer to where the member name is decoded, or nil when
	// the member is not read. name is valid only during the call. A pointer to
	// a json.UnmarshalerFrom decodes the member itself.
	Field(name []byte) any
}

// DecodeObject decodes the next JSON object of dec into v, member by member in
// document order. A JSON null leaves v unchanged; any other kind of value is
// an error.
func DecodeObject(dec *jsontext.Decoder, v Fields) error {
	return DecodeMembers(dec, func(name []byte) error {
		if dst := v.Field(name); dst != nil {
			return json.UnmarshalDecode(dec, dst)
		}
		_, err := dec.ReadValue() // one tight scan, where SkipValue reads token by token
		return err
	})
}

// DecodeMembers reads the next JSON object of dec, calling member with the
// name of each member, in document order, to read its value from dec. name is
// valid only during the call. A JSON null calls nothing; any other kind of
// value is an error.
func DecodeMembers(dec *jsontext.Decoder, member func(name []byte) error) error {
	if null, err := expect(dec, '{'); null || err != nil {
		return err
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	for dec.PeekKind() != '}' {
		name, err := readString(dec)
		if err != nil {
			return err
		}
		if err := member(name); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

// DecodeElements reads the next JSON array of dec, calling item to read each
// element from dec, or a JSON null, which it reports; any other kind of value
// is an error.
func DecodeElements(dec *jsontext.Decoder, item func() error) (null bool, err error) {
	if null, err := expect(dec, '['); null || err != nil {
		return null, err
	}
	if _, err := dec.ReadToken(); err != nil {
		return false, err
	}
	for dec.PeekKind() != ']' {
		if err := item(); err != nil {
			return false, err
		}
	}
	_, err = dec.ReadToken()
	return false, err
}

// SkipObject reads the next value of dec, checking only that it is a JSON
// object or null: what a list item that is not kept must be.
func SkipObject(dec *jsontext.Decoder) error {
	if null, err := expect(dec, '{'); null || err != nil {
		return err
	}
	_, err := dec.ReadValue() // one tight scan, which also checks the syntax
	return err
}

// ReadString reads the next value of dec, a JSON string or null, and returns
// its contents (nil for null), valid until the next read. Only a string with
// escapes allocates.
func ReadString(dec *jsontext.Decoder) ([]byte, error) {
	if null, err := expect(dec, '"'); null || err != nil {
		return nil, err
	}
	return readString(dec)
}

// readString reads the string that is the next value of dec.
func readString(dec *jsontext.Decoder) ([]byte, error) {
	raw, err := dec.ReadValue() // quoted, and checked to be valid
	if err != nil {
		return nil, err
	}
	if bytes.IndexByte(raw, '\\') >= 0 { // rare: an escaped string means what it decodes to
		return jsontext.AppendUnquote(nil, raw)
	}
	return raw[1 : len(raw)-1], nil
}

// expect checks that the next value of dec is of kind want ('{', '[' or '"'),
// leaving it unread, or null, which it reads and reports.
func expect(dec *jsontext.Decoder, want jsontext.Kind) (null bool, err error) {
	switch k := dec.PeekKind(); k {
	case want:
		return false, nil
	case 'n':
		_, err := dec.ReadToken()
		return true, err
	case 0:
		_, err := dec.ReadToken() // the syntax error
		return false, err
	default:
		return false, fmt.Errorf("JSON %s is not %s", k, kindNames[want])
	}
}

var kindNames = map[jsontext.Kind]string{'{': "an object", '[': "an array", '"': "a string"}

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
	switch k := dec.PeekKind(); k {
	case 'n':
		_, err := dec.ReadToken()
		return err
	case '{':
		if _, err := dec.ReadToken(); err != nil {
			return err
		}
	case 0:
		_, err := dec.ReadToken() // the syntax error
		return err
	default:
		return fmt.Errorf("JSON %s is not an object", k)
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue() // quoted; valid until the next read
		if err != nil {
			return err
		}
		if bytes.IndexByte(name, '\\') >= 0 { // rare: an escaped name means what it decodes to
			if name, err = jsontext.AppendUnquote(nil, name); err != nil {
				return err
			}
		} else {
			name = name[1 : len(name)-1]
		}
		if err := member(name); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

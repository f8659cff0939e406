// Package jsonerr turns the errors of encoding/json into what a client can
// act on: the field at fault and a message in the API's own terms. The
// decoder's own messages name Go types and structs ("cannot unmarshal
// number -1 into Go struct field .seq of type uint64"), which mean nothing
// to a client written in any other language.
package jsonerr

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// Explain describes err, an error of json.Decoder.Decode or json.Unmarshal
// into a struct: the offending field (a JSON key, dotted when nested; ""
// when the fault is not one field's) and a message for the client.
func Explain(err error) (field, msg string) {
	var typ *json.UnmarshalTypeError
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &typ):
		if typ.Field == "" {
			return "", "the request must be a JSON object"
		}
		return typ.Field, typ.Field + " must be " + expected(typ.Type)
	case errors.As(err, &syn):
		return "", fmt.Sprintf("not valid JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.Is(err, io.EOF):
		return "", "the request is empty; a JSON object is expected"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "", "the JSON is truncated"
	}
	// DisallowUnknownFields reports a key of no field only as text.
	if rest, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if name, uerr := strconv.Unquote(rest); uerr == nil {
			return name, fmt.Sprintf("unknown field %q", name)
		}
	}
	return "", "not valid JSON for this request"
}

// expected names what a value of type t looks like in JSON.
func expected(t reflect.Type) string {
	if t == nil {
		return "of another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	default:
		return "of another type"
	}
}

package jsonerr

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

type inner struct {
	Seq   uint64 `json:"seq"`
	Emoji string `json:"emoji"`
}

type request struct {
	Chat    string   `json:"chat"`
	ReadSeq uint64   `json:"read_seq"`
	Offset  int      `json:"offset"`
	Ratio   float64  `json:"ratio"`
	Flag    bool     `json:"flag"`
	UserIDs []string `json:"user_ids"`
	Key     []byte   `json:"key"`
	Edit    *inner   `json:"edit"`
}

func decode(s string) error {
	var r request
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	return dec.Decode(&r)
}

func TestExplain(t *testing.T) {
	for _, tc := range []struct {
		in, field, msg string
	}{
		{`{"read_seq":-1}`, "read_seq", "read_seq must be a non-negative integer"},
		{`{"read_seq":1.5}`, "read_seq", "read_seq must be a non-negative integer"},
		{`{"read_seq":"1"}`, "read_seq", "read_seq must be a non-negative integer"},
		{`{"read_seq":99999999999999999999}`, "read_seq", "read_seq must be a non-negative integer"},
		{`{"offset":"x"}`, "offset", "offset must be an integer"},
		{`{"ratio":true}`, "ratio", "ratio must be a number"},
		{`{"chat":1}`, "chat", "chat must be a string"},
		{`{"flag":"yes"}`, "flag", "flag must be true or false"},
		{`{"user_ids":"a"}`, "user_ids", "user_ids must be an array"},
		{`{"user_ids":[1]}`, "user_ids", "user_ids must be a string"},
		{`{"key":5}`, "key", "key must be a base64 string"},
		{`{"edit":[]}`, "edit", "edit must be an object"},
		{`{"edit":{"seq":-3}}`, "edit.seq", "edit.seq must be a non-negative integer"},
		{`{"sequence":1}`, "sequence", `unknown field "sequence"`},
		{`{"edit":{"sq":1}}`, "sq", `unknown field "sq"`},
		{`[1]`, "", "the request must be a JSON object"},
		{`"x"`, "", "the request must be a JSON object"},
		{``, "", "the request is empty; a JSON object is expected"},
		{`{"chat":`, "", "the JSON is truncated"},
		{`{"chat" 1}`, "", "not valid JSON at byte 9: invalid character '1' after object key"},
	} {
		err := decode(tc.in)
		if err == nil {
			t.Fatalf("%s: decoded", tc.in)
		}
		field, msg := Explain(err)
		if field != tc.field || msg != tc.msg {
			t.Errorf("%s: got (%q, %q), want (%q, %q)", tc.in, field, msg, tc.field, tc.msg)
		}
		for _, leak := range []string{"Go ", "struct", "uint64", "jsonerr", "request"} {
			if leak == "request" && strings.HasPrefix(msg, "the request") {
				continue
			}
			if strings.Contains(msg, leak) {
				t.Errorf("%s: message %q names Go internals (%q)", tc.in, msg, leak)
			}
		}
	}
}

// FuzzExplain: whatever the input, the message never carries the
// decoder's Go vocabulary.
func FuzzExplain(f *testing.F) {
	for _, s := range []string{`{"read_seq":-1}`, `{"edit":{"seq":"x"}}`, `[`, `{"x":1}`, `nul`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var r request
		dec := json.NewDecoder(bytes.NewReader(in))
		dec.DisallowUnknownFields()
		err := dec.Decode(&r)
		if err == nil {
			return
		}
		field, msg := Explain(err)
		if field != "" && msg == fmt.Sprintf("unknown field %q", field) {
			return // the client's own key, echoed
		}
		for _, leak := range []string{"Go ", "uint64", "jsonerr.", "json: "} {
			if strings.Contains(msg, leak) {
				t.Fatalf("%q: message %q names Go internals", in, msg)
			}
		}
	})
}

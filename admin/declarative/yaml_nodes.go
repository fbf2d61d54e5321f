package declarative

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// runJSON is the JSON of each of the n items of a run of sequence items,
// written straight from yaml.v3's nodes: decoding them into maps and
// encoding those again was a third of converting a large document. It
// writes the bytes json.Marshal writes for what yaml.Unmarshal decodes
// (object keys sorted), and gives up (ok false) on anything it does not
// mirror exactly: an alias, an explicit tag, a key that is not a string or
// is there twice, a merge key. The caller then decodes the run as before.
func runJSON(text []byte, n int) (items [][]byte, ok bool) {
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, false
	}
	seq := doc.Content[0]
	if seq.Kind != yaml.SequenceNode || seq.Style&yaml.TaggedStyle != 0 || len(seq.Content) != n {
		return nil, false
	}
	items = make([][]byte, n)
	for i, item := range seq.Content {
		if items[i], ok = appendNodeJSON(nil, item); !ok {
			return nil, false
		}
	}
	return items, true
}

// appendNodeJSON appends the JSON of the value yaml.v3 decodes n into.
func appendNodeJSON(buf []byte, n *yaml.Node) ([]byte, bool) {
	if n.Style&yaml.TaggedStyle != 0 {
		return nil, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		return appendMappingJSON(buf, n)
	case yaml.SequenceNode:
		buf = append(buf, '[')
		for i, e := range n.Content {
			if i > 0 {
				buf = append(buf, ',')
			}
			var ok bool
			if buf, ok = appendNodeJSON(buf, e); !ok {
				return nil, false
			}
		}
		return append(buf, ']'), true
	case yaml.ScalarNode:
		return appendScalarJSON(buf, n)
	}
	return nil, false // an alias
}

// appendMappingJSON writes a mapping of string keys as an object with its
// keys sorted, as json.Marshal writes a map.
func appendMappingJSON(buf []byte, n *yaml.Node) ([]byte, bool) {
	type pair struct {
		key   string
		value *yaml.Node
	}
	pairs := make([]pair, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode || k.Style&yaml.TaggedStyle != 0 || k.ShortTag() != "!!str" {
			return nil, false
		}
		pairs = append(pairs, pair{k.Value, n.Content[i+1]})
	}
	slices.SortFunc(pairs, func(a, b pair) int { return strings.Compare(a.key, b.key) })
	buf = append(buf, '{')
	for i, p := range pairs {
		if i > 0 {
			if p.key == pairs[i-1].key {
				return nil, false // yaml.v3 rejects a key given twice
			}
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, p.key)
		buf = append(buf, ':')
		var ok bool
		if buf, ok = appendNodeJSON(buf, p.value); !ok {
			return nil, false
		}
	}
	return append(buf, '}'), true
}

// plainInt is an integer yaml.v3 resolves to the same digits json.Marshal
// writes back.
var plainInt = regexp.MustCompile(`^(0|-?[1-9][0-9]{0,17})$`)

func appendScalarJSON(buf []byte, n *yaml.Node) ([]byte, bool) {
	switch tag := n.ShortTag(); {
	case tag == "!!str":
		return appendJSONString(buf, n.Value), true
	case tag == "!!null":
		return append(buf, "null"...), true
	case tag == "!!bool" && (n.Value == "true" || n.Value == "false"):
		return append(buf, n.Value...), true
	case tag == "!!int" && plainInt.MatchString(n.Value):
		return append(buf, n.Value...), true
	case tag == "!!merge":
		return nil, false
	}
	// Other spellings, floats, timestamps: decoded and encoded as before.
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, false
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, false
	}
	return append(buf, b...), true
}

// appendJSONString writes s as json.Marshal does: printable ASCII that
// needs no escape as is, anything else through json.Marshal.
func appendJSONString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always encodes
			return append(buf, b...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

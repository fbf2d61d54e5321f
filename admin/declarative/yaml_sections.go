package declarative

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"sync"

	"gopkg.in/yaml.v3"
)

// A document of 100,000 routes is 60 MiB of YAML; parsed whole, yaml.v3
// holds a node for every scalar of it at once (gigabytes) on one core.
// The documents gateway export writes, and any laid out like them, are a
// top-level mapping whose keys each hold a block sequence: those are cut
// into runs of items, each parsed alone, on every core, and the JSON of the
// items joined. Anything else, or any run that does not parse (an alias to
// an anchor in another item, a syntax error), goes to the whole-document
// parse, which gives the same JSON or the error it always gave.

// sectionKey is a top-level key with its value below it: "routes:".
var sectionKey = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*):[ \t]*(#.*)?$`)

// itemsPerRun is how many sequence items one yaml.Unmarshal parses.
const itemsPerRun = 512

// yamlSection is one top-level key and the lines of its sequence's items.
type yamlSection struct {
	key   string
	items []span // each item's lines in the document
}

// span is the bytes from start to end of the document.
type span struct{ start, end int }

// toJSONBySections is ToJSON for a document laid out in sections; ok is
// false when it is not (or does not parse so), and the caller parses it
// whole instead.
func toJSONBySections(data []byte) (out []byte, ok bool) {
	sections, ok := splitSections(data)
	if !ok {
		return nil, false
	}
	type run struct {
		section, first, n int
		text              []byte // the run's items: consecutive in data
		json              [][]byte
		ok                bool
	}
	var runs []*run
	for si, s := range sections {
		for i := 0; i < len(s.items); i += itemsPerRun {
			items := s.items[i:min(i+itemsPerRun, len(s.items))]
			runs = append(runs, &run{section: si, first: i, n: len(items), text: data[items[0].start:items[len(items)-1].end]})
		}
	}
	parse := func(r *run) {
		if r.json, r.ok = runJSON(r.text, r.n); r.ok {
			return
		}
		var items []any
		if err := yaml.Unmarshal(r.text, &items); err != nil || len(items) != r.n {
			return
		}
		r.json = make([][]byte, len(items))
		for i, item := range items {
			v, err := jsonCompatible(item, fmt.Sprintf(".%s[%d]", sections[r.section].key, r.first+i))
			if err != nil {
				return
			}
			if r.json[i], err = json.Marshal(v); err != nil {
				return
			}
		}
		r.ok = true
	}
	next := make(chan *run)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for r := range next {
				parse(r)
			}
		})
	}
	for _, r := range runs {
		next <- r
	}
	close(next)
	wg.Wait()
	for _, r := range runs {
		if !r.ok {
			return nil, false
		}
	}

	// The bytes json.Marshal writes for the whole document: keys sorted.
	order := make([]int, len(sections))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmpString(sections[a].key, sections[b].key) })
	// Sized up front: grown by doubling, the 50 MiB of a large document
	// were copied over and over.
	size := 2
	for _, s := range sections {
		size += len(s.key) + 10
	}
	for _, r := range runs {
		for _, item := range r.json {
			size += len(item) + 1
		}
	}
	var buf bytes.Buffer
	buf.Grow(size)
	buf.WriteByte('{')
	for n, si := range order {
		if n > 0 {
			buf.WriteByte(',')
		}
		key, _ := json.Marshal(sections[si].key)
		buf.Write(key)
		buf.WriteByte(':')
		if len(sections[si].items) == 0 {
			buf.WriteString("null")
			continue
		}
		buf.WriteByte('[')
		first := true
		for _, r := range runs {
			if r.section != si {
				continue
			}
			for _, item := range r.json {
				if !first {
					buf.WriteByte(',')
				}
				first = false
				buf.Write(item)
			}
		}
		buf.WriteByte(']')
	}
	buf.WriteByte('}')
	return buf.Bytes(), true
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// splitSections cuts data into its top-level keys and their sequence
// items. It accepts only this layout: at column 0 nothing but "key:" lines
// (each key once), comments and blank lines; under each key a block
// sequence whose items start with "-" at one indentation, every other line
// of an item indented more (or blank, or a comment). ok is false otherwise.
// An item's lines are consecutive, so a run of items is one slice of data.
func splitSections(data []byte) (sections []yamlSection, ok bool) {
	seen := map[string]bool{}
	var cur *yamlSection
	itemIndent := -1
	extend := func(end int) { // the current item runs to end
		if cur != nil && len(cur.items) > 0 {
			cur.items[len(cur.items)-1].end = end
		}
	}
	for pos := 0; pos < len(data); {
		end := len(data)
		if i := bytes.IndexByte(data[pos:], '\n'); i >= 0 {
			end = pos + i + 1
		}
		body := bytes.TrimRight(data[pos:end], "\r\n")
		rest := bytes.TrimLeft(body, " ")
		indent := len(body) - len(rest)
		switch {
		case len(rest) > 0 && rest[0] == '\t':
			return nil, false // tab indentation: let yaml.v3 judge it
		case len(bytes.TrimSpace(rest)) == 0 || rest[0] == '#':
			extend(end) // blank or a comment: part of the item it is in
		case indent == 0 && !isItemStart(rest):
			m := sectionKey.FindSubmatch(body)
			if m == nil || seen[string(m[1])] {
				return nil, false
			}
			seen[string(m[1])] = true
			sections = append(sections, yamlSection{key: string(m[1])})
			cur, itemIndent = &sections[len(sections)-1], -1
		case cur == nil:
			return nil, false
		case (itemIndent < 0 || indent == itemIndent) && isItemStart(rest):
			itemIndent = indent
			cur.items = append(cur.items, span{pos, end})
		case itemIndent >= 0 && indent > itemIndent && len(cur.items) > 0:
			extend(end)
		default:
			return nil, false // a mapping or a scalar under a key, or a stray line
		}
		pos = end
	}
	return sections, len(sections) > 0
}

// isItemStart: a block sequence entry, "- x" or a lone "-".
func isItemStart(rest []byte) bool {
	return len(rest) > 0 && rest[0] == '-' && (len(rest) == 1 || rest[1] == ' ')
}

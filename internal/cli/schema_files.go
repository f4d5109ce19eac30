package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// definitionDoc is one SchemaDefinition read from a file, as JSON.
type definitionDoc struct {
	source string // the file, and the document's position when the file holds several
	body   json.RawMessage
}

// definitionExts are the files readDefinitions takes from a directory.
var definitionExts = map[string]bool{".yaml": true, ".yml": true, ".json": true}

// readDefinitions reads the definitions in path: a file, or every *.yaml, *.yml and *.json
// file directly in a directory, in lexical order.
func readDefinitions(path string) ([]definitionDoc, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if info.IsDir() {
		entries, err := os.ReadDir(path) // sorted by name
		if err != nil {
			return nil, err
		}
		files = files[:0]
		for _, e := range entries {
			if !e.IsDir() && definitionExts[strings.ToLower(filepath.Ext(e.Name()))] {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	var docs []definitionDoc
	for _, f := range files {
		d, err := readDefinitionFile(f)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d...)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("no schema definitions in %s", path)
	}
	return docs, nil
}

// readDefinitionFile reads the documents of one file. A .json file holds JSON values one after
// the other; any other file is YAML, its documents separated by "---" lines.
func readDefinitionFile(path string) ([]definitionDoc, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var docs []definitionDoc
	add := func(b []byte) {
		b = bytes.TrimSpace(b)
		if len(b) > 0 && string(b) != "null" { // null: a document of only comments, or nothing
			docs = append(docs, definitionDoc{source: path, body: b})
		}
	}
	if strings.EqualFold(filepath.Ext(path), ".json") {
		values, err := splitJSON(data)
		if err != nil {
			return nil, fmt.Errorf("%s: not valid JSON: %w", path, err)
		}
		for _, v := range values {
			add(v)
		}
	} else {
		for _, doc := range splitYAML(data) {
			j, err := yaml.YAMLToJSONStrict(doc)
			if err != nil {
				return nil, fmt.Errorf("%s: document %d: not valid YAML: %w", path, len(docs)+1, err)
			}
			add(j)
		}
	}
	for i := range docs {
		if len(docs) > 1 {
			docs[i].source = fmt.Sprintf("%s (document %d)", path, i+1)
		}
		if docs[i].body[0] != '{' {
			return nil, fmt.Errorf("%s: not a schema definition: want a mapping, got %.40s", docs[i].source, docs[i].body)
		}
	}
	return docs, nil
}

// splitYAML splits a YAML stream at its "---" lines, which may carry a comment after them.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	var cur []byte
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(bytes.TrimRight(line, " \t\r\n"), []byte("---")); ok {
			rest = bytes.TrimSpace(rest)
			if len(rest) == 0 || rest[0] == '#' {
				docs = append(docs, cur)
				cur = nil
				continue
			}
		}
		cur = append(cur, line...)
	}
	return append(docs, cur)
}

// splitJSON reads the JSON values of data, one after the other.
func splitJSON(data []byte) ([]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var out []json.RawMessage
	for {
		var v json.RawMessage
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
}

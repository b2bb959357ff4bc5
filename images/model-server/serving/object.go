package serving

import (
	"encoding/json"
	"fmt"
)

// topLevelFields returns the raw value of every member of the JSON object body, skipping the
// values without decoding them (a duplicate key is an error). It replaces json.Unmarshal on the
// predict path, which scans a large body twice.
func topLevelFields(body []byte) (map[string][]byte, error) {
	s := &scanner{b: body}
	s.ws()
	if !s.eat('{') {
		return nil, fmt.Errorf("malformed JSON: the value is not an object")
	}
	out := map[string][]byte{}
	s.ws()
	if s.eat('}') {
		return out, s.end()
	}
	for {
		s.ws()
		key, err := s.str()
		if err != nil {
			return nil, err
		}
		s.ws()
		if !s.eat(':') {
			return nil, fmt.Errorf("malformed JSON: expected ':' after %q", key)
		}
		s.ws()
		start := s.i
		if err := s.skipValue(0); err != nil {
			return nil, err
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("malformed JSON: member %q given twice", key)
		}
		out[key] = body[start:s.i]
		s.ws()
		if s.eat(',') {
			continue
		}
		if s.eat('}') {
			return out, s.end()
		}
		return nil, fmt.Errorf("malformed JSON: expected ',' or '}' at offset %d", s.i)
	}
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\n' || s.b[s.i] == '\t' || s.b[s.i] == '\r') {
		s.i++
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) end() error {
	s.ws()
	if s.i != len(s.b) {
		return fmt.Errorf("malformed JSON: data after the object at offset %d", s.i)
	}
	return nil
}

// str reads a JSON string; escaped keys are decoded by encoding/json.
func (s *scanner) str() (string, error) {
	start := s.i
	if !s.eat('"') {
		return "", fmt.Errorf("malformed JSON: expected a string at offset %d", s.i)
	}
	escaped := false
	for s.i < len(s.b) {
		c := s.b[s.i]
		s.i++
		switch {
		case c == '\\':
			escaped = true
			s.i++
		case c == '"':
			if !escaped {
				return string(s.b[start+1 : s.i-1]), nil
			}
			var out string
			if err := json.Unmarshal(s.b[start:s.i], &out); err != nil {
				return "", fmt.Errorf("malformed JSON: %v", err)
			}
			return out, nil
		case c < 0x20:
			return "", fmt.Errorf("malformed JSON: control character in string")
		}
	}
	return "", fmt.Errorf("malformed JSON: unterminated string")
}

// skipValue skips one JSON value. Scalars are checked by encoding/json.
func (s *scanner) skipValue(depth int) error {
	if depth > 64 {
		return fmt.Errorf("malformed JSON: nested too deeply")
	}
	if s.i >= len(s.b) {
		return fmt.Errorf("malformed JSON: unexpected end")
	}
	switch s.b[s.i] {
	case '"':
		_, err := s.str()
		return err
	case '[', '{':
		open := s.b[s.i]
		closing := byte(']')
		if open == '{' {
			closing = '}'
		}
		s.i++
		s.ws()
		if s.eat(closing) {
			return nil
		}
		for {
			s.ws()
			if open == '{' {
				if _, err := s.str(); err != nil {
					return err
				}
				s.ws()
				if !s.eat(':') {
					return fmt.Errorf("malformed JSON: expected ':' at offset %d", s.i)
				}
				s.ws()
			}
			if err := s.skipValue(depth + 1); err != nil {
				return err
			}
			s.ws()
			if s.eat(',') {
				continue
			}
			if s.eat(closing) {
				return nil
			}
			return fmt.Errorf("malformed JSON: unexpected character at offset %d", s.i)
		}
	default:
		start := s.i
		for s.i < len(s.b) && s.b[s.i] != ',' && s.b[s.i] != ']' && s.b[s.i] != '}' && s.b[s.i] != ' ' && s.b[s.i] != '\n' && s.b[s.i] != '\t' && s.b[s.i] != '\r' {
			s.i++
		}
		if !json.Valid(s.b[start:s.i]) {
			return fmt.Errorf("malformed JSON: invalid value %q", s.b[start:s.i])
		}
		return nil
	}
}

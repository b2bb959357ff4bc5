package serving

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unsafe"
)

// ErrTensor is wrapped by every error about a request's numbers.
var ErrTensor = errors.New("invalid tensor")

// maxDepth bounds array nesting.
const maxDepth = 8

// parseTensor parses a JSON value made of (nested) arrays of numbers with a
// uniform shape, returning the values flattened row-major and the shape. It
// is a hand-written scanner because encoding/json spends most of a predict
// request turning 784 numbers per image into interface values.
func parseTensor(b []byte, limit int) ([]float32, []int, error) {
	p := &tparser{b: b, limit: limit}
	p.ws()
	if err := p.value(0); err != nil {
		return nil, nil, err
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, nil, fmt.Errorf("%w: unexpected %q after the array", ErrTensor, p.b[p.i])
	}
	return p.out, append([]int(nil), p.dims[:p.leafAt]...), nil
}

type tparser struct {
	b      []byte
	i      int
	out    []float32
	dims   [maxDepth + 1]int // dims[d] is fixed by the first array closed at depth d; 0 = not yet
	limit  int
	leafAt int // depth of numbers; -1 until known
	seen   bool
}

func (p *tparser) ws() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\n' || p.b[p.i] == '\t' || p.b[p.i] == '\r') {
		p.i++
	}
}

func (p *tparser) value(depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrTensor, maxDepth)
	}
	if p.i >= len(p.b) {
		return fmt.Errorf("%w: unexpected end", ErrTensor)
	}
	if p.b[p.i] != '[' {
		if !p.seen {
			p.seen, p.leafAt = true, depth
		} else if p.leafAt != depth {
			return fmt.Errorf("%w: ragged nesting", ErrTensor)
		}
		return p.number()
	}
	if p.seen && depth >= p.leafAt {
		return fmt.Errorf("%w: ragged nesting", ErrTensor)
	}
	p.i++
	p.ws()
	n := 0
	if p.i < len(p.b) && p.b[p.i] == ']' {
		return fmt.Errorf("%w: empty array", ErrTensor)
	}
	for {
		if err := p.value(depth + 1); err != nil {
			return err
		}
		n++
		p.ws()
		if p.i >= len(p.b) {
			return fmt.Errorf("%w: unterminated array", ErrTensor)
		}
		if p.b[p.i] == ',' {
			p.i++
			p.ws()
			continue
		}
		if p.b[p.i] != ']' {
			return fmt.Errorf("%w: unexpected %q in array", ErrTensor, p.b[p.i])
		}
		p.i++
		break
	}
	if p.dims[depth] == 0 {
		p.dims[depth] = n
	} else if p.dims[depth] != n {
		return fmt.Errorf("%w: ragged array: %d elements where %d were expected", ErrTensor, n, p.dims[depth])
	}
	return nil
}

func (p *tparser) number() error {
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			p.i++
			continue
		}
		break
	}
	if start == p.i {
		return fmt.Errorf("%w: expected a number at offset %d", ErrTensor, start)
	}
	tok := p.b[start:p.i]
	f, err := strconv.ParseFloat(unsafe.String(&tok[0], len(tok)), 32)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return fmt.Errorf("%w: %q is not a finite number", ErrTensor, tok)
	}
	if len(p.out) >= p.limit {
		return fmt.Errorf("%w: more than %d values", ErrTensor, p.limit)
	}
	p.out = append(p.out, float32(f))
	return nil
}

// appendFloats writes rows of width w as a JSON array of arrays, each float
// in its shortest exact float32 form.
func appendFloats(buf []byte, v []float32, w int, nested bool) []byte {
	if nested {
		buf = append(buf, '[')
	}
	for i := 0; i < len(v); i += w {
		if i > 0 {
			buf = append(buf, ',')
		}
		if nested {
			buf = append(buf, '[')
		}
		for j, f := range v[i : i+w] {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = strconv.AppendFloat(buf, float64(f), 'g', -1, 32)
		}
		if nested {
			buf = append(buf, ']')
		}
	}
	if nested {
		buf = append(buf, ']')
	}
	return buf
}

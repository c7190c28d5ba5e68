package resp

import (
	"bytes"
	"fmt"
)

// Limits bound what one command may announce. A request beyond them is a
// protocol error and the connection is closed after the error reply.
type Limits struct {
	MaxBulk   int // bytes of one argument
	MaxArgs   int // arguments of one command
	MaxInline int // bytes of an inline command line, and of a length line
}

// DefaultLimits are Redis's defaults for inline requests and multibulk
// counts, and fleetkv's value size limit for a bulk.
var DefaultLimits = Limits{MaxBulk: 16 << 20, MaxArgs: 1 << 20, MaxInline: 64 << 10}

// ProtocolError is malformed input; Error gives Redis's text without the
// leading "ERR " (AppendError adds it).
type ProtocolError struct{ msg string }

func (e *ProtocolError) Error() string { return "Protocol error: " + e.msg }

var (
	errMultibulkLen = &ProtocolError{"invalid multibulk length"}
	errBulkLen      = &ProtocolError{"invalid bulk length"}
	errBigMbulk     = &ProtocolError{"too big mbulk count string"}
	errBigBulk      = &ProtocolError{"too big bulk count string"}
	errBigInline    = &ProtocolError{"too big inline request"}
	errQuotes       = &ProtocolError{"unbalanced quotes in request"}
)

// Reader parses commands. Its zero value is not usable: use NewReader.
type Reader struct {
	lim    Limits
	args   [][]byte
	inline []byte // unescaped inline arguments
}

// NewReader returns a reader that enforces lim.
func NewReader(lim Limits) *Reader { return &Reader{lim: lim} }

// Parse reads the first command in in. It returns the command's arguments
// (slices of in, or of the reader's buffer for unescaped inline arguments,
// valid until the next Parse) and the bytes it took. n == 0 with a nil error
// means the command is not complete yet. An empty command (an empty inline
// line, a "*0" or "*-1" array) gives no arguments and a positive n: skip it.
func (r *Reader) Parse(in []byte) (args [][]byte, n int, err error) {
	if len(in) == 0 {
		return nil, 0, nil
	}
	if in[0] == '*' {
		return r.multibulk(in)
	}
	return r.inlineCommand(in)
}

// multibulk parses "*<count>\r\n" then count "$<len>\r\n<bytes>\r\n".
func (r *Reader) multibulk(in []byte) ([][]byte, int, error) {
	count, pos, err := r.lengthLine(in, 0, errBigMbulk)
	if err != nil || pos == 0 {
		return nil, 0, err
	}
	if count > int64(r.lim.MaxArgs) {
		return nil, 0, errMultibulkLen
	}
	r.args = r.args[:0]
	for i := int64(0); i < count; i++ {
		if pos >= len(in) {
			return nil, 0, nil
		}
		if in[pos] != '$' {
			return nil, 0, &ProtocolError{fmt.Sprintf("expected '$', got '%c'", in[pos])}
		}
		size, next, err := r.lengthLine(in, pos, errBigBulk)
		if err != nil || next == 0 {
			return nil, 0, err
		}
		if size < 0 || size > int64(r.lim.MaxBulk) {
			return nil, 0, errBulkLen
		}
		end := next + int(size)
		if len(in) < end+2 {
			return nil, 0, nil
		}
		r.args = append(r.args, in[next:end:end])
		pos = end + 2 // Redis skips the CRLF without looking at it
	}
	if count <= 0 {
		return nil, pos, nil
	}
	return r.args, pos, nil
}

// lengthLine parses the number after the type byte at in[at] up to CRLF.
// next is 0 when the line is not complete.
func (r *Reader) lengthLine(in []byte, at int, tooBig error) (v int64, next int, err error) {
	if v, next, ok := shortLength(in, at); ok {
		return v, next, nil
	}
	return r.longLength(in, at, tooBig)
}

// longLength is lengthLine for any input.
func (r *Reader) longLength(in []byte, at int, tooBig error) (v int64, next int, err error) {
	cr := bytes.IndexByte(in[at+1:], '\r') + at + 1 // after the type byte
	if cr == at || cr+1 >= len(in) {
		if len(in)-at > r.lim.MaxInline {
			return 0, 0, tooBig
		}
		return 0, 0, nil
	}
	v, ok := ParseInt(in[at+1 : cr])
	if !ok {
		if in[at] == '*' {
			return 0, 0, errMultibulkLen
		}
		return 0, 0, errBulkLen
	}
	return v, cr + 2, nil
}

// shortLength is lengthLine's common case in one pass: up to 18 digits, no
// sign, no leading zero, then CR and one more byte. ok is false for
// anything else, which lengthLine then handles.
func shortLength(in []byte, at int) (int64, int, bool) {
	i := at + 1
	start := i
	var v int64
	for ; i < len(in) && i-start < 18; i++ {
		c := in[i]
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int64(c-'0')
	}
	n := i - start
	if n == 0 || (n > 1 && in[start] == '0') || i+1 >= len(in) || in[i] != '\r' {
		return 0, 0, false
	}
	return v, i + 2, true
}

// ParseInt parses a decimal int64 the way Redis's string2ll does, for
// lengths and commands' integer arguments: an optional '-', digits, no
// leading zeros, no '+', no spaces.
func ParseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	if len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if u > (1<<64-1-d)/10 {
			return 0, false
		}
		u = u*10 + d
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// inlineCommand parses one line of space-separated arguments, with Redis's
// quoting rules.
func (r *Reader) inlineCommand(in []byte) ([][]byte, int, error) {
	nl := bytes.IndexByte(in, '\n')
	if nl < 0 {
		if len(in) > r.lim.MaxInline {
			return nil, 0, errBigInline
		}
		return nil, 0, nil
	}
	if nl > r.lim.MaxInline {
		return nil, 0, errBigInline
	}
	line := in[:nl]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if err := r.splitArgs(line); err != nil {
		return nil, 0, err
	}
	if len(r.args) == 0 {
		return nil, nl + 1, nil
	}
	if len(r.args) > r.lim.MaxArgs {
		return nil, 0, errMultibulkLen
	}
	return r.args, nl + 1, nil
}

// splitArgs splits line as Redis's sdssplitargs does: arguments separated
// by spaces; "double quotes" with \n \r \t \b \a \\ \" and \xHH escapes;
// 'single quotes' with \' ; a closing quote must be followed by a space or
// the end of the line.
func (r *Reader) splitArgs(line []byte) error {
	r.args = r.args[:0]
	r.inline = r.inline[:0]
	if cap(r.inline) < len(line) {
		r.inline = make([]byte, 0, len(line)) // unescaped text is never longer
	}
	for i := 0; ; {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i >= len(line) {
			return nil
		}
		start := len(r.inline)
		next, err := r.scanArg(line, i)
		if err != nil {
			return err
		}
		r.args = append(r.args, r.inline[start:len(r.inline):len(r.inline)])
		i = next
	}
}

// scanArg unescapes the argument starting at line[i] onto r.inline and
// returns the index after it.
func (r *Reader) scanArg(line []byte, i int) (int, error) {
	inDouble, inSingle := false, false
	for ; i < len(line); i++ {
		c := line[i]
		switch {
		case inDouble:
			switch {
			case c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]):
				r.inline = append(r.inline, unhex(line[i+2])<<4|unhex(line[i+3]))
				i += 3
			case c == '\\' && i+1 < len(line):
				i++
				r.inline = append(r.inline, unescape(line[i]))
			case c == '"':
				if i+1 < len(line) && !isSpace(line[i+1]) {
					return 0, errQuotes
				}
				return i + 1, nil
			default:
				r.inline = append(r.inline, c)
			}
		case inSingle:
			switch {
			case c == '\\' && i+1 < len(line) && line[i+1] == '\'':
				i++
				r.inline = append(r.inline, '\'')
			case c == '\'':
				if i+1 < len(line) && !isSpace(line[i+1]) {
					return 0, errQuotes
				}
				return i + 1, nil
			default:
				r.inline = append(r.inline, c)
			}
		case isSpace(c):
			return i, nil
		case c == '"':
			inDouble = true
		case c == '\'':
			inSingle = true
		default:
			r.inline = append(r.inline, c)
		}
	}
	if inDouble || inSingle {
		return 0, errQuotes
	}
	return i, nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'b':
		return '\b'
	case 'a':
		return '\a'
	}
	return c
}

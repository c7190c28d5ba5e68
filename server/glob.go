package server

// globMatch reports whether s matches the glob pattern p by Redis's rules
// (stringmatchlen, as KEYS, SCAN MATCH and CONFIG GET use them; CONFIG GET
// lower-cases the pattern for Redis's case-insensitive match): * is any
// run of bytes, ? any one byte, [abc], [^abc] and [a-z] classes (a
// reversed range counts as the same range; an unclosed class ends at the
// pattern's end), and \ quotes the next byte, also inside a class.
func globMatch(p, s []byte) bool {
	skipLonger := false
	return globFrom(p, s, &skipLonger, 0)
}

// globMaxNesting bounds the recursion on stars, as Redis does: a pattern
// nested deeper matches nothing.
const globMaxNesting = 1000

// globFrom matches s against p. skipLonger is set once a star failed to
// match the rest of s at every length: a star before it cannot match
// either, so the callers stop trying longer runs (Redis's pruning, which
// keeps patterns of many stars from taking exponential time).
func globFrom(p, s []byte, skipLonger *bool, nesting int) bool {
	if nesting > globMaxNesting {
		return false
	}
	for len(p) > 0 && len(s) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 1 && p[1] == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			for len(s) > 0 {
				if globFrom(p[1:], s, skipLonger, nesting+1) {
					return true
				}
				if *skipLonger {
					return false
				}
				s = s[1:]
			}
			*skipLonger = true
			return false
		case '?':
			s = s[1:]
		case '[':
			var ok bool
			if p, ok = globClass(p[1:], s[0]); !ok {
				return false
			}
			s = s[1:]
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			fallthrough
		default:
			if p[0] != s[0] {
				return false
			}
			s = s[1:]
		}
		p = p[1:]
		if len(s) == 0 {
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			break
		}
	}
	return len(p) == 0 && len(s) == 0
}

// globClass matches c against the class that p starts (after its '['),
// and returns the pattern from the class's last byte on (its ']', or the
// pattern's last byte when unclosed).
func globClass(p []byte, c byte) ([]byte, bool) {
	not := len(p) > 0 && p[0] == '^'
	if not {
		p = p[1:]
	}
	match := false
	for {
		switch {
		case len(p) >= 2 && p[0] == '\\':
			p = p[1:]
			if p[0] == c {
				match = true
			}
		case len(p) == 0:
			// Unclosed: Redis steps back onto the byte before, which the
			// caller then steps over.
			return []byte{0}, match != not
		case p[0] == ']':
			return p, match != not
		case len(p) >= 3 && p[1] == '-':
			lo, hi := p[0], p[2]
			if lo > hi {
				lo, hi = hi, lo
			}
			p = p[2:]
			if c >= lo && c <= hi {
				match = true
			}
		case p[0] == c:
			match = true
		}
		p = p[1:]
	}
}

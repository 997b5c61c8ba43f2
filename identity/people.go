package identity

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/gatehouse-filter/gatehouse/internal/username"
)

// People is a Directory read from a CSV file: "user,display name,year,class"
// per line (an export from the school's MIS or directory; a first line
// starting "user" is a header; year and class may be empty). Poll
// re-reads it when it changes. A file with bad lines is still read: the
// bad lines are reported with file:line and skipped.
type People struct {
	Path string

	mu   sync.RWMutex
	m    map[string]Person
	sum  [32]byte
	read bool
	held [32]byte // contents with under half the people, not taken yet (heldBack)
}

// maxPeopleFile bounds the people file (about 200,000 pupils and staff).
const maxPeopleFile = 16 << 20

// Person implements Directory. User names are compared without case.
func (p *People) Person(user string) (Person, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	v, ok := p.m[username.Canon(user)]
	return v, ok
}

// Poll re-reads the file if its contents changed; changed reports whether
// they did (the table's entries then need merging again: Table.Remerge).
func (p *People) Poll() (changed bool, problems []error) {
	f, err := os.Open(p.Path)
	if err != nil {
		return false, []error{err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPeopleFile+1))
	if err != nil {
		return false, []error{fmt.Errorf("%s: %w", p.Path, err)}
	}
	if len(data) > maxPeopleFile {
		return false, []error{fmt.Errorf("%s: larger than %d bytes", p.Path, maxPeopleFile)}
	}
	sum := sha256.Sum256(data)
	p.mu.RLock()
	same := p.read && sum == p.sum
	p.mu.RUnlock()
	if same {
		return false, nil
	}
	m, problems := ParsePeople(p.Path, data)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.read && heldBack(len(m), len(p.m), sum, &p.held) {
		return false, append(problems, fmt.Errorf("%s: %d people, previously %d: the people read before are kept until the file reads the same again (it may be being written)",
			p.Path, len(m), len(p.m)))
	}
	p.m, p.sum, p.read = m, sum, true
	return true, problems
}

// heldBack reports whether contents (sum) that hold n entries, where the
// last taken held prev, are to wait: a file re-read with under half its
// entries was most likely caught while being rewritten in place (an MIS
// export, dnsmasq's lease file), and taking it would forget people or
// devices until the next read. Such contents are taken once they read the
// same twice in a row (the file has stopped changing); held remembers them.
func heldBack(n, prev int, sum [32]byte, held *[32]byte) bool {
	if n*2 >= prev || sum == *held {
		*held = [32]byte{}
		return false
	}
	*held = sum
	return true
}

// ParsePeople reads a people CSV file's contents (see People).
func ParsePeople(file string, data []byte) (map[string]Person, []error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	m := map[string]Person{}
	var problems []error
	for first := true; ; first = false {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line := 0
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.Line
			}
			problems = append(problems, fmt.Errorf("%s:%d: %v", file, line, errors.Unwrap(err)))
			if pe == nil || len(problems) > maxLeaseErrors {
				break
			}
			continue
		}
		if len(rec) > 0 {
			line, _ = r.FieldPos(0) // (FieldPos panics without a record)
		}
		if first && len(rec) > 0 && strings.EqualFold(strings.TrimSpace(rec[0]), "user") {
			continue
		}
		if len(rec) < 2 || strings.TrimSpace(rec[0]) == "" || strings.TrimSpace(rec[1]) == "" {
			if len(problems) < maxLeaseErrors {
				problems = append(problems, fmt.Errorf("%s:%d: want user,display name,year,class", file, line))
			}
			continue
		}
		p := Person{Display: cleanHost(rec[1])}
		if len(rec) > 2 {
			p.Year = cleanHost(rec[2])
		}
		if len(rec) > 3 {
			p.Class = cleanHost(rec[3])
		}
		m[username.Canon(rec[0])] = p
	}
	return m, problems
}

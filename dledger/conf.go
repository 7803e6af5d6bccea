// Package dledger holds the broker configuration of txorder's RocketMQ
// DLedger group (three nodes, n0/n1/n2, one broker name), and checks such a
// group for the mistakes that make a DLedger group silently lose its
// guarantees: nodes that do not form one group, ports that collide, a store
// outside the persistent volume, a configuration file the broker never
// reads, transaction check settings that do not fit the payment window.
//
// The shipped files (broker-n0.conf … broker-n2.conf) live next to this
// code; docker-compose.yml mounts them into the brokers and Shipped returns
// them parsed.
package dledger

import (
	"bufio"
	"bytes"
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

//go:embed broker-n0.conf broker-n1.conf broker-n2.conf
var shipped embed.FS

// ShippedFiles names the shipped configuration files, in node order.
var ShippedFiles = []string{"broker-n0.conf", "broker-n1.conf", "broker-n2.conf"}

// Shipped returns the group's configuration files as shipped in this
// directory, parsed, in node order.
func Shipped() ([]Conf, error) {
	out := make([]Conf, 0, len(ShippedFiles))
	for _, name := range ShippedFiles {
		b, err := shipped.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read shipped %s: %w", name, err)
		}
		c, err := Parse(name, b)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Entry is one key=value pair of a configuration file.
type Entry struct {
	Key   string
	Value string
	// Line is the 1-based line the entry starts on.
	Line int
}

// Conf is one broker configuration file in Java properties format, the
// format the broker reads with java.util.Properties. Entries keep the file
// order, duplicates included (the broker uses the last one).
type Conf struct {
	// File names the file in problems (its base name when parsed from
	// disk).
	File    string
	Entries []Entry
}

// ParseFile reads and parses the configuration file at path.
func ParseFile(path string) (Conf, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Conf{}, fmt.Errorf("read broker conf: %w", err)
	}
	return Parse(filepath.Base(path), b)
}

// Parse parses data as java.util.Properties does: '#' and '!' start
// comments, the key ends at the first unescaped '=', ':' or white space,
// white space around the separator is dropped, a line ending in an odd
// number of backslashes continues on the next line, and \t \n \r \f \uXXXX
// escapes are decoded. Trailing white space is part of the value, as in
// Java. The error names the file and the line.
func Parse(file string, data []byte) (Conf, error) {
	c := Conf{File: file}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	sc.Split(scanPropertyLines)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		start := lineNo
		line := strings.TrimLeft(sc.Text(), " \t\f")
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		for continues(line) {
			line = line[:len(line)-1]
			if !sc.Scan() {
				break
			}
			lineNo++
			line += strings.TrimLeft(sc.Text(), " \t\f")
		}
		key, value, err := splitProperty(line)
		if err != nil {
			return Conf{}, fmt.Errorf("%s:%d: %w", file, start, err)
		}
		c.Entries = append(c.Entries, Entry{Key: key, Value: value, Line: start})
	}
	if err := sc.Err(); err != nil {
		return Conf{}, fmt.Errorf("%s: %w", file, err)
	}
	return c, nil
}

// scanPropertyLines splits at \n, \r\n and a lone \r, as Java does.
func scanPropertyLines(data []byte, atEOF bool) (int, []byte, error) {
	for i, b := range data {
		switch b {
		case '\n':
			return i + 1, data[:i], nil
		case '\r':
			if i+1 < len(data) {
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
				return i + 1, data[:i], nil
			}
			if atEOF {
				return i + 1, data[:i], nil
			}
			return 0, nil, nil // need one more byte to tell \r\n from \r
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// continues reports whether line ends in an odd number of backslashes.
func continues(line string) bool {
	n := 0
	for i := len(line) - 1; i >= 0 && line[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

func splitProperty(line string) (key, value string, err error) {
	i := 0
	for i < len(line) {
		ch := line[i]
		if ch == '\\' {
			i += 2
			continue
		}
		if ch == '=' || ch == ':' || ch == ' ' || ch == '\t' || ch == '\f' {
			break
		}
		i++
	}
	rawKey := line[:min(i, len(line))]
	rest := line[min(i, len(line)):]
	rest = strings.TrimLeft(rest, " \t\f")
	if rest != "" && (rest[0] == '=' || rest[0] == ':') {
		rest = strings.TrimLeft(rest[1:], " \t\f")
	}
	if key, err = unescape(rawKey); err != nil {
		return "", "", err
	}
	if value, err = unescape(rest); err != nil {
		return "", "", fmt.Errorf("%s: %w", key, err)
	}
	return key, value, nil
}

func unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 'f':
			b.WriteByte('\f')
		case 'u':
			if i+5 > len(s) {
				return "", fmt.Errorf("malformed \\u escape")
			}
			var r rune
			for _, h := range s[i+1 : i+5] {
				r <<= 4
				switch {
				case h >= '0' && h <= '9':
					r |= h - '0'
				case h >= 'a' && h <= 'f':
					r |= h - 'a' + 10
				case h >= 'A' && h <= 'F':
					r |= h - 'A' + 10
				default:
					return "", fmt.Errorf("malformed \\u escape")
				}
			}
			b.WriteRune(r)
			i += 4
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), nil
}

// Get returns the value the broker uses for key: the last entry with it.
func (c Conf) Get(key string) (string, bool) {
	e, ok := c.entry(key)
	return e.Value, ok
}

func (c Conf) entry(key string) (Entry, bool) {
	for i := len(c.Entries) - 1; i >= 0; i-- {
		if c.Entries[i].Key == key {
			return c.Entries[i], true
		}
	}
	return Entry{}, false
}

// line returns the line of key's effective entry, 0 when it is absent.
func (c Conf) line(key string) int {
	e, _ := c.entry(key)
	return e.Line
}

// Set returns a copy of c with key set to value: the last entry with key
// is changed, or a new entry is appended.
func (c Conf) Set(key, value string) Conf {
	out := Conf{File: c.File, Entries: slices.Clone(c.Entries)}
	for i := len(out.Entries) - 1; i >= 0; i-- {
		if out.Entries[i].Key == key {
			out.Entries[i].Value = value
			return out
		}
	}
	line := 1
	if n := len(out.Entries); n > 0 {
		line = out.Entries[n-1].Line + 1
	}
	out.Entries = append(out.Entries, Entry{Key: key, Value: value, Line: line})
	return out
}

// Delete returns a copy of c without any entry for key.
func (c Conf) Delete(key string) Conf {
	out := Conf{File: c.File}
	for _, e := range c.Entries {
		if e.Key != key {
			out.Entries = append(out.Entries, e)
		}
	}
	return out
}

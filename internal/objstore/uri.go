// Package objstore reads and writes objects named by URI: s3://bucket/key on
// any S3-compatible service (minio-go), and file:///abs/path for local use
// and tests. Missing objects match fs.ErrNotExist; transient S3/network
// failures carry exit code 3.
package objstore

import (
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/gantry-ml/gantry/internal/exitcode"
)

// URI is a parsed object URI. For file URIs Bucket is empty and Key is the
// absolute path.
type URI struct {
	Scheme string // "s3" or "file"
	Bucket string
	Key    string
}

// Parse parses an s3:// or file:// URI. Errors are bad input.
func Parse(s string) (URI, error) {
	u, err := url.Parse(s)
	if err != nil {
		return URI{}, exitcode.Invalidf("parsing URI %q: %v", s, err)
	}
	switch u.Scheme {
	case "s3":
		if u.Host == "" {
			return URI{}, exitcode.Invalidf("URI %q has no bucket", s)
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return URI{}, exitcode.Invalidf("URI %q: s3 URIs take no user, query or fragment", s)
		}
		key := strings.TrimPrefix(u.Path, "/")
		if strings.Contains("/"+key+"/", "/../") || strings.Contains("/"+key+"/", "/./") {
			return URI{}, exitcode.Invalidf("URI %q has a . or .. path element", s)
		}
		return URI{Scheme: "s3", Bucket: u.Host, Key: key}, nil
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return URI{}, exitcode.Invalidf("URI %q: file URIs must be file:///absolute/path", s)
		}
		if !strings.HasPrefix(u.Path, "/") {
			return URI{}, exitcode.Invalidf("URI %q: file path must be absolute", s)
		}
		p := path.Clean(u.Path)
		if strings.HasSuffix(u.Path, "/") && p != "/" {
			p += "/"
		}
		return URI{Scheme: "file", Key: p}, nil
	case "":
		return URI{}, exitcode.Invalidf("URI %q has no scheme (want s3:// or file://)", s)
	default:
		return URI{}, exitcode.Invalidf("URI %q: unsupported scheme %q (want s3 or file)", s, u.Scheme)
	}
}

// String renders the URI.
func (u URI) String() string {
	if u.Scheme == "file" {
		return "file://" + u.Key
	}
	return fmt.Sprintf("s3://%s/%s", u.Bucket, u.Key)
}

// Dir returns u as a prefix: with a trailing slash.
func (u URI) Dir() URI {
	if u.Key != "" && !strings.HasSuffix(u.Key, "/") {
		u.Key += "/"
	}
	return u
}

// Join appends path elements to the URI's key.
func (u URI) Join(elem ...string) URI {
	base := u.Dir().Key
	u.Key = base + strings.TrimPrefix(path.Join(elem...), "/")
	return u
}

// Base is the last element of the key.
func (u URI) Base() string { return path.Base(strings.TrimSuffix(u.Key, "/")) }

// Join parses base and joins elem to it; a convenience for callers holding strings.
func Join(base string, elem ...string) (string, error) {
	u, err := Parse(base)
	if err != nil {
		return "", err
	}
	return u.Join(elem...).String(), nil
}

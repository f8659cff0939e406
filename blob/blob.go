// Package blob defines the object storage used for attachments and archives.
// Backends live in subpackages (fs, s3); the conformance suite in blobtest
// pins down the behaviour every backend must share.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrNotFound is returned (possibly wrapped) when a key does not exist.
var ErrNotFound = errors.New("blob: not found")

// Info describes a stored object.
type Info struct {
	Key         string
	Size        int64
	ContentType string
	ModTime     time.Time
}

// Store is an object store addressed by slash-separated keys.
type Store interface {
	// Put stores r under key, replacing any previous object. size is -1
	// when unknown, in which case the backend streams r to the end.
	Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error
	// Get opens the whole object; the caller closes the reader.
	Get(ctx context.Context, key string) (io.ReadCloser, Info, error)
	// GetRange opens length bytes from offset; length -1 reads to the end.
	GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, Info, error)
	// Stat describes the object without reading it.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes the object; ErrNotFound when absent.
	Delete(ctx context.Context, key string) error
	// List calls fn for every key starting with prefix, in lexical (byte)
	// order, stopping at the first error fn returns, which it returns.
	// Info.ContentType may be empty here (S3 listings lack it); Stat has it.
	List(ctx context.Context, prefix string, fn func(Info) error) error
}

// Presigner is implemented by backends that can hand out URLs (S3), so
// clients transfer bytes directly instead of through chatd.
type Presigner interface {
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
	PresignPut(ctx context.Context, key string, ttl time.Duration, contentType string) (string, error)
}

// ValidKey reports whether key is acceptable to every backend: non-empty,
// relative, slash-separated, without empty, "." or ".." segments, so a key
// can never escape a filesystem root or alias another key.
func ValidKey(key string) error {
	if key == "" {
		return errors.New("blob: empty key")
	}
	if len(key) > 1024 {
		return errors.New("blob: key longer than 1024 bytes")
	}
	start := 0
	for i := 0; i <= len(key); i++ {
		if i < len(key) {
			c := key[i]
			if c == 0 || c == '\\' {
				return errors.New("blob: key contains NUL or backslash")
			}
			if c != '/' {
				continue
			}
		}
		seg := key[start:i]
		switch seg {
		case "":
			return errors.New("blob: key has an empty segment or a leading/trailing slash")
		case ".", "..":
			return errors.New("blob: key has a . or .. segment")
		}
		start = i + 1
	}
	return nil
}

// ErrInvalidRange is returned (wrapped) by GetRange for a negative offset
// or one past the end of the object.
var ErrInvalidRange = errors.New("blob: invalid range")

// ClampRange checks a GetRange request against an object of size bytes and
// returns how many bytes it reads: length -1 or past the end reads to the
// end, and an offset equal to size reads nothing, so every backend answers
// the same where S3 itself would refuse an empty range.
func ClampRange(size, offset, length int64) (int64, error) {
	if offset < 0 || offset > size || length < -1 {
		return 0, fmt.Errorf("offset %d length %d of %d bytes: %w", offset, length, size, ErrInvalidRange)
	}
	if length == -1 || length > size-offset {
		return size - offset, nil
	}
	return length, nil
}

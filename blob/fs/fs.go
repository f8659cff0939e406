// Package fs stores blobs as files in a local directory. Objects live under
// root/data/{key}, their content types under root/meta/{key}, and writes are
// staged in root/tmp so that a key only ever names a complete object.
package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/mqchat/mqchat/blob"
)

const defaultContentType = "application/octet-stream"

// Store is a blob.Store on a local directory. It is safe for concurrent use;
// it belongs to one process (a cluster needs a shared backend such as S3).
type Store struct {
	data, meta, tmp string
}

var _ blob.Store = (*Store)(nil)

// Open prepares root (creating it if needed) and removes temporary files a
// crash left behind.
func Open(root string) (*Store, error) {
	s := &Store{
		data: filepath.Join(root, "data"),
		meta: filepath.Join(root, "meta"),
		tmp:  filepath.Join(root, "tmp"),
	}
	for _, d := range []string{s.data, s.meta, s.tmp} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("blob/fs: %w", err)
		}
	}
	// Nothing else writes into tmp, so whatever is there was cut short.
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		return nil, fmt.Errorf("blob/fs: %w", err)
	}
	for _, e := range ents {
		if err := os.Remove(filepath.Join(s.tmp, e.Name())); err != nil {
			return nil, fmt.Errorf("blob/fs: removing stale temp file: %w", err)
		}
	}
	return s, nil
}

func (s *Store) dataPath(key string) string { return filepath.Join(s.data, filepath.FromSlash(key)) }
func (s *Store) metaPath(key string) string { return filepath.Join(s.meta, filepath.FromSlash(key)) }

// Put writes r to a temp file, syncs it, and renames it over the key, so a
// concurrent reader sees the old object or the new one and a crash leaves
// no torn object.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	if err := blob.ValidKey(key); err != nil {
		return err
	}
	if contentType == "" {
		contentType = defaultContentType
	}
	tmp, err := s.writeTemp(ctx, r, size)
	if err != nil {
		return fmt.Errorf("blob/fs: put %s: %w", key, err)
	}
	defer os.Remove(tmp) // a no-op once renamed
	metaTmp, err := s.writeTemp(ctx, strings.NewReader(contentType), int64(len(contentType)))
	if err != nil {
		return fmt.Errorf("blob/fs: put %s: %w", key, err)
	}
	defer os.Remove(metaTmp)
	// The content type lands first: a crash between the two renames leaves
	// the new type with the old bytes at worst, never bytes without a type.
	if err := s.install(metaTmp, s.metaPath(key)); err != nil {
		return fmt.Errorf("blob/fs: put %s: %w", key, err)
	}
	if err := s.install(tmp, s.dataPath(key)); err != nil {
		return fmt.Errorf("blob/fs: put %s: %w", key, err)
	}
	return nil
}

// writeTemp copies r (exactly size bytes unless size is -1) into a synced
// temp file and returns its path.
func (s *Store) writeTemp(ctx context.Context, r io.Reader, size int64) (path string, err error) {
	f, err := os.CreateTemp(s.tmp, "put-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	src := &ctxReader{ctx: ctx, r: r}
	if size >= 0 {
		n, err := io.CopyN(f, src, size)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "", fmt.Errorf("body has %d bytes, declared %d: %w", n, size, io.ErrUnexpectedEOF)
			}
			return "", err
		}
	} else if _, err := io.Copy(f, src); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// install renames tmp to dst and syncs dst's directory so the rename itself
// survives a crash. A concurrent Delete may remove an emptied parent between
// MkdirAll and Rename, hence the retries.
func (s *Store) install(tmp, dst string) error {
	dir := filepath.Dir(dst)
	var err error
	for range 5 {
		if err = os.MkdirAll(dir, 0o750); err != nil {
			if errors.Is(err, syscall.ENOTDIR) {
				return fmt.Errorf("a key is a prefix of this one: %w", err)
			}
			continue
		}
		if err = os.Rename(tmp, dst); err == nil {
			return syncDir(dir)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, blob.Info, error) {
	return s.GetRange(ctx, key, 0, -1)
}

// GetRange reads through os.File.ReadAt, so any number of ranges of one
// object can be read concurrently without sharing a file offset.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, blob.Info, error) {
	if err := blob.ValidKey(key); err != nil {
		return nil, blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, blob.Info{}, err
	}
	f, err := os.Open(s.dataPath(key))
	if err != nil {
		return nil, blob.Info{}, s.mapErr("get", key, err)
	}
	info, err := s.statFile(key, f)
	if err != nil {
		f.Close()
		return nil, blob.Info{}, err
	}
	n, err := blob.ClampRange(info.Size, offset, length)
	if err != nil {
		f.Close()
		return nil, blob.Info{}, fmt.Errorf("blob/fs: get %s: %w", key, err)
	}
	return &sectionFile{SectionReader: io.NewSectionReader(f, offset, n), f: f}, info, nil
}

func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := blob.ValidKey(key); err != nil {
		return blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, err
	}
	f, err := os.Open(s.dataPath(key))
	if err != nil {
		return blob.Info{}, s.mapErr("stat", key, err)
	}
	defer f.Close()
	return s.statFile(key, f)
}

func (s *Store) statFile(key string, f *os.File) (blob.Info, error) {
	fi, err := f.Stat()
	if err != nil {
		return blob.Info{}, fmt.Errorf("blob/fs: stat %s: %w", key, err)
	}
	if fi.IsDir() {
		return blob.Info{}, fmt.Errorf("blob/fs: %s: %w", key, blob.ErrNotFound)
	}
	return blob.Info{Key: key, Size: fi.Size(), ContentType: s.contentType(key), ModTime: fi.ModTime()}, nil
}

func (s *Store) contentType(key string) string {
	b, err := os.ReadFile(s.metaPath(key))
	if err != nil || len(b) == 0 {
		return defaultContentType
	}
	return string(bytes.TrimSpace(b))
}

// Delete removes the object, then its content type, then the directories
// left empty, so that List never walks dead branches.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blob.ValidKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := s.dataPath(key)
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return fmt.Errorf("blob/fs: delete %s: %w", key, blob.ErrNotFound)
	}
	if err := os.Remove(p); err != nil {
		return s.mapErr("delete", key, err)
	}
	// A concurrent Delete may already have pruned the emptied directory;
	// then there is nothing left to sync.
	if err := syncDir(filepath.Dir(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob/fs: delete %s: %w", key, err)
	}
	if err := os.Remove(s.metaPath(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob/fs: delete %s: %w", key, err)
	}
	s.pruneDirs(s.data, filepath.Dir(p))
	s.pruneDirs(s.meta, filepath.Dir(s.metaPath(key)))
	return nil
}

// pruneDirs removes dir and its parents up to (not including) root while
// they are empty; os.Remove refuses a non-empty directory, which ends it.
func (s *Store) pruneDirs(root, dir string) {
	for dir != root && strings.HasPrefix(dir, root+string(filepath.Separator)) {
		if os.Remove(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}

// List walks the tree in key order: a directory "a" holds only keys
// starting "a/", so sorting each directory's entries with "/" appended to
// directory names yields the global lexical order without collecting keys.
func (s *Store) List(ctx context.Context, prefix string, fn func(blob.Info) error) error {
	return s.walk(ctx, s.data, "", prefix, fn)
}

func (s *Store) walk(ctx context.Context, dir, rel, prefix string, fn func(blob.Info) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) { // pruned by a concurrent Delete
			return nil
		}
		return fmt.Errorf("blob/fs: list: %w", err)
	}
	name := func(e fs.DirEntry) string {
		if e.IsDir() {
			return e.Name() + "/"
		}
		return e.Name()
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(name(a), name(b)) })
	for _, e := range ents {
		key := rel + name(e)
		if e.IsDir() {
			if strings.HasPrefix(key, prefix) || strings.HasPrefix(prefix, key) {
				if err := s.walk(ctx, filepath.Join(dir, e.Name()), key, prefix, fn); err != nil {
					return err
				}
			}
			continue
		}
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("blob/fs: list: %w", err)
		}
		info := blob.Info{Key: key, Size: fi.Size(), ContentType: s.contentType(key), ModTime: fi.ModTime()}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) mapErr(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("blob/fs: %s %s: %w", op, key, blob.ErrNotFound)
	}
	return fmt.Errorf("blob/fs: %s %s: %w", op, key, err)
}

// sectionFile closes the file under a SectionReader. It also exposes Seek,
// so callers can hand it to http.ServeContent.
type sectionFile struct {
	*io.SectionReader
	f *os.File
}

func (s *sectionFile) Close() error { return s.f.Close() }

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

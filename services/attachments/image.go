package attachments

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"

	// Registered with package image: the formats dimensions and thumbnails
	// are read from.
	_ "image/gif"
	_ "image/png"

	"golang.org/x/image/draw"

	"github.com/mqchat/mqchat/store"
)

const (
	// ThumbnailSide bounds a thumbnail's longer side.
	ThumbnailSide = 320
	// maxPixels bounds the images decoded for a thumbnail: a small file
	// can declare a huge canvas, and decoding allocates all of it.
	maxPixels = 50_000_000
)

func isImage(contentType string) bool {
	switch contentType {
	case "image/png", "image/jpeg", "image/gif":
		return true
	}
	return false
}

// describeImage reads back the stored image for its dimensions and, when
// it decodes, stores a JPEG thumbnail: re-encoding from pixels keeps none
// of the original's metadata (EXIF location and the like). A file that
// sniffs as an image but does not decode stays a plain file.
func (s *Service) describeImage(ctx context.Context, a *store.Attachment) error {
	rc, _, err := s.blobs.Get(ctx, Key(a.ID, false))
	if err != nil {
		return fmt.Errorf("attachments: read back %s: %w", a.ID, err)
	}
	cfg, _, cerr := image.DecodeConfig(rc)
	rc.Close()
	if cerr != nil || cfg.Width <= 0 || cfg.Height <= 0 {
		return nil
	}
	a.Width, a.Height = cfg.Width, cfg.Height
	if int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return nil
	}
	rc, _, err = s.blobs.Get(ctx, Key(a.ID, false))
	if err != nil {
		return fmt.Errorf("attachments: read back %s: %w", a.ID, err)
	}
	img, _, derr := image.Decode(rc)
	rc.Close()
	if derr != nil {
		s.opts.Logger.Debug("attachments: image does not decode", "id", a.ID, "error", derr)
		return nil
	}
	thumb, w, h, err := thumbnail(img)
	if err != nil {
		return fmt.Errorf("attachments: thumbnail of %s: %w", a.ID, err)
	}
	if err := s.blobs.Put(ctx, Key(a.ID, true), bytes.NewReader(thumb), int64(len(thumb)), "image/jpeg"); err != nil {
		return fmt.Errorf("attachments: store thumbnail of %s: %w", a.ID, err)
	}
	a.ThumbWidth, a.ThumbHeight = w, h
	return nil
}

// thumbnail scales img to fit ThumbnailSide (never up) and encodes it as
// JPEG.
func thumbnail(img image.Image) ([]byte, int, int, error) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if long := max(w, h); long > ThumbnailSide {
		w, h = max(1, w*ThumbnailSide/long), max(1, h*ThumbnailSide/long)
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	// JPEG has no alpha: transparent areas become white, not black.
	draw.Draw(dst, dst.Bounds(), image.White, image.Point{}, draw.Src)
	draw.CatmullRom.Scale(dst, dst.Bounds(), img, b, draw.Over, nil)
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, dst, &jpeg.Options{Quality: 80}); err != nil {
		return nil, 0, 0, err
	}
	return buf.Bytes(), w, h, nil
}

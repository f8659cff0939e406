package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqchat/mqchat/services/chat"
)

// attachOptions shape the attachments scenario.
type attachOptions struct {
	Uploaders int     // uploader→downloader pairs working at once
	Uploads   int     // files per uploader
	Sizes     []int64 // file sizes, taken in turn
	PNGEvery  int     // every n-th upload is a PNG, so a thumbnail is made (0 = none)
}

// parseSizes reads a comma-separated list of sizes such as 256KiB,4MiB.
func parseSizes(s string) ([]int64, error) {
	var out []int64
	for _, f := range splitList(s) {
		n, err := parseSize(f)
		if err != nil {
			return nil, err
		}
		if n < 1 || n > 25<<20 {
			return nil, fmt.Errorf("size %q must be 1 byte to 25MiB (the server's default limit)", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no sizes in %q", s)
	}
	return out, nil
}

func (a attachOptions) validate() error {
	switch {
	case a.Uploaders < 1 || a.Uploaders > 256:
		return fmt.Errorf("--uploaders must be 1-256")
	case a.Uploads < 1 || a.Uploads > 10000:
		return fmt.Errorf("--uploads must be 1-10000")
	case a.PNGEvery < 0:
		return fmt.Errorf("--png-every must not be negative")
	}
	return nil
}

// transferPhase is one direction of the scenario.
type transferPhase struct {
	Requests   int64   `json:"requests"`
	Errors     int64   `json:"errors"`
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	MiBPerSec  float64 `json:"mib_per_sec"`
	Latency    stats   `json:"latency"` // per request
	CPUSec     float64 `json:"server_cpu_sec"`
	CPUPerMiB  float64 `json:"server_cpu_sec_per_mib"`
	Thumbnails int64   `json:"thumbnails,omitempty"` // uploads answered with a thumbnail
}

type attachReport struct {
	Upload   transferPhase `json:"upload"`
	Download transferPhase `json:"download"`
}

func (a *attachReport) print(w io.Writer) {
	for _, p := range []struct {
		name string
		ph   transferPhase
	}{{"upload", a.Upload}, {"download", a.Download}} {
		fmt.Fprintf(w, "  %-9s %d requests, %d errors, %.1f MiB in %.2fs: %.1f MiB/s; server CPU %.2fs, %.3fs per MiB\n",
			p.name, p.ph.Requests, p.ph.Errors, float64(p.ph.Bytes)/(1<<20), p.ph.Seconds, p.ph.MiBPerSec, p.ph.CPUSec, p.ph.CPUPerMiB)
		fmt.Fprintf(w, "  %-9s %v\n", "", p.ph.Latency)
	}
	if a.Upload.Thumbnails > 0 {
		fmt.Fprintf(w, "  thumbnails %d made\n", a.Upload.Thumbnails)
	}
}

// attachmentsScenario: each uploader uploads its files and sends each in
// its 1:1 chat with its downloader (the send makes the downloader allowed
// to read it); then every downloader reads its peer's files. Server CPU is
// read from /metrics around each phase.
func attachmentsScenario(ctx context.Context, o options, log *slog.Logger) (report, error) {
	ao := o.Attach
	api := newREST(o.HTTP)
	api.http.Timeout = 2 * time.Minute // a 25 MiB body on a busy machine
	log.Info("registering users", "count", 2*ao.Uploaders)
	users, err := api.registerMany(ctx, o.Prefix, 2*ao.Uploaders)
	if err != nil {
		return report{}, err
	}
	// Files are made before the clock starts: generating them is the load
	// generator's work, not the server's.
	files := make([][]byte, ao.Uploads)
	for i := range files {
		files[i] = benchFile(ao.Sizes[i%len(ao.Sizes)], ao.PNGEvery > 0 && i%ao.PNGEvery == 0, uint64(i))
	}
	ids := make([][]string, ao.Uploaders)
	var res attachReport
	var up, down recorder
	var thumbs atomic.Int64

	log.Info("uploading", "uploaders", ao.Uploaders, "files_each", ao.Uploads, "sizes", o.params()["sizes"])
	res.Upload, err = measurePhase(ctx, o.HTTP, &up, func(errs, moved *atomic.Int64) {
		var wg sync.WaitGroup
		for u := range ao.Uploaders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sender, peer := users[u], users[ao.Uploaders+u]
				for i, f := range files {
					if ctx.Err() != nil {
						return
					}
					t0 := time.Now()
					v, err := api.upload(ctx, sender.Token, f)
					if err == nil && v.Size != int64(len(f)) {
						err = fmt.Errorf("stored %d bytes of %d", v.Size, len(f))
					}
					if err != nil {
						if errs.Add(1) <= 3 {
							log.Warn("upload failed", "error", err)
						}
						continue
					}
					up.add(time.Since(t0))
					moved.Add(int64(len(f)))
					if v.Thumbnail != nil {
						thumbs.Add(1)
					}
					typ := "file"
					if strings.HasPrefix(v.ContentType, "image/") {
						typ = "image"
					}
					cmid := fmt.Sprintf("%s-a%d-%d", o.Prefix, u, i)
					if err := api.sendAttachment(ctx, sender.Token, chat.DirectChatID(sender.ID, peer.ID), cmid, typ, v.ID); err != nil {
						if errs.Add(1) <= 3 {
							log.Warn("send failed", "error", err)
						}
						continue
					}
					ids[u] = append(ids[u], v.ID)
				}
			}()
		}
		wg.Wait()
	})
	if err != nil {
		return report{}, err
	}
	res.Upload.Thumbnails = thumbs.Load()

	log.Info("downloading")
	res.Download, err = measurePhase(ctx, o.HTTP, &down, func(errs, moved *atomic.Int64) {
		var wg sync.WaitGroup
		for u := range ao.Uploaders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				reader := users[ao.Uploaders+u]
				for _, id := range ids[u] {
					if ctx.Err() != nil {
						return
					}
					t0 := time.Now()
					n, err := api.download(ctx, reader.Token, id)
					if err != nil {
						if errs.Add(1) <= 3 {
							log.Warn("download failed", "error", err)
						}
						continue
					}
					down.add(time.Since(t0))
					moved.Add(n)
				}
			}()
		}
		wg.Wait()
	})
	if err != nil {
		return report{}, err
	}
	r := report{
		Scenario: "attachments", Target: o.TargetName, Params: o.params(),
		Sent: res.Upload.Requests, Received: res.Download.Requests, Expected: res.Upload.Requests,
		Errors:     res.Upload.Errors + res.Download.Errors,
		ElapsedSec: res.Upload.Seconds + res.Download.Seconds,
		Latency:    res.Upload.Latency, Throughput: res.Upload.MiBPerSec,
		ServerCPUSec: res.Upload.CPUSec + res.Download.CPUSec,
		Attachments:  &res,
	}
	return r, nil
}

// measurePhase runs work and fills a phase from its counts, its latencies
// and the server's CPU over it.
func measurePhase(ctx context.Context, addr string, lat *recorder, work func(errs, moved *atomic.Int64)) (transferPhase, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	cpu := func() (float64, error) {
		m, err := scrapeMetrics(ctx, hc, "http://"+addr+"/metrics")
		if err != nil {
			return 0, err
		}
		v, ok := m.sum("process_cpu_seconds_total", nil)
		if !ok {
			return 0, fmt.Errorf("%s/metrics has no process_cpu_seconds_total", addr)
		}
		return v, nil
	}
	c0, err := cpu()
	if err != nil {
		return transferPhase{}, err
	}
	var errs, n atomic.Int64
	start := time.Now()
	work(&errs, &n)
	el := time.Since(start)
	c1, err := cpu()
	if err != nil {
		return transferPhase{}, err
	}
	p := transferPhase{Errors: errs.Load(), Bytes: n.Load(), Seconds: el.Seconds(), Latency: summarize(lat.take()), CPUSec: c1 - c0}
	p.Requests = int64(p.Latency.Count)
	mib := float64(p.Bytes) / (1 << 20)
	p.MiBPerSec = mib / el.Seconds()
	if mib > 0 {
		p.CPUPerMiB = p.CPUSec / mib
	}
	return p, nil
}

// benchFile is size bytes of random data, or a PNG of random pixels of
// about that size (noise does not compress, so the encoded size tracks the
// pixel count).
func benchFile(size int64, asPNG bool, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 11))
	if !asPNG {
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		// A leading byte no sniffer takes for text or an image.
		b[0] = 0
		return b
	}
	side := max(1, int(math.Sqrt(float64(size)/3)))
	img := image.NewNRGBA(image.Rect(0, 0, side, side))
	for y := range side {
		for x := range side {
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(rng.Uint32()), G: uint8(rng.Uint32()), B: uint8(rng.Uint32()), A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err) // encoding to memory cannot fail
	}
	return buf.Bytes()
}

type uploadView struct {
	ID          string `json:"id"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
	Thumbnail   *struct {
		ID string `json:"id"`
	} `json:"thumbnail"`
}

// upload posts f as a raw body: the server sniffs its type.
func (r *restClient) upload(ctx context.Context, token string, f []byte) (uploadView, error) {
	var v uploadView
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+"/v1/attachments", bytes.NewReader(f))
	if err != nil {
		return v, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	body, err := r.send(req, http.StatusCreated)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return v, fmt.Errorf("upload answer: %w", err)
	}
	return v, nil
}

func (r *restClient) sendAttachment(ctx context.Context, token, chatID, cmid, typ, id string) error {
	raw, err := json.Marshal(map[string]any{"type": typ, "body": map[string]string{"attachment": id}})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+"/v1/chats/"+chatID+"/messages", bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", cmid)
	_, err = r.send(req, http.StatusCreated)
	return err
}

// download reads attachment id to the end and returns its length.
func (r *restClient) download(ctx context.Context, token, id string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/v1/attachments/"+id, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := r.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, &httpError{method: req.Method, path: req.URL.Path, status: resp.StatusCode, body: b}
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return n, fmt.Errorf("download %s: %w", id, err)
	}
	if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.FormatInt(n, 10) {
		return n, fmt.Errorf("download %s: %d bytes of %s", id, n, cl)
	}
	return n, nil
}

// send does req once and returns the body of a want answer.
func (r *restClient) send(req *http.Request, want int) ([]byte, error) {
	resp, err := r.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, &httpError{method: req.Method, path: req.URL.Path, status: resp.StatusCode, body: body}
	}
	return body, nil
}

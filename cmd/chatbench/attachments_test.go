package main

import (
	"io"
	"slices"
	"strings"
	"testing"
)

func TestAttachmentsOptions(t *testing.T) {
	base := []string{"attachments", "--http", "127.0.0.1:1", "--mqtt", "127.0.0.1:2"}
	tests := []struct {
		name    string
		args    []string
		want    attachOptions
		wantErr string
	}{
		{name: "defaults", want: attachOptions{Uploaders: 4, Uploads: 8, Sizes: []int64{256 << 10, 4 << 20}, PNGEvery: 4}},
		{name: "set", args: []string{"--uploaders", "2", "--uploads", "3", "--sizes", "1000, 1MiB", "--png-every", "0"},
			want: attachOptions{Uploaders: 2, Uploads: 3, Sizes: []int64{1000, 1 << 20}, PNGEvery: 0}},
		{name: "too large", args: []string{"--sizes", "26MiB"}, wantErr: "1 byte to 25MiB"},
		{name: "not a size", args: []string{"--sizes", "big"}, wantErr: "--sizes"},
		{name: "empty sizes", args: []string{"--sizes", ","}, wantErr: "no sizes"},
		{name: "no uploaders", args: []string{"--uploaders", "0"}, wantErr: "--uploaders"},
		{name: "too many uploads", args: []string{"--uploads", "10001"}, wantErr: "--uploads"},
		{name: "negative png", args: []string{"--png-every", "-1"}, wantErr: "--png-every"},
		{name: "off machine", args: []string{"--http", "10.0.0.1:80"}, wantErr: "not a loopback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseArgs(append(append([]string{}, base...), tt.args...), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one about %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := o.Attach
			if got.Uploaders != tt.want.Uploaders || got.Uploads != tt.want.Uploads || got.PNGEvery != tt.want.PNGEvery ||
				!slices.Equal(got.Sizes, tt.want.Sizes) {
				t.Fatalf("options %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestAttachmentsSmoke uploads and downloads through an in-process chatd:
// every file goes up, the PNGs get thumbnails, the peer reads every byte,
// and the server's CPU is measured for both directions.
func TestAttachmentsSmoke(t *testing.T) {
	addrs := startChatd(t)
	r := runJSON(t, addrs, "attachments", "--uploaders", "2", "--uploads", "4", "--sizes", "64KiB,300KiB", "--png-every", "2")
	a := r.Attachments
	if r.Scenario != "attachments" || a == nil {
		t.Fatalf("report %+v has no attachments part", r)
	}
	// Sizes alternate, so the PNGs (files 0 and 2) are all 64 KiB-ish and
	// the random files 64 KiB and 300 KiB; every download matches its upload.
	if a.Upload.Requests != 8 || a.Download.Requests != 8 || r.Errors != 0 {
		t.Fatalf("upload %+v download %+v errors %d", a.Upload, a.Download, r.Errors)
	}
	if a.Upload.Bytes != a.Download.Bytes || a.Upload.Bytes < 2*(64<<10+300<<10) {
		t.Errorf("uploaded %d bytes, downloaded %d", a.Upload.Bytes, a.Download.Bytes)
	}
	if a.Upload.Thumbnails != 4 {
		t.Errorf("%d thumbnails, want one per PNG (4)", a.Upload.Thumbnails)
	}
	for name, p := range map[string]transferPhase{"upload": a.Upload, "download": a.Download} {
		if p.MiBPerSec <= 0 || p.Latency.P99 <= 0 || p.Latency.P50 > p.Latency.P99 || p.CPUSec < 0 {
			t.Errorf("%s %+v", name, p)
		}
	}
	if a.Upload.CPUPerMiB <= 0 {
		t.Errorf("upload CPU per MiB %v: the server did the work in this process", a.Upload.CPUPerMiB)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"
)

type account struct {
	ID, Token string
}

func newREST(addr string) *restClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &restClient{base: "http://" + addr, http: &http.Client{Timeout: 30 * time.Second, Transport: tr}}
}

type restClient struct {
	base string
	http *http.Client
}

// do sends a JSON request, retrying after 429s as the server asks.
func (r *restClient) do(ctx context.Context, method, path, token string, in, out any) error {
	for {
		status, retryAfter, err := r.try(ctx, method, path, token, in, out)
		if err != nil {
			return err
		}
		if status != http.StatusTooManyRequests {
			return nil
		}
		select {
		case <-time.After(max(retryAfter, time.Second)):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// try sends a JSON request once. A 429 is returned as its status with the
// server's Retry-After and no error (callers either wait or count it as a
// refusal); any other status of 300 or more is an error.
func (r *restClient) try(ctx context.Context, method, path, token string, in, out any) (status int, retryAfter time.Duration, err error) {
	var rd io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return 0, 0, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return 0, 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return resp.StatusCode, 0, err
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return resp.StatusCode, time.Duration(wait) * time.Second, nil
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, 0, &httpError{method: method, path: path, status: resp.StatusCode, body: body}
	}
	if out != nil {
		return resp.StatusCode, 0, json.Unmarshal(body, out)
	}
	return resp.StatusCode, 0, nil
}

// httpError is a refusal or failure status from the REST API.
type httpError struct {
	method, path string
	status       int
	body         []byte
}

func (e *httpError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.method, e.path, e.status, e.body)
}

func (r *restClient) registerMany(ctx context.Context, prefix string, n int) ([]account, error) {
	users := make([]account, n)
	var g errgroup.Group
	g.SetLimit(16)
	for i := range users {
		g.Go(func() error {
			var tok struct {
				UserID      string `json:"user_id"`
				AccessToken string `json:"access_token"`
			}
			name := fmt.Sprintf("%s-%d", prefix, i)
			if err := r.do(ctx, "POST", "/v1/auth/register", "", map[string]string{"username": name, "password": "bench password"}, &tok); err != nil {
				return fmt.Errorf("register %s: %w", name, err)
			}
			users[i] = account{ID: tok.UserID, Token: tok.AccessToken}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return users, nil
}

func (r *restClient) login(ctx context.Context, username, password string) (account, error) {
	var tok struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	if err := r.do(ctx, "POST", "/v1/auth/login", "", map[string]string{"username": username, "password": password}, &tok); err != nil {
		return account{}, fmt.Errorf("login %s: %w", username, err)
	}
	return account{ID: tok.UserID, Token: tok.AccessToken}, nil
}

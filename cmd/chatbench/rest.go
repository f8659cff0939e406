package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
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
	var raw []byte
	if in != nil {
		var err error
		if raw, err = json.Marshal(in); err != nil {
			return err
		}
	}
	for {
		var rd io.Reader
		if raw != nil {
			rd = bytes.NewReader(raw)
		}
		req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := r.http.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			select {
			case <-time.After(time.Duration(max(wait, 1)) * time.Second):
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, body)
		}
		if out != nil {
			return json.Unmarshal(body, out)
		}
		return nil
	}
}

func (r *restClient) registerMany(ctx context.Context, prefix string, n int) ([]account, error) {
	users := make([]account, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var tok struct {
				UserID      string `json:"user_id"`
				AccessToken string `json:"access_token"`
			}
			name := fmt.Sprintf("%s-%d", prefix, i)
			if err := r.do(ctx, "POST", "/v1/auth/register", "", map[string]string{"username": name, "password": "bench password"}, &tok); err != nil {
				errs <- fmt.Errorf("register %s: %w", name, err)
				return
			}
			users[i] = account{ID: tok.UserID, Token: tok.AccessToken}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
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

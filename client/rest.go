package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// restCall makes one REST request and decodes a JSON answer into out; a
// non-2xx answer is the server's *Error.
func (c *Client) restCall(ctx context.Context, method, path, token string, in, out any) error {
	var body *bytes.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	} else {
		body = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.opts.HTTPBase, "/")+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.NewDecoder(res.Body).Decode(&e)
		if e.Error.Code == "" {
			e.Error.Code, e.Error.Message = "http_"+fmt.Sprint(res.StatusCode), res.Status
		}
		return fmt.Errorf("%s %s: %w", method, path, &Error{Code: e.Error.Code, Message: e.Error.Message})
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode: %w", method, path, err)
	}
	return nil
}

// credentials returns the user id and a token to connect with, logging in
// (or refreshing) when the client has no token yet, or when fresh: the
// server refused the one it has.
func (c *Client) credentials(ctx context.Context, fresh bool) (uid, token string, err error) {
	c.mu.Lock()
	uid, token, refresh := c.uid, c.token, c.refresh
	c.mu.Unlock()
	if token != "" && uid != "" && !fresh {
		return uid, token, nil
	}
	var tok struct {
		UserID       string `json:"user_id"`
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	switch {
	case c.opts.Password != "":
		if err := c.restCall(ctx, "POST", "/v1/auth/login", "", map[string]string{"username": c.opts.Username, "password": c.opts.Password}, &tok); err != nil {
			return "", "", fmt.Errorf("log in: %w", err)
		}
	case refresh != "" && (fresh || token == ""):
		if err := c.restCall(ctx, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": refresh}, &tok); err != nil {
			return "", "", fmt.Errorf("refresh tokens: %w", err)
		}
		if c.opts.OnTokens != nil {
			c.opts.OnTokens(tok.AccessToken, tok.RefreshToken)
		}
	default:
		var me struct {
			UserID string `json:"user_id"`
		}
		if err := c.restCall(ctx, "GET", "/v1/me", token, nil, &me); err != nil {
			return "", "", fmt.Errorf("who am I: %w", err)
		}
		tok.UserID, tok.AccessToken, tok.RefreshToken = me.UserID, token, refresh
	}
	c.mu.Lock()
	c.uid, c.token = tok.UserID, tok.AccessToken
	if tok.RefreshToken != "" {
		c.refresh = tok.RefreshToken
	}
	uid, token = c.uid, c.token
	c.mu.Unlock()
	return uid, token, nil
}

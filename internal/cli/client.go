package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// clientTimeout bounds one request, reading the response included.
const clientTimeout = 30 * time.Second

// maxErrorBody caps how much of a non-problem error body ends up in an error message.
const maxErrorBody = 512

// Client calls the Velocity HTTP API with JSON bodies.
type Client struct {
	baseURL string
	apiKey  string
	bearer  string // sent as Authorization: Bearer when there is no apiKey
	http    *http.Client
}

// NewClient returns a client for the API at baseURL. An empty apiKey sends no X-API-Key header.
func NewClient(baseURL, apiKey string) *Client {
	return &Client{baseURL: baseURL, apiKey: apiKey, http: &http.Client{Timeout: clientTimeout}}
}

// APIError is an error response of the API: an RFC 9457 problem document.
type APIError struct {
	Status int              `json:"status"`
	Title  string           `json:"title"`
	Detail string           `json:"detail,omitempty"`
	Errors []APIErrorDetail `json:"errors,omitempty"`
	// Layer is the authorization layer (1 to 7) that denied the request, 0 when none did.
	Layer int `json:"layer,omitempty"`
}

// APIErrorDetail points at one part of the request that was at fault.
type APIErrorDetail struct {
	Location string `json:"location,omitempty"`
	Message  string `json:"message"`
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%d)", e.Title, e.Status)
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	for _, d := range e.Errors {
		if d.Location != "" {
			fmt.Fprintf(&b, "\n  %s: %s", d.Location, d.Message)
		} else {
			fmt.Fprintf(&b, "\n  %s", d.Message)
		}
	}
	return b.String()
}

// Do sends body (nil for none) as JSON and decodes a JSON response into out (nil to discard it).
func (c *Client) Do(ctx context.Context, method, path string, body any, out any) error {
	if body == nil {
		return c.DoRaw(ctx, method, path, "", nil, out)
	}
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode request body of %s %s: %w", method, path, err)
	}
	return c.DoRaw(ctx, method, path, "application/json", data, out)
}

// DoRaw sends body as it is, with the given content type, and decodes a JSON response into out.
func (c *Client) DoRaw(ctx context.Context, method, path string, contentType string, body []byte, out any) error {
	u := c.baseURL + path
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.apiKey != "" {
		req.Header.Set("X-API-Key", c.apiKey)
	} else if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error repeats the method and URL; keep only its cause so they show once.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, u, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return problem(resp.StatusCode, data)
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, u, err)
	}
	return nil
}

// problem turns an error response into an *APIError. A body that is not a problem document
// (a proxy's HTML page, say) still gives one, with the status text as title.
func problem(status int, body []byte) *APIError {
	var e APIError
	if err := json.Unmarshal(body, &e); err != nil || e.Title == "" {
		detail := strings.TrimSpace(string(body))
		if len(detail) > maxErrorBody {
			detail = detail[:maxErrorBody] + "…"
		}
		e = APIError{Title: http.StatusText(status), Detail: detail}
		if e.Title == "" {
			e.Title = "HTTP error"
		}
	}
	if e.Status == 0 {
		e.Status = status
	}
	return &e
}

// call sends one request for cmd. It returns the response as the server sent it, so that
// -o json shows every field, and also decodes it into out (nil to skip) for the table.
func (g *globals) call(cmd *cobra.Command, method, path string, body, out any) (json.RawMessage, error) {
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	if c.apiKey == "" {
		// An API key from flag, environment or config wins over a `velocity auth login`.
		if c.bearer, err = g.storedBearer(); err != nil {
			return nil, err
		}
	}
	var raw json.RawMessage
	if err := c.Do(cmd.Context(), method, path, body, &raw); err != nil {
		return nil, err
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("%s %s: decode response: %w", method, path, err)
		}
	}
	return raw, nil
}

// pathf builds an API path, escaping each argument as one path segment.
func pathf(format string, segments ...string) string {
	args := make([]any, len(segments))
	for i, s := range segments {
		args[i] = url.PathEscape(s)
	}
	return fmt.Sprintf(format, args...)
}

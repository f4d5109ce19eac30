package cli

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClientDoSendsJSONAndDecodesTheAnswer(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{
		"POST /things": {http.StatusCreated, `{"id":"t1","n":2}`},
		"GET /things":  {http.StatusOK, `{"items":[]}`},
	})
	var out struct {
		ID string `json:"id"`
		N  int    `json:"n"`
	}
	err := NewClient(api.URL, testKey).Do(context.Background(), http.MethodPost, "/things", map[string]any{"n": 2}, &out)
	require.NoError(t, err)
	require.Equal(t, "t1", out.ID)
	require.Equal(t, 2, out.N)

	require.NoError(t, NewClient(api.URL, "").Do(context.Background(), http.MethodGet, "/things", nil, nil))

	reqs := api.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, request{Method: "POST", Path: "/things", Body: `{"n":2}`, APIKey: testKey, ContentType: "application/json"}, reqs[0])
	require.Equal(t, request{Method: "GET", Path: "/things"}, reqs[1], "no key, no body, no content type")
}

func TestClientDoRawSendsTheBodyAsItIs(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"PUT /raw": {http.StatusNoContent, ""}})
	var out map[string]any
	err := NewClient(api.URL, testKey).DoRaw(context.Background(), http.MethodPut, "/raw", "application/yaml", []byte("a: 1\n"), &out)
	require.NoError(t, err)
	require.Nil(t, out, "a 204 decodes nothing")
	require.Equal(t, []request{{Method: "PUT", Path: "/raw", Body: "a: 1\n", APIKey: testKey, ContentType: "application/yaml"}}, api.requests())
}

func TestClientDecodesProblems(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{
		"POST /records": {http.StatusUnprocessableEntity, `{"status":422,"title":"Unprocessable Entity","detail":"invalid record",` +
			`"errors":[{"location":"body.total","message":"expected number"},{"location":"body.status","message":"not one of pending, paid"}]}`},
		"DELETE /records/1": {http.StatusForbidden, `{"status":403,"title":"Forbidden","detail":"denied by the row filter","layer":4}`},
		"GET /proxy":        {http.StatusBadGateway, `<html>bad gateway</html>`},
	})
	c := NewClient(api.URL, testKey)

	err := c.Do(context.Background(), http.MethodPost, "/records", map[string]any{"total": "x"}, nil)
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, 422, apiErr.Status)
	require.Equal(t, "Unprocessable Entity (422): invalid record\n  body.total: expected number\n  body.status: not one of pending, paid", err.Error())

	err = c.Do(context.Background(), http.MethodDelete, "/records/1", nil, nil)
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, 4, apiErr.Layer)
	require.Equal(t, "Forbidden (403): denied by the row filter", err.Error())

	err = c.Do(context.Background(), http.MethodGet, "/proxy", nil, nil)
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, "Bad Gateway (502): <html>bad gateway</html>", err.Error())
}

func TestAPIErrorRendering(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  APIError
		want string
	}{
		{APIError{Status: 404, Title: "Not Found"}, "Not Found (404)"},
		{APIError{Status: 409, Title: "Conflict", Detail: "version 1 is lower than 2"}, "Conflict (409): version 1 is lower than 2"},
		{APIError{Status: 400, Title: "Bad Request", Detail: "bad where", Errors: []APIErrorDetail{{Location: "body.where.region", Message: "not filterable"}, {Message: "and more"}}},
			"Bad Request (400): bad where\n  body.where.region: not filterable\n  and more"},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, tc.err.Error(), "Error() of %+v", tc.err)
	}
}

func TestClientWrapsNetworkErrorsWithTheURL(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, nil)
	url := api.URL
	api.Close()
	err := NewClient(url, "").Do(context.Background(), http.MethodGet, "/admin/schemas", nil, nil)
	require.Error(t, err)
	require.Regexp(t, `^GET `+url+`/admin/schemas: dial tcp .*refused`, err.Error())
}

func TestClientRejectsAnAnswerThatIsNotJSON(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"GET /x": {http.StatusOK, `not json`}})
	var out map[string]any
	err := NewClient(api.URL, "").Do(context.Background(), http.MethodGet, "/x", nil, &out)
	require.ErrorContains(t, err, "GET "+api.URL+"/x: decode response: ")
}

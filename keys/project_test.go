package keys_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys"
)

func TestProjectExplicitMakesNoCall(t *testing.T) {
	c, mock := newClient(t, testProject)
	got, err := c.Project(context.Background())
	require.NoError(t, err)
	assert.Equal(t, testProject, got)
	assert.Zero(t, mock.GetTotalCallCount())
}

func TestProjectDiscoveryOneProject(t *testing.T) {
	c, mock := newClient(t, "")
	var rec recorder
	mock.RegisterResponder(http.MethodGet, projectsURL, rec.wrap(jsonResponder(200,
		`{"projects":[{"project_id":"p-1","name":"Main"}]}`)))
	var created recorder
	mock.RegisterResponder(http.MethodPost, testHost+"/v1/projects/p-1/keys", created.wrap(jsonResponder(200, createAnswer("key-1"))))

	got, err := c.Project(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "p-1", got)

	req := rec.only(t)
	assert.Equal(t, http.MethodGet, req.Method)
	assert.Equal(t, "/v1/projects", req.URL.Path)
	assert.Empty(t, req.URL.RawQuery)
	assertCommonHeaders(t, req)

	// Cached: neither Project nor Create discovers again.
	got, err = c.Project(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "p-1", got)
	_, err = c.Create(context.Background(), keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Minute})
	require.NoError(t, err)
	assert.Len(t, rec.all(), 1, "discovery is cached")
	assert.Len(t, created.all(), 1)
	assert.Contains(t, c.String(), `"p-1"`)
}

func TestProjectDiscoveryFailures(t *testing.T) {
	tests := []struct {
		name         string
		answer       httpmock.Responder
		wantContains []string
	}{
		{
			name:         "no project",
			answer:       jsonResponder(200, `{"projects":[]}`),
			wantContains: []string{"keys: ", "no project", "pass a project ID"},
		},
		{
			name:         "several projects",
			answer:       jsonResponder(200, `{"projects":[{"project_id":"p-1","name":"Main"},{"project_id":"p-2","name":"Staging"}]}`),
			wantContains: []string{"keys: ", "2 projects", "p-1 (Main)", "p-2 (Staging)"},
		},
		{
			name:         "several projects, one echoing the API key",
			answer:       jsonResponder(200, `{"projects":[{"project_id":"`+testAPIKey+`","name":"n"},{"project_id":"p-2","name":"`+testAPIKey+`"}]}`),
			wantContains: []string{"keys: ", "2 projects", "[REDACTED] (n)", "p-2 ([REDACTED])"},
		},
		{
			name:         "discovered ID unusable in a path",
			answer:       jsonResponder(200, `{"projects":[{"project_id":"p/../../x","name":"Evil"}]}`),
			wantContains: []string{"keys: ", "discovered project ID", "URL path"},
		},
		{
			name:         "answer does not parse",
			answer:       jsonResponder(200, `<html>`),
			wantContains: []string{"keys: list projects"},
		},
		{
			name:         "401",
			answer:       jsonResponder(401, `{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials."}`),
			wantContains: []string{"keys: list projects", "401", "INVALID_AUTH"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mock := newClient(t, "")
			mock.RegisterResponder(http.MethodGet, projectsURL, tt.answer)

			_, err := c.Project(context.Background())
			require.Error(t, err)
			for _, s := range tt.wantContains {
				assert.Contains(t, err.Error(), s)
			}
			testenv.NoSecret(t, "Project's error", err.Error(), testAPIKey[:12])
			// The operations that need a project fail the same way and
			// make no other call.
			_, err = c.Create(context.Background(), keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Minute})
			require.Error(t, err)
			_, err = c.List(context.Background())
			require.Error(t, err)
			require.Error(t, c.Delete(context.Background(), "key-1"))
			assert.Equal(t, 4, mock.GetTotalCallCount(), "one discovery attempt per call, nothing else")
		})
	}
}

func TestProjectDiscoveryFailureIsNotCached(t *testing.T) {
	c, mock := newClient(t, "")
	mock.RegisterResponder(http.MethodGet, projectsURL,
		jsonResponder(500, `{"category":"INTERNAL","message":"boom"}`).
			Then(jsonResponder(200, `{"projects":[{"project_id":"p-1","name":"Main"}]}`)))

	_, err := c.Project(context.Background())
	var apiErr *keys.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 500, apiErr.StatusCode)
	assert.Equal(t, "list projects", apiErr.Op)

	got, err := c.Project(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "p-1", got)
	got, err = c.Project(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "p-1", got)
	assert.Equal(t, 2, mock.GetTotalCallCount())
}

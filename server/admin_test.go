package server

import (
	"net/http"
	"testing"
)

// TestAdminRefusesCrossOriginPosts: the dashboard puts a browser in front
// of the admin listener, so a page of another origin must not make it take
// a checkpoint (or compact); the same POST from a tool or from the
// listener's own page is served, and reads are served to anyone.
func TestAdminRefusesCrossOriginPosts(t *testing.T) {
	s, dev := durableServerWith(t, t.TempDir(), nil)
	defer shutdown(t, s, dev)
	base := "http://" + s.AdminAddr()
	cases := []struct {
		name, method, path string
		header             map[string]string
		want               int
	}{
		{"cross-site fetch", http.MethodPost, "/checkpoint", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"foreign origin", http.MethodPost, "/compact", map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"own page", http.MethodPost, "/checkpoint", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": base}, http.StatusOK},
		{"a tool", http.MethodPost, "/checkpoint", nil, http.StatusOK},
		{"cross-site read", http.MethodGet, "/stats", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusOK},
	}
	for _, c := range cases {
		taken := s.Stats().Checkpoint.Taken
		req, err := http.NewRequest(c.method, base+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range c.header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %s %s answered %s, want %d", c.name, c.method, c.path, resp.Status, c.want)
		}
		if refused, took := c.want == http.StatusForbidden, s.Stats().Checkpoint.Taken > taken; refused && took {
			t.Errorf("%s: refused, but a checkpoint was taken", c.name)
		}
	}
}

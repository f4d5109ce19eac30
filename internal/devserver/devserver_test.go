package devserver_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/velocitydev/velocity/internal/devserver"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type run struct {
	creds  devserver.Credentials
	newKey bool
	stop   func()
}

func start(t *testing.T, dir string, apiPort, pgPort int) run {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan run, 1)
	done := make(chan error, 1)
	go func() {
		done <- devserver.Run(ctx, devserver.Options{
			DataDir: dir, Listen: "127.0.0.1:" + strconv.Itoa(apiPort), PGPort: pgPort,
			Ready: func(c devserver.Credentials, newKey bool) { ready <- run{creds: c, newKey: newKey} },
		})
	}()
	select {
	case r := <-ready:
		r.stop = func() {
			cancel()
			require.NoError(t, <-done)
		}
		return r
	case err := <-done:
		cancel()
		t.Fatalf("dev server failed: %v", err)
	case <-time.After(2 * time.Minute):
		cancel()
		t.Fatal("dev server did not start")
	}
	return run{}
}

// TestDevServerKeepsDataAcrossRuns starts `velocity dev` twice on one data folder.
func TestDevServerKeepsDataAcrossRuns(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	apiPort, pgPort := freePort(t), freePort(t)

	first := start(t, dir, apiPort, pgPort)
	require.True(t, first.newKey)
	require.True(t, strings.HasPrefix(first.creds.APIKey, "vk_"))
	var onDisk devserver.Credentials
	raw, err := os.ReadFile(filepath.Join(dir, "credentials.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &onDisk))
	require.Equal(t, first.creds, onDisk)
	info, err := os.Stat(filepath.Join(dir, "credentials.json"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	orders, err := os.ReadFile("../../examples/orders.yaml")
	require.NoError(t, err)
	post := func(c devserver.Credentials, path, contentType, body string) *http.Response {
		req, err := http.NewRequest("POST", c.APIURL+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-API-Key", c.APIKey)
		req.Header.Set("Content-Type", contentType)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res
	}
	js, err := yaml.YAMLToJSON(orders)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, post(first.creds, "/admin/schemas/apply", "application/json", string(js)).StatusCode)
	require.Equal(t, http.StatusCreated, post(first.creds, "/acme/shop/sales/orders", "application/json", `{"customer_email":"kept@example.com"}`).StatusCode)

	// database_url is the owner role over TCP with its password.
	conn, err := pgx.Connect(context.Background(), first.creds.DatabaseURL)
	require.NoError(t, err)
	var user string
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT current_user").Scan(&user))
	require.Equal(t, "velocity_owner", user)

	// The worker runs in-process as velocity_worker: the partition job ran when it started.
	require.Eventually(t, func() bool {
		var n int
		err := conn.QueryRow(context.Background(), `SELECT count(*) FROM velocity.river_job WHERE kind = 'history_partitions' AND state = 'completed'`).Scan(&n)
		return err == nil && n > 0
	}, 30*time.Second, 50*time.Millisecond)
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT usename FROM pg_stat_activity WHERE application_name = 'velocity-worker' LIMIT 1`).Scan(&user))
	require.Equal(t, "velocity_worker", user)
	require.NoError(t, conn.Close(context.Background()))

	// A BI login's password is set from a SCRAM verifier made by the API and works over TCP.
	res := post(first.creds, "/admin/db-logins", "application/json", `{"role":"viewer","login":"bi_dev","password":"Tr0ub4dor&3"}`)
	require.Equal(t, http.StatusCreated, res.StatusCode)
	u, err := url.Parse(first.creds.DatabaseURL)
	require.NoError(t, err)
	u.User = url.UserPassword("bi_dev", "Tr0ub4dor&3")
	bi, err := pgx.Connect(context.Background(), u.String())
	require.NoError(t, err)
	var rows int
	require.NoError(t, bi.QueryRow(context.Background(), "SELECT count(*) FROM acme__shop.sales__orders__read").Scan(&rows))
	require.Equal(t, 1, rows)
	require.NoError(t, bi.Close(context.Background()))
	u.User = url.UserPassword("bi_dev", "wrong")
	_, err = pgx.Connect(context.Background(), u.String())
	require.ErrorContains(t, err, "password authentication failed")
	first.stop()

	// A data folder from before the worker had a password still starts, and gets one.
	secretsPath := filepath.Join(dir, "secrets.json")
	raw, err = os.ReadFile(secretsPath)
	require.NoError(t, err)
	var sec map[string]string
	require.NoError(t, json.Unmarshal(raw, &sec))
	require.NotEmpty(t, sec["worker_password"])
	delete(sec, "worker_password")
	raw, err = json.Marshal(sec)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(secretsPath, raw, 0o600))

	second := start(t, dir, apiPort, pgPort)
	defer second.stop()
	require.False(t, second.newKey, "the key is printed once")
	require.Equal(t, first.creds.APIKey, second.creds.APIKey)
	raw, err = os.ReadFile(secretsPath)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &sec))
	require.NotEmpty(t, sec["worker_password"])
	// The worker's password works over TCP, for a `velocity worker` run beside the dev server.
	u.User = url.UserPassword("velocity_worker", sec["worker_password"])
	wconn, err := pgx.Connect(context.Background(), u.String())
	require.NoError(t, err)
	require.NoError(t, wconn.Close(context.Background()))
	req, err := http.NewRequest("GET", second.creds.APIURL+"/acme/shop/sales/orders", nil)
	require.NoError(t, err)
	req.Header.Set("X-API-Key", second.creds.APIKey)
	res, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var page struct {
		Items []map[string]any `json:"items"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&page))
	require.Len(t, page.Items, 1)
	require.Equal(t, "kept@example.com", page.Items[0]["customer_email"])
}

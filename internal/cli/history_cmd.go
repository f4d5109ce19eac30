package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// historyEvent is one event of GET P/{id}/history, with the fields the table shows.
type historyEvent struct {
	EventID   int64          `json:"event_id"`
	At        string         `json:"at"`
	Op        string         `json:"op"`
	Version   int64          `json:"version"`
	Actor     string         `json:"actor"`
	Reason    *string        `json:"reason"`
	RequestID *string        `json:"request_id"`
	Record    map[string]any `json:"record"`
}

type fieldChange struct {
	Field    string          `json:"field"`
	From     json.RawMessage `json:"from"`
	To       json.RawMessage `json:"to"`
	Redacted bool            `json:"redacted"`
}

type diffSide struct {
	Exists  bool    `json:"exists"`
	Version *int64  `json:"version"`
	Op      *string `json:"op"`
}

// pathPart is one part of an object path: org, app, domain or object.
var pathPart = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// objectPath turns the PATH argument into the route prefix P: /org/app/domain/object, with or
// without the leading slash, or the schema key org.app.domain.object.
func objectPath(arg string) (string, error) {
	sep := "/"
	if !strings.Contains(arg, "/") {
		sep = "."
	}
	parts := strings.Split(strings.Trim(arg, "/"), sep)
	if len(parts) != 4 {
		return "", fmt.Errorf("PATH %q: want /org/app/domain/object or org.app.domain.object", arg)
	}
	for _, p := range parts {
		if !pathPart.MatchString(p) {
			return "", fmt.Errorf("PATH %q: %q is not a valid name", arg, p)
		}
	}
	return "/" + strings.Join(parts, "/"), nil
}

// recordPath is P/{id}[/suffix] with the id escaped as one segment.
func recordPath(pathArg, id, suffix string) (string, error) {
	p, err := objectPath(pathArg)
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", errors.New("ID is empty")
	}
	return p + "/" + url.PathEscape(id) + suffix, nil
}

// checkTime checks a time flag locally, so a typo is a usage error before any request.
func checkTime(flag, v string) error {
	if v == "" {
		return fmt.Errorf("--%s is required", flag)
	}
	if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
		return fmt.Errorf("--%s %q: want an RFC 3339 time such as 2026-11-28T12:00:00Z", flag, v)
	}
	return nil
}

func newHistoryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "history", Short: "Read the past of a record: its events, its state at a time, a diff"}
	cmd.AddCommand(newHistoryListCmd(g), newHistoryAtCmd(g), newHistoryDiffCmd(g))
	return cmd
}

func newHistoryListCmd(g *globals) *cobra.Command {
	var since, until, cursor string
	var limit int
	cmd := &cobra.Command{
		Use:   "list PATH ID [--since T] [--until T] [--limit N] [--cursor C]",
		Short: "List the events of a record, newest first",
		Args:  usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := recordPath(args[0], args[1], "/history")
			if err != nil {
				return usageError{fmt.Errorf("history list: %w", err)}
			}
			q := url.Values{}
			for flag, v := range map[string]string{"since": since, "until": until} {
				if v == "" {
					continue
				}
				if err := checkTime(flag, v); err != nil {
					return usageError{fmt.Errorf("history list: %w", err)}
				}
				q.Set(flag, v)
			}
			if limit < 1 || limit > 1000 {
				return usageError{fmt.Errorf("history list: --limit must be from 1 to 1000, not %d", limit)}
			}
			q.Set("limit", strconv.Itoa(limit))
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var page struct {
				Items      []historyEvent `json:"items"`
				NextCursor *string        `json:"next_cursor"`
			}
			raw, err := g.call(cmd, http.MethodGet, p+"?"+q.Encode(), nil, &page)
			if err != nil {
				return fmt.Errorf("history list %s %s: %w", args[0], args[1], err)
			}
			err = g.print(cmd, raw, func() [][]string {
				rows := [][]string{{"EVENT", "AT", "OP", "VERSION", "ACTOR", "REASON"}}
				for _, e := range page.Items {
					rows = append(rows, []string{strconv.FormatInt(e.EventID, 10), e.At, e.Op, strconv.FormatInt(e.Version, 10), e.Actor, orText(e.Reason, "-")})
				}
				return rows
			})
			if err != nil || g.output == "json" || page.NextCursor == nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "\nmore: --cursor %s\n", *page.NextCursor)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "only events at or after this RFC 3339 time")
	f.StringVar(&until, "until", "", "only events at or before this RFC 3339 time")
	f.IntVar(&limit, "limit", 50, "events per page (1 to 1000)")
	f.StringVar(&cursor, "cursor", "", "the cursor a previous page printed")
	return cmd
}

// recordRows shows a record as FIELD VALUE rows, system fields first.
func recordRows(rec map[string]any) [][]string {
	rows := [][]string{{"FIELD", "VALUE"}}
	system := []string{"id", "version", "created_at", "updated_at", "created_by", "updated_by"}
	seen := map[string]bool{}
	for _, k := range system {
		if v, ok := rec[k]; ok {
			rows = append(rows, []string{k, valueText(v)})
			seen[k] = true
		}
	}
	var rest []string
	for k := range rec {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		rows = append(rows, []string{k, valueText(rec[k])})
	}
	return rows
}

func valueText(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return x
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

func rawText(v json.RawMessage) string {
	if len(v) == 0 {
		return "null"
	}
	var x any
	if json.Unmarshal(v, &x) != nil {
		return string(v)
	}
	return valueText(x)
}

func newHistoryAtCmd(g *globals) *cobra.Command {
	var at string
	cmd := &cobra.Command{
		Use:   "at PATH ID --at T",
		Short: "Show a record as it was at a time",
		Args:  usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := recordPath(args[0], args[1], "")
			if err == nil {
				err = checkTime("at", at)
			}
			if err != nil {
				return usageError{fmt.Errorf("history at: %w", err)}
			}
			var rec map[string]any
			raw, err := g.call(cmd, http.MethodGet, p+"?at="+url.QueryEscape(at), nil, &rec)
			if err != nil {
				return fmt.Errorf("history at %s %s: %w", args[0], args[1], err)
			}
			return g.print(cmd, raw, func() [][]string { return recordRows(rec) })
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "RFC 3339 time (required)")
	return cmd
}

func newHistoryDiffCmd(g *globals) *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "diff PATH ID --from T1 [--to T2]",
		Short: "Show what changed in a record between two times (--to defaults to now)",
		Args:  usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := recordPath(args[0], args[1], "/diff")
			if err == nil {
				err = checkTime("from", from)
			}
			if err == nil && to != "" {
				err = checkTime("to", to)
			}
			if err != nil {
				return usageError{fmt.Errorf("history diff: %w", err)}
			}
			q := url.Values{"from": {from}}
			if to != "" {
				q.Set("to", to)
			}
			var d struct {
				From    diffSide      `json:"from"`
				To      diffSide      `json:"to"`
				Changes []fieldChange `json:"changes"`
			}
			raw, err := g.call(cmd, http.MethodGet, p+"?"+q.Encode(), nil, &d)
			if err != nil {
				return fmt.Errorf("history diff %s %s: %w", args[0], args[1], err)
			}
			return g.print(cmd, raw, func() [][]string {
				rows := [][]string{{"FIELD", "FROM", "TO"}}
				if !d.From.Exists {
					rows = append(rows, []string{"(record)", "absent", "present"})
				}
				if !d.To.Exists {
					rows = append(rows, []string{"(record)", "present", "absent"})
				}
				for _, c := range d.Changes {
					if c.Redacted {
						rows = append(rows, []string{c.Field, "(redacted)", "(changed)"})
						continue
					}
					rows = append(rows, []string{c.Field, rawText(c.From), rawText(c.To)})
				}
				return rows
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "RFC 3339 time of the older state (required)")
	f.StringVar(&to, "to", "", "RFC 3339 time of the newer state (default: now)")
	return cmd
}

func newRestoreCmd(g *globals) *cobra.Command {
	var at, reason string
	cmd := &cobra.Command{
		Use:   "restore PATH ID --at T --reason TEXT",
		Short: "Write a record back as it was at a time (a RESTORE event; history is kept)",
		Args:  usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := recordPath(args[0], args[1], "/restore")
			if err == nil {
				err = checkTime("at", at)
			}
			if err != nil {
				return usageError{fmt.Errorf("restore: %w", err)}
			}
			body := map[string]string{"at": at}
			if reason != "" {
				body["reason"] = reason
			}
			var rec map[string]any
			raw, err := g.call(cmd, http.MethodPost, p, body, &rec)
			if err != nil {
				return fmt.Errorf("restore %s %s: %w", args[0], args[1], err)
			}
			return g.print(cmd, raw, func() [][]string { return recordRows(rec) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&at, "at", "", "RFC 3339 time to restore the record to (required)")
	f.StringVar(&reason, "reason", "", "why; required when the schema's policy asks for one")
	return cmd
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"
	"unicode/utf8"
)

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 10, 1, 3, ' ', 0) }

// templateFuncs are the functions Docker's --format templates know.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"split": strings.Split,
	"join":  strings.Join,
	"title": func(s string) string {
		if s == "" {
			return s
		}
		r, n := utf8.DecodeRuneInString(s)
		return strings.ToUpper(string(r)) + s[n:]
	},
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"pad": func(s string, l, r int) string {
		return strings.Repeat(" ", l) + s + strings.Repeat(" ", r)
	},
	"truncate": func(s string, n int) string {
		if len(s) > n {
			return s[:n]
		}
		return s
	},
	"println": func(args ...any) string { return fmt.Sprintln(args...) },
}

func parseTemplate(format string) (*template.Template, error) {
	t, err := template.New("").Funcs(templateFuncs).Parse(format)
	if err != nil {
		return nil, fmt.Errorf("template parsing error: %w", err)
	}
	return t, nil
}

// renderRows prints rows with a --format string: "table ..." for a table with
// headers, "json" for one JSON object a line, otherwise the template per row.
func renderRows(w io.Writer, format string, headers map[string]string, rows []map[string]any) error {
	switch {
	case format == "json":
		for _, r := range rows {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			fmt.Fprintln(w, string(b))
		}
		return nil
	case strings.HasPrefix(format, "table"):
		f := strings.TrimSpace(strings.TrimPrefix(format, "table"))
		f = strings.ReplaceAll(f, `\t`, "\t")
		t, err := parseTemplate(f)
		if err != nil {
			return err
		}
		tw := newTable(w)
		h := map[string]any{}
		for k, v := range headers {
			h[k] = v
		}
		if err := execLine(tw, t, h); err != nil {
			return err
		}
		for _, r := range rows {
			if err := execLine(tw, t, r); err != nil {
				return err
			}
		}
		return tw.Flush()
	default:
		f := strings.ReplaceAll(format, `\t`, "\t")
		f = strings.ReplaceAll(f, `\n`, "\n")
		t, err := parseTemplate(f)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if err := execLine(w, t, r); err != nil {
				return err
			}
		}
		return nil
	}
}

func execLine(w io.Writer, t *template.Template, v any) error {
	var buf bytes.Buffer
	if err := t.Execute(&buf, v); err != nil {
		return fmt.Errorf("template: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// renderOne executes a --format template on one object (inspect -f).
func renderOne(w io.Writer, format string, v any) error {
	t, err := parseTemplate(format)
	if err != nil {
		return err
	}
	return execLine(w, t, v)
}

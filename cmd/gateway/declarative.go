package main

// The declarative subcommands work on the store directly, offline or next
// to running gateways:
//
//	gateway export [--at SEQ] [-o yaml|json]               print the configuration (tenants and routes, no keys)
//	gateway apply -f FILE [--dry-run] [--actor NAME]       make the configuration equal FILE (yaml or json)
//
// apply validates FILE with the admin API's rules, plans against the state
// at the store's head, prints {"changes", "appliedSeq", "apiKeys"} (the keys
// of created tenants, shown only this once) and, unless --dry-run, appends
// one event per change in one append. Running gateways are not called: they
// pick the events up at their next head check (HEAD_CHECK_INTERVAL), and the
// relay of any running instance publishes them on the bus.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tenantgate/gateway/admin"
	"github.com/tenantgate/gateway/admin/declarative"
)

// exportCommand prints the configuration at the head or at --at SEQ.
func exportCommand(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	at := fs.Int64("at", -1, "export the state right after event SEQ (default: the head)")
	format := fs.String("o", "yaml", "output format: yaml or json")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: export: %v", errUsage, err)
	}
	if fs.NArg() > 0 || *at < -1 || (*format != "yaml" && *format != "json") {
		return fmt.Errorf("%w: export takes only [--at SEQ] [-o yaml|json]", errUsage)
	}
	store, err := openMigratedStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	snap, err := declarative.Replay(ctx, store, *at)
	if err != nil {
		return err
	}
	doc := declarative.Export(snap)
	if *format == "json" {
		return declarative.WriteJSON(stdout, doc)
	}
	out, err := declarative.MarshalYAML(doc)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

// applyCommand makes the configuration equal a document file.
func applyCommand(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	file := fs.String("f", "", "the document to apply, yaml or json (as written by gateway export)")
	dryRun := fs.Bool("dry-run", false, "print the changes without appending them")
	actor := fs.String("actor", "cli", "recorded as the actor of the events (at most 200 characters)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: apply: %v", errUsage, err)
	}
	if fs.NArg() > 0 || *file == "" {
		return fmt.Errorf("%w: apply takes -f FILE [--dry-run] [--actor NAME]", errUsage)
	}
	if *actor == "" || utf8.RuneCountInString(*actor) > 200 || !utf8.ValidString(*actor) || strings.ContainsFunc(*actor, unicode.IsControl) {
		return fmt.Errorf("%w: --actor must be 1 to 200 characters of text", errUsage)
	}
	limitApplyMemory()
	data, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	doc, err := decodeDocumentFile(data)
	if err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	store, err := openMigratedStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	res, err := declarative.ApplyToStore(ctx, store, doc, declarative.ApplyOptions{Actor: *actor, DryRun: *dryRun})
	if err != nil {
		return documentError(*file, err)
	}
	return declarative.WriteResult(stdout, res)
}

// applyMemoryLimit is the heap gateway apply keeps to (unless GOMEMLIMIT
// says otherwise). Each pass over a large document (parse, validate, plan,
// events) leaves the previous one's values behind at once; with Go's default
// pacing the heap grew to twice what was live, about 1 GiB for 100,000
// routes. A one-shot command may trade some collector time for that.
const applyMemoryLimit = 320 << 20

func limitApplyMemory() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(applyMemoryLimit)
	}
}

// decodeDocumentFile reads a yaml or json document and validates it with
// the admin API's rules.
func decodeDocumentFile(data []byte) (declarative.Document, error) {
	raw, err := declarative.ToJSON(data)
	if err != nil {
		return declarative.Document{}, err
	}
	doc, err := admin.DecodeDocument(raw)
	if err != nil {
		return declarative.Document{}, documentError("", err)
	}
	return doc, nil
}

// documentError lists a document's problems one per line.
func documentError(file string, err error) error {
	var lines []string
	var ae *admin.Error
	var inv *declarative.InvalidError
	switch {
	case errors.As(err, &ae) && len(ae.Details) > 0:
		for _, d := range ae.Details {
			lines = append(lines, "  "+d.Field+": "+d.Message)
		}
	case errors.As(err, &ae):
		lines = append(lines, "  "+ae.Message)
	case errors.As(err, &inv):
		for _, p := range inv.Problems {
			lines = append(lines, "  "+p.Field+": "+p.Message)
		}
	default:
		return err
	}
	msg := "the document is invalid:\n" + strings.Join(lines, "\n")
	if file != "" {
		msg = file + ": " + msg
	}
	return errors.New(msg)
}

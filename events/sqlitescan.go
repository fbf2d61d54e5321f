package events

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// SQLite hands each text column of a row to database/sql as a string of its
// own, copied twice and boxed on the way: three allocations a column, eight
// text columns an event. So a read on SQLite selects one blob a row
// instead, the text columns' byte lengths then their bytes (one printf in
// SQL), and cuts it up here: one copy and a few allocations a row. A row
// whose blob does not add up (printf's %s stops at a NUL byte, which a Go
// string may hold) is read again column by column.

// packedColumns are the text columns a SQLite read packs, in order.
var packedColumns = []string{"id", "type", "aggregate_type", "aggregate_id", "tenant_id", "actor", "actor_key_id", "occurred_at", "data"}

// sqliteEventColumns selects seq, aggregate_version and the packed blob:
// "len,len,...;" (every packed column's length in bytes) then the columns.
var sqliteEventColumns = func() string {
	lens := make([]string, len(packedColumns))
	for i, c := range packedColumns {
		lens[i] = "octet_length(" + c + ")"
	}
	format := strings.Repeat("%d,", len(lens)-1) + "%d;" + strings.Repeat("%s", len(packedColumns))
	return "seq, aggregate_version, CAST(printf('" + format + "', " +
		strings.Join(lens, ", ") + ", " + strings.Join(packedColumns, ", ") + ") AS BLOB)"
}()

// errUnpacked marks a packed row that does not add up.
var errUnpacked = errors.New("events: packed row does not add up")

// readSQLite reads the events of sel, a select of the events table without
// columns, through packed rows.
func readSQLite(ctx context.Context, conn bun.Conn, sel *bun.SelectQuery, sizeHint int) ([]Envelope, error) {
	rows, err := sel.ColumnExpr(sqliteEventColumns).Rows(ctx)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]Envelope, 0, min(max(sizeHint, 0), 5000))
	var (
		raw    sql.RawBytes
		reread []int // indexes in out of rows to read column by column
	)
	for rows.Next() {
		var ev Envelope
		if err := rows.Scan(&ev.Seq, &ev.AggregateVersion, &raw); err != nil {
			return nil, err
		}
		if err := unpackEvent(&ev, raw); errors.Is(err, errUnpacked) {
			reread = append(reread, len(out))
		} else if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if err := rows.Close(); err != nil { // before the connection reads again
		return nil, err
	}
	for _, i := range reread {
		evs, err := readColumns(ctx, conn.NewSelect().TableExpr("events").Where("seq = ?", out[i].Seq), 1)
		if err != nil {
			return nil, err
		}
		if len(evs) != 1 {
			return nil, errors.New("events: read: a row went missing")
		}
		out[i] = evs[0]
	}
	return out, nil
}

// readColumns reads the events of sel column by column.
func readColumns(ctx context.Context, sel *bun.SelectQuery, sizeHint int) ([]Envelope, error) {
	rows, err := sel.Column(eventColumns...).Rows(ctx)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanEvents(rows, sizeHint)
}

// unpackEvent fills ev's text fields from a packed blob. The small fields
// share one string; the aggregate id gets its own, since a snapshot keeps
// it as long as the aggregate lives, and data its own bytes.
func unpackEvent(ev *Envelope, raw []byte) error {
	var lens [9]int
	k, n, i := 0, 0, 0
	for ; i < len(raw) && k < len(lens); i++ {
		switch c := raw[i]; {
		case c >= '0' && c <= '9' && n <= len(raw):
			n = n*10 + int(c-'0')
		case c == ',' && k < len(lens)-1, c == ';' && k == len(lens)-1:
			lens[k], n, k = n, 0, k+1
		default:
			return errUnpacked
		}
	}
	body, total := raw[i:], 0
	for _, n := range lens {
		total += n
	}
	if k < len(lens) || total != len(body) {
		return errUnpacked
	}
	dataStart := total - lens[8]
	small := string(body[:dataStart])
	at := 0
	field := func(i int) string {
		at += lens[i]
		return small[at-lens[i] : at]
	}
	ev.ID, ev.Type, ev.AggregateType = field(0), Type(field(1)), AggregateType(field(2))
	ev.AggregateID = strings.Clone(field(3))
	ev.TenantID, ev.Actor, ev.ActorKeyID = field(4), field(5), field(6)
	var t dbTime
	if err := t.parse(field(7)); err != nil {
		return err
	}
	ev.OccurredAt = time.Time(t)
	ev.Data = append([]byte(nil), body[dataStart:]...)
	return nil
}

package events

import (
	"bufio"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/pgdriver"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Store kinds.
const (
	KindPostgres = "postgres"
	KindSQLite   = "sqlite"
)

// appendLockKey is the transaction-scoped PostgreSQL advisory lock that
// serializes appends across every instance sharing the database.
const appendLockKey int64 = 0x7467_6170_7065_6e64 // "tgappend"

// Bounds of one store call, on top of the caller's context, so that an
// unreachable database answers ErrUnavailable quickly instead of hanging.
// A Read may run longer than the others once it has a connection, and an
// append gets perEventWrite more for each event, so a large batch (an apply
// of 100,000 routes) is not cut off as if the database were gone.
const (
	writeTimeout  = 5 * time.Second
	readTimeout   = 30 * time.Second
	dialTimeout   = 3 * time.Second
	perEventWrite = 100 * time.Microsecond
	pingTimeout   = time.Second
)

// AppendTimeout is how long an append of n events may take before it fails
// with ErrTimeout; callers that bound an append themselves allow as much.
func AppendTimeout(n int) time.Duration { return writeTimeout + time.Duration(n)*perEventWrite }

// Appends of at least copyThreshold events go through COPY on PostgreSQL;
// SQLite and smaller PostgreSQL appends insert insertChunk rows a statement.
const (
	copyThreshold = 256
	insertChunk   = 500
)

// timeLayout is how SQLite stores occurred_at: UTC, fixed microseconds, so the
// text sorts like the time.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// SQLStore is the Store on PostgreSQL or SQLite through Bun. The schema comes
// from the migrations package; the openers do not migrate.
//
// OccurredAt is truncated to microseconds and converted to UTC before it is
// written (PostgreSQL's timestamptz precision), so both databases return
// exactly the instant Append returned. Data must be valid JSON; PostgreSQL
// stores it as jsonb, which may reorder object keys and drop insignificant
// white space, so compare decoded values, not bytes. Empty Data is stored as
// JSON null.
type SQLStore struct {
	db   *bun.DB
	kind string
	// writeMu makes this process a single SQLite writer, so appends queue here
	// instead of spinning on SQLite's busy handler; BEGIN IMMEDIATE still
	// serializes against other processes.
	writeMu sync.Mutex
	// connector dials PostgreSQL outside the pool (nil for SQLite).
	connector driver.Connector
}

var _ Store = (*SQLStore)(nil)

// OpenPostgres connects to PostgreSQL at dsn (a postgres:// URL; dial_timeout,
// read_timeout and the other pgdriver parameters may be set in it) and checks
// that it answers.
func OpenPostgres(ctx context.Context, dsn string) (*SQLStore, error) {
	if dsn == "" {
		return nil, errors.New("events: empty PostgreSQL DSN")
	}
	if _, err := url.Parse(dsn); err != nil {
		return nil, fmt.Errorf("events: PostgreSQL DSN: %w", err)
	}
	// The dial timeout goes first so that one given in the DSN wins.
	connector := pgdriver.NewConnector(pgdriver.WithDialTimeout(dialTimeout), pgdriver.WithDSN(dsn))
	sqldb := sql.OpenDB(connector)
	sqldb.SetMaxOpenConns(16)
	sqldb.SetMaxIdleConns(4)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	s := &SQLStore{db: bun.NewDB(sqldb, pgdialect.New()), kind: KindPostgres, connector: connector}
	if err := s.ping(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// OpenSQLite opens (creating it and its directory if needed) the SQLite
// database at path, in WAL mode with a busy timeout, through the pure-Go
// driver.
func OpenSQLite(ctx context.Context, path string) (*SQLStore, error) {
	if path == "" {
		return nil, errors.New("events: empty SQLite path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("events: SQLite path %q: must not contain '?' or '#'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("events: SQLite directory: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	// With WAL, NORMAL loses no committed transaction on a process crash, only
	// possibly the last ones on a power loss; FULL would fsync every append.
	q.Add("_pragma", "synchronous(NORMAL)")
	// Every transaction (appends) takes the write lock up front, so the head
	// read inside it cannot go stale.
	q.Set("_txlock", "immediate")
	sqldb, err := sql.Open("sqlite", "file:"+filepath.ToSlash(path)+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("events: open SQLite: %w", err)
	}
	sqldb.SetMaxOpenConns(8)
	s := &SQLStore{db: bun.NewDB(sqldb, sqlitedialect.New()), kind: KindSQLite}
	if err := s.ping(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func (s *SQLStore) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := s.db.PingContext(ctx); err != nil {
		return s.wrap(ctx, fmt.Errorf("events: %s: %w", s.kind, err))
	}
	return nil
}

// DB returns the underlying database, for migrations.
func (s *SQLStore) DB() *bun.DB { return s.db }

// Kind returns "postgres" or "sqlite".
func (s *SQLStore) Kind() string { return s.kind }

// Close closes the database.
func (s *SQLStore) Close() error { return s.db.Close() }

// eventRow is the events table.
type eventRow struct {
	bun.BaseModel `bun:"table:events"`

	Seq              int64           `bun:"seq,pk"`
	ID               string          `bun:"id"`
	Type             string          `bun:"type"`
	AggregateType    string          `bun:"aggregate_type"`
	AggregateID      string          `bun:"aggregate_id"`
	AggregateVersion int64           `bun:"aggregate_version"`
	TenantID         string          `bun:"tenant_id"`
	Actor            string          `bun:"actor"`
	ActorKeyID       string          `bun:"actor_key_id"`
	OccurredAt       dbTime          `bun:"occurred_at"`
	Data             json.RawMessage `bun:"data"`
}

// dbTime writes a time as RFC 3339 text, which PostgreSQL casts to
// timestamptz and SQLite keeps as is, and reads either back.
type dbTime time.Time

func (t dbTime) Value() (driver.Value, error) {
	return time.Time(t).UTC().Format(timeLayout), nil
}

func (t *dbTime) Scan(src any) error {
	switch v := src.(type) {
	case time.Time:
		*t = dbTime(v.UTC())
		return nil
	case string:
		return t.parse(v)
	case []byte:
		return t.parse(string(v))
	default:
		return fmt.Errorf("events: occurred_at: unexpected %T", src)
	}
}

func (t *dbTime) parse(s string) error {
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("events: occurred_at: %w", err)
	}
	*t = dbTime(v.UTC())
	return nil
}

// NormalizeTime is what the store does to OccurredAt: UTC, truncated to
// microseconds.
func NormalizeTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// Append commits req's events in one transaction. Appends are serialized (a
// transaction-scoped advisory lock on PostgreSQL, the write lock on SQLite),
// so seq is global, gap-free and in commit order.
func (s *SQLStore) Append(ctx context.Context, req AppendRequest) ([]Envelope, error) {
	if len(req.Events) == 0 {
		return nil, nil
	}
	out := make([]Envelope, len(req.Events))
	rows := make([]eventRow, len(req.Events))
	for i, ev := range req.Events {
		if ev.ID == "" || ev.Type == "" || ev.AggregateID == "" {
			return nil, fmt.Errorf("events: append: event %d: id, type and aggregateId are required", i)
		}
		data := ev.Data
		if len(data) == 0 {
			data = json.RawMessage("null")
		} else if !json.Valid(data) {
			return nil, fmt.Errorf("events: append: event %d (%s): data is not valid JSON", i, ev.ID)
		}
		ev.OccurredAt = NormalizeTime(ev.OccurredAt)
		ev.Data = data
		out[i] = ev
		rows[i] = eventRow{
			ID:               ev.ID,
			Type:             string(ev.Type),
			AggregateType:    string(ev.AggregateType),
			AggregateID:      ev.AggregateID,
			AggregateVersion: ev.AggregateVersion,
			TenantID:         ev.TenantID,
			Actor:            ev.Actor,
			ActorKeyID:       ev.ActorKeyID,
			OccurredAt:       dbTime(ev.OccurredAt),
			Data:             data,
		}
	}

	if s.kind == KindSQLite {
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
	}
	ctx, cancel := context.WithTimeout(ctx, AppendTimeout(len(rows)))
	defer cancel()
	var err error
	if s.kind == KindPostgres && len(rows) >= copyThreshold {
		err = s.appendCopy(ctx, req.ExpectedHead, rows)
	} else {
		err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if s.kind == KindPostgres {
				if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", appendLockKey); err != nil {
					return err
				}
			}
			if err := numberRows(ctx, tx, req.ExpectedHead, rows); err != nil {
				return err
			}
			for i := 0; i < len(rows); i += insertChunk {
				chunk := rows[i:min(i+insertChunk, len(rows))]
				if _, err := tx.NewInsert().Model(&chunk).Exec(ctx); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		return nil, s.wrap(ctx, fmt.Errorf("events: append: %w", err))
	}
	for i := range rows {
		out[i].Seq = rows[i].Seq
	}
	return out, nil
}

// numberRows checks the head inside the append's transaction and gives
// rows the seqs after it.
func numberRows(ctx context.Context, db bun.IDB, expectedHead int64, rows []eventRow) error {
	head, err := head(ctx, db)
	if err != nil {
		return err
	}
	if expectedHead != AnyHead && head != expectedHead {
		return fmt.Errorf("%w: expected %d, is %d", ErrHeadMoved, expectedHead, head)
	}
	for i := range rows {
		rows[i].Seq = head + 1 + int64(i)
	}
	return nil
}

// appendCopy is Append on PostgreSQL through COPY, one round trip for the
// rows whatever their number, in a transaction of its own on one
// connection: BEGIN, the append lock, the head check, COPY, COMMIT.
func (s *SQLStore) appendCopy(ctx context.Context, expectedHead int64, rows []eventRow) (err error) {
	conn, err := s.conn(ctx)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			// A connection left mid-COPY or mid-transaction is not reused.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
			if _, rerr := conn.ExecContext(rctx, "ROLLBACK"); rerr != nil {
				_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			}
			cancel()
		}
		_ = conn.Close()
	}()
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", appendLockKey); err != nil {
		return err
	}
	if err := numberRows(ctx, conn, expectedHead, rows); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeCopyRows(pw, rows)) }()
	_, err = pgdriver.CopyFrom(ctx, conn, pr,
		"COPY events (seq, id, type, aggregate_type, aggregate_id, aggregate_version, tenant_id, actor, actor_key_id, occurred_at, data) FROM STDIN")
	_ = pr.Close() // ends the writer if COPY stopped early
	if err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return err
	}
	committed = true
	return nil
}

// writeCopyRows writes rows in COPY's text format: tab-separated columns,
// backslash escapes for backslash, tab, newline and carriage return.
func writeCopyRows(w io.Writer, rows []eventRow) error {
	// A bufio.Writer's error sticks: the checked write per row and Flush
	// return the first one.
	bw := bufio.NewWriterSize(w, 256<<10)
	var num []byte
	field := func(v string) {
		for i := 0; i < len(v); i++ {
			switch c := v[i]; c {
			case '\\':
				_, _ = bw.WriteString(`\\`)
			case '\t':
				_, _ = bw.WriteString(`\t`)
			case '\n':
				_, _ = bw.WriteString(`\n`)
			case '\r':
				_, _ = bw.WriteString(`\r`)
			default:
				_ = bw.WriteByte(c)
			}
		}
	}
	for i := range rows {
		r := &rows[i]
		num = strconv.AppendInt(num[:0], r.Seq, 10)
		_, _ = bw.Write(num)
		for _, v := range []string{r.ID, r.Type, r.AggregateType, r.AggregateID} {
			_ = bw.WriteByte('\t')
			field(v)
		}
		_ = bw.WriteByte('\t')
		num = strconv.AppendInt(num[:0], r.AggregateVersion, 10)
		_, _ = bw.Write(num)
		for _, v := range []string{r.TenantID, r.Actor, r.ActorKeyID, time.Time(r.OccurredAt).UTC().Format(timeLayout)} {
			_ = bw.WriteByte('\t')
			field(v)
		}
		_ = bw.WriteByte('\t')
		field(string(r.Data))
		if err := bw.WriteByte('\n'); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Read returns the events matching q in seq order.
func (s *SQLStore) Read(ctx context.Context, q Query) ([]Envelope, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	// Getting a connection is bounded like a write, so an unreachable
	// database fails as fast here as in Append.
	conn, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	sel := conn.NewSelect().TableExpr("events").Where("seq > ?", q.After).OrderExpr("seq ASC")
	if q.Until > 0 {
		sel = sel.Where("seq <= ?", q.Until)
	}
	if q.AggregateType != "" {
		sel = sel.Where("aggregate_type = ?", string(q.AggregateType))
	}
	if q.AggregateID != "" {
		sel = sel.Where("aggregate_id = ?", q.AggregateID)
	}
	if q.TenantID != "" {
		sel = sel.Where("tenant_id = ?", q.TenantID)
	}
	if q.TenantIDs != nil {
		if len(q.TenantIDs) == 0 {
			return []Envelope{}, nil
		}
		sel = sel.Where("tenant_id IN (?)", bun.List(q.TenantIDs))
	}
	if q.Limit > 0 {
		sel = sel.Limit(q.Limit)
	}
	var out []Envelope
	if s.kind == KindSQLite {
		out, err = readSQLite(ctx, conn, sel, q.Limit)
	} else {
		out, err = readColumns(ctx, sel, q.Limit)
	}
	if err != nil {
		return nil, s.wrap(ctx, fmt.Errorf("events: read: %w", err))
	}
	return out, nil
}

// eventColumns are the events table's columns in the order scanEvents reads.
var eventColumns = []string{"seq", "id", "type", "aggregate_type", "aggregate_id", "aggregate_version", "tenant_id", "actor", "actor_key_id", "occurred_at", "data"}

// scanEvents reads rows of eventColumns into envelopes, each column into its
// field directly: Bun's model scan looked every column up by reflection, a
// sixth of a replay's time.
func scanEvents(rows *sql.Rows, sizeHint int) ([]Envelope, error) {
	out := make([]Envelope, 0, min(max(sizeHint, 0), 5000))
	for rows.Next() {
		var (
			ev           Envelope
			typ, aggType string
			at           dbTime
			data         []byte
		)
		if err := rows.Scan(&ev.Seq, &ev.ID, &typ, &aggType, &ev.AggregateID, &ev.AggregateVersion,
			&ev.TenantID, &ev.Actor, &ev.ActorKeyID, &at, &data); err != nil {
			return nil, err
		}
		ev.Type, ev.AggregateType, ev.OccurredAt, ev.Data = Type(typ), AggregateType(aggType), time.Time(at), data
		out = append(out, ev)
	}
	return out, rows.Err()
}

// conn takes a connection from the pool within writeTimeout.
func (s *SQLStore) conn(ctx context.Context) (bun.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return conn, s.wrap(ctx, fmt.Errorf("events: read: %w", err))
	}
	return conn, nil
}

// Head returns the highest committed seq, 0 for an empty log.
func (s *SQLStore) Head(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	h, err := head(ctx, s.db)
	if err != nil {
		return 0, s.wrap(ctx, fmt.Errorf("events: head: %w", err))
	}
	return h, nil
}

func head(ctx context.Context, db bun.IDB) (int64, error) {
	var h int64
	err := db.NewSelect().TableExpr("events").ColumnExpr("COALESCE(MAX(seq), 0)").Scan(ctx, &h)
	return h, err
}

// wrap adds ErrVersionConflict, ErrTimeout or ErrUnavailable to err where
// they apply. A call that ran past its deadline is a timeout when the
// database still answers a ping, and unavailable when it does not.
func (s *SQLStore) wrap(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, ErrHeadMoved), errors.Is(err, ErrVersionConflict):
		return err
	case isVersionConflict(err):
		return fmt.Errorf("%w: %w", ErrVersionConflict, err)
	case pastDeadline(ctx) && s.answers():
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case isUnavailable(ctx, err):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// pastDeadline reports whether ctx's deadline has passed. The driver's
// socket deadline is the context's, so its i/o timeout can come a moment
// before ctx.Err() says so.
func pastDeadline(ctx context.Context) bool {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// answers reports whether the database answers within pingTimeout. On
// PostgreSQL it dials a connection of its own rather than draw one from the
// pool, which may hold the connection the timed-out call left broken.
func (s *SQLStore) answers() bool {
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	if s.connector == nil {
		return s.db.PingContext(ctx) == nil
	}
	cn, err := s.connector.Connect(ctx)
	if err != nil {
		return false
	}
	defer cn.Close()
	if p, ok := cn.(driver.Pinger); ok {
		return p.Ping(ctx) == nil
	}
	return true
}

const versionConstraint = "events_aggregate_version_key"

func isVersionConflict(err error) bool {
	var pgErr pgdriver.Error
	if errors.As(err, &pgErr) {
		return pgErr.Field('C') == "23505" && pgErr.Field('n') == versionConstraint
	}
	var sqlErr *sqlite.Error
	if errors.As(err, &sqlErr) {
		// SQLite names the columns, not the constraint.
		return sqlErr.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE &&
			strings.Contains(sqlErr.Error(), "aggregate_version")
	}
	return false
}

// isUnavailable reports whether err means the database cannot be reached (or
// cannot serve now), as opposed to a request it rejected. ctx is the call's
// own context: a deadline it hit is a database too slow to answer.
func isUnavailable(ctx context.Context, err error) bool {
	var pgErr pgdriver.Error
	if errors.As(err, &pgErr) {
		code := pgErr.Field('C')
		// 08: connection exception; 57P0x: shutting down / starting up;
		// 53300: too many connections.
		return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "57P") || code == "53300"
	}
	var sqlErr *sqlite.Error
	if errors.As(err, &sqlErr) {
		switch sqlErr.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR,
			sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY:
			return true
		}
		return false
	}
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, driver.ErrBadConn),
		errors.Is(err, sql.ErrConnDone), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.As(err, &netErr):
		return true
	case errors.Is(err, context.Canceled):
		// The caller gave up: not the database's fault, unless our own
		// deadline fired first.
		return ctx.Err() == context.DeadlineExceeded
	}
	return false
}

package projections

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/tenantgate/gateway/events"
)

// A checkpoint is a snapshot encoded for the store: the state at a seq, so
// that start-up and history queries apply only the events after the nearest
// one instead of the whole log. It is a cache, never trusted blindly: it
// names the Apply version that made it (another version's are not used),
// and loading one rebuilds the snapshot from it and compares the state hash
// it recomputes with the one stored; a checkpoint that fails is skipped with
// a log line and the next older one (or the log from zero) is used.

// applyVersion names Apply's semantics and the checkpoint encoding. Bump it
// whenever either changes, so that checkpoints written by older builds are no
// longer used (they would give another state than replaying the events).
const applyVersion = 2 // 2: named admin keys

// ApplyVersion is what checkpoints are tagged with: a digest of applyVersion
// and of the Go layout of the checkpointed model (field names and types,
// recursively), so that a field added to a tenant or a route retires the old
// checkpoints even if nobody remembered to bump applyVersion.
var ApplyVersion = computeApplyVersion()

func computeApplyVersion() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tenantgate apply v%d\n", applyVersion)
	seen := map[reflect.Type]bool{}
	for _, v := range []any{Tenant{}, Route{}, AdminKey{}} {
		describeType(&b, reflect.TypeOf(v), seen)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:8])
}

func describeType(b *strings.Builder, t reflect.Type, seen map[reflect.Type]bool) {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		fmt.Fprintf(b, "%s[", t.Kind())
		describeType(b, t.Elem(), seen)
		b.WriteString("]")
	case reflect.Map:
		b.WriteString("map[")
		describeType(b, t.Key(), seen)
		describeType(b, t.Elem(), seen)
		b.WriteString("]")
	case reflect.Struct:
		fmt.Fprintf(b, "%s.%s{", t.PkgPath(), t.Name())
		if !seen[t] && t.PkgPath() != "time" && t.PkgPath() != "regexp" {
			seen[t] = true
			for i := range t.NumField() {
				f := t.Field(i)
				fmt.Fprintf(b, "%s:", f.Name)
				describeType(b, f.Type, seen)
				b.WriteString(";")
			}
		}
		b.WriteString("}")
	default:
		b.WriteString(t.String())
	}
}

// checkpointMagic starts every encoded checkpoint (after decompression).
const checkpointMagic = "tenantgate checkpoint"

// section is one aggregate kind of the snapshot as a checkpoint holds it:
// a count, then one record (its canonical encoding) per aggregate. Adding an
// aggregate to the snapshot is adding a section here (and bumping
// applyVersion). They are written and read in this order: a route needs its
// tenant.
type section struct {
	name  string
	count func(s *Snapshot) int
	// each calls rec with the encoding of every aggregate, ordered by id.
	each func(s *Snapshot, rec func(encode func(*encoder)) error) error
	// decode reads one record: pure, so it runs beside the loading.
	decode func(d *decoder) (decoded, error)
	// put files a decoded record in the edit, in record order.
	put func(b *edit, v decoded) error
	// begin, if set, prepares the edit for the section's n records.
	begin func(b *edit, n int)
}

// decoded is one record ready to be filed, its digests computed.
type decoded struct {
	tenant   *Tenant
	route    *Route
	adminKey *AdminKey
	dg       digests
	key      any // an index key
	id       string
}

var sections = []section{
	{
		name:  "tenants",
		count: func(s *Snapshot) int { return s.tenants.len() },
		each: func(s *Snapshot, rec func(func(*encoder)) error) error {
			for _, t := range s.Tenants() {
				if err := rec(func(e *encoder) { e.tenant(t) }); err != nil {
					return err
				}
			}
			return nil
		},
		begin: func(b *edit, n int) {
			b.s.tenants = presized[string, tenantEntry, stringHasher](b.tok, n)
		},
		decode: func(d *decoder) (decoded, error) {
			rec := d.b
			t, parts := d.tenant()
			if d.err != nil {
				return decoded{}, d.err
			}
			// Digests of the record itself: it is the tenant's encoding.
			return decoded{tenant: t, dg: tenantRecordDigests(rec, parts)}, nil
		},
		put: func(b *edit, v decoded) error {
			// Only the tenants: the index sections after this one hold the
			// indexes. A map that does not grow was given an id twice.
			n := b.s.tenants.len()
			b.fileTenant(v.tenant, v.dg)
			if b.s.tenants.len() == n {
				return fmt.Errorf("tenant %q twice", v.tenant.ID)
			}
			return nil
		},
	},
	{
		name:  "routes",
		count: func(s *Snapshot) int { return s.routes.len() },
		each: func(s *Snapshot, rec func(func(*encoder)) error) error {
			for _, r := range s.Routes() {
				if err := rec(func(e *encoder) { e.route(r) }); err != nil {
					return err
				}
			}
			return nil
		},
		begin: func(b *edit, n int) {
			b.s.routes = presized[string, routeEntry, stringHasher](b.tok, n)
		},
		decode: func(d *decoder) (decoded, error) {
			rec := d.b
			r, id, spec := d.route()
			if d.err != nil {
				return decoded{}, d.err
			}
			compile(r, nil)
			return decoded{route: r, dg: routeRecordDigests(rec, id, spec)}, nil
		},
		put: func(b *edit, v decoded) error {
			r := v.route
			t, ok := b.s.tenants.get(r.TenantID)
			if !ok {
				return fmt.Errorf("route %q of a tenant that is not there", r.ID)
			}
			r.TenantID = t.t.ID // one copy of the id string per tenant
			n := b.s.routes.len()
			b.fileRoute(r, v.dg) // the tables after all routes
			if b.s.routes.len() == n {
				return fmt.Errorf("route %q twice", r.ID)
			}
			return nil
		},
	},
	indexSection("tenantNames", func(s *Snapshot) **strMap[*Tenant] { return &s.byName },
		func(e *encoder, k string) { e.str(k) }, func(d *decoder) string { return d.str() }, strings.Compare),
	indexSection("tenantKeys", func(s *Snapshot) **digestMap[*Tenant] { return &s.byKey },
		func(e *encoder, k [32]byte) { e.b = append(e.b, k[:]...) },
		func(d *decoder) (k [32]byte) { copy(k[:], d.bytes(32)); return k },
		func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) }),
	adminKeySection,
}

// The tenant indexes by name and by key digest are written as they are, not
// rebuilt from the tenants: with two live tenants of one name (which only
// hand-made events give), which one the index names depends on the order of
// the events, and a checkpoint must give exactly the state replay gives.
func indexSection[K comparable, H hasher[K]](name string, index func(*Snapshot) **pmap[K, *Tenant, H], encodeKey func(*encoder, K), decodeKey func(*decoder) K, less func(a, b K) int) section {
	return section{
		name:  name,
		count: func(s *Snapshot) int { return (*index(s)).len() },
		each: func(s *Snapshot, rec func(func(*encoder)) error) error {
			type entry struct {
				k  K
				id string
			}
			var all []entry
			(*index(s)).all(func(k K, t *Tenant) bool {
				all = append(all, entry{k, t.ID})
				return true
			})
			slices.SortFunc(all, func(a, b entry) int { return less(a.k, b.k) })
			for _, e := range all {
				if err := rec(func(enc *encoder) { encodeKey(enc, e.k); enc.str(e.id) }); err != nil {
					return err
				}
			}
			return nil
		},
		begin: func(b *edit, n int) { *index(b.s) = presized[K, *Tenant, H](b.tok, n) },
		decode: func(d *decoder) (decoded, error) {
			k, id := decodeKey(d), d.str()
			return decoded{key: k, id: id}, d.err
		},
		put: func(b *edit, v decoded) error {
			e, ok := b.s.tenants.get(v.id)
			if !ok {
				return fmt.Errorf("%s: tenant %q is not there", name, v.id)
			}
			*index(b.s) = (*index(b.s)).set(b.tok, v.key.(K), e.t)
			return nil
		},
	}
}

// encoders compress with one goroutine: checkpoints are written in the
// background and must not take both cores from the request path.
var zstdOptions = []zstd.EOption{zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault)}

// EncodeCheckpoint encodes s as a checkpoint of this build's ApplyVersion.
// The encoding is deterministic: instances at the same seq write the same
// bytes.
func EncodeCheckpoint(s *Snapshot) (events.Checkpoint, error) {
	var out bytes.Buffer
	zw, err := zstd.NewWriter(&out, zstdOptions...)
	if err != nil {
		return events.Checkpoint{}, err
	}
	if err := writeCheckpoint(zw, s); err != nil {
		return events.Checkpoint{}, err
	}
	if err := zw.Close(); err != nil {
		return events.Checkpoint{}, err
	}
	return events.Checkpoint{Seq: s.seq, ApplyVersion: ApplyVersion, StateHash: s.StateHash(), Data: out.Bytes(), CreatedAt: time.Now()}, nil
}

// writeCheckpoint writes the uncompressed encoding of s to out.
func writeCheckpoint(out io.Writer, s *Snapshot) error {
	w := bufio.NewWriterSize(out, 64<<10)
	var head encoder
	head.str(checkpointMagic)
	head.int(s.seq)
	head.str(s.lastID)
	if _, err := w.Write(head.b); err != nil {
		return err
	}
	sc := getScratch()
	defer putScratch(sc)
	var num [8]byte
	writeInt := func(v int64) error {
		binary.BigEndian.PutUint64(num[:], uint64(v))
		_, err := w.Write(num[:])
		return err
	}
	for _, sec := range sections {
		head.b = head.b[:0]
		head.str(sec.name)
		head.int(int64(sec.count(s)))
		if _, err := w.Write(head.b); err != nil {
			return err
		}
		err := sec.each(s, func(encode func(*encoder)) error {
			sc.enc.b = sc.enc.b[:0]
			encode(&sc.enc)
			if err := writeInt(int64(len(sc.enc.b))); err != nil {
				return err
			}
			_, err := w.Write(sc.enc.b)
			return err
		})
		if err != nil {
			return err
		}
	}
	head.b = head.b[:0]
	head.str("") // the end
	if _, err := w.Write(head.b); err != nil {
		return err
	}
	return w.Flush()
}

// CheckpointHolds reports whether cp holds exactly s, as this build encodes
// it: its version, seq and state hash are s's, and its data decompresses to
// the bytes EncodeCheckpoint writes for s. It is how `replay --verify`
// checks a checkpoint against the state the events give, at the cost of
// encoding s, without decoding and rebuilding the checkpoint's state; a
// checkpoint it refuses may still be one that DecodeCheckpoint loads (one
// written by an older encoder of the same Apply version), so the caller
// decodes those to say what they hold.
func CheckpointHolds(cp events.Checkpoint, s *Snapshot) bool {
	if cp.ApplyVersion != ApplyVersion || cp.Seq != s.seq || cp.StateHash != s.StateHash() {
		return false
	}
	zr, err := zstd.NewReader(bytes.NewReader(cp.Data))
	if err != nil {
		return false
	}
	defer zr.Close()
	cw := &comparingWriter{r: zr}
	if err := writeCheckpoint(cw, s); err != nil {
		return false
	}
	var extra [1]byte
	n, err := zr.Read(extra[:])
	return n == 0 && errors.Is(err, io.EOF)
}

// comparingWriter compares what is written with what r reads, failing the
// write at the first difference.
type comparingWriter struct {
	r   io.Reader
	buf []byte
}

var errDiffers = errors.New("projections: checkpoint data differs")

func (c *comparingWriter) Write(p []byte) (int, error) {
	if cap(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	got := c.buf[:len(p)]
	if _, err := io.ReadFull(c.r, got); err != nil || !bytes.Equal(got, p) {
		return 0, errDiffers
	}
	return len(p), nil
}

// ErrBadCheckpoint: a checkpoint that must not be used (another Apply
// version, corrupt data, or a state hash that does not match).
var ErrBadCheckpoint = errors.New("projections: unusable checkpoint")

// maxRecord bounds one aggregate's encoding, so a corrupt length cannot make
// a huge allocation (a route is a few hundred bytes; a fallback body with
// headers a few KiB).
const maxRecord = 16 << 20

// DecodeCheckpoint rebuilds the snapshot a checkpoint holds and verifies it:
// the version must be this build's, the data must decode completely, and the
// state hash recomputed from the rebuilt snapshot must equal the stored one.
// Any failure wraps ErrBadCheckpoint.
//
// Reading the records runs in a goroutine, decoding them (and their
// digests) on one worker per core, beside the goroutine filing them into
// the snapshot in order: a load costs about the slowest of the three.
func DecodeCheckpoint(cp events.Checkpoint) (*Snapshot, error) { return decodeCheckpoint(cp, true) }

// decodeCheckpoint is DecodeCheckpoint; unless forServing, the routes are
// left unfiled in tables (a history query's state: a third of the load).
func decodeCheckpoint(cp events.Checkpoint, forServing bool) (*Snapshot, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: seq %d: %s", ErrBadCheckpoint, cp.Seq, fmt.Sprintf(format, args...))
	}
	if cp.ApplyVersion != ApplyVersion {
		return nil, bad("written by Apply version %s, this build is %s", cp.ApplyVersion, ApplyVersion)
	}
	zr, err := zstd.NewReader(bytes.NewReader(cp.Data))
	if err != nil {
		return nil, bad("%v", err)
	}
	defer zr.Close()
	r := &recordReader{r: bufio.NewReaderSize(zr, 64<<10)}
	if magic, err := r.str(); err != nil || magic != checkpointMagic {
		return nil, bad("not a checkpoint (%v)", err)
	}
	seq, err := r.int()
	if err != nil || seq != cp.Seq {
		return nil, bad("holds seq %d (%v)", seq, err)
	}
	lastID, err := r.str()
	if err != nil {
		return nil, bad("no last event id (%v)", err)
	}

	// One future per run of records, in order: the reader fills them from
	// decode workers, this goroutine files them.
	batches := make(chan chan recordBatch, 2*decodeWorkers())
	stop := make(chan struct{})
	go func() {
		defer close(batches)
		if err := r.decodeAll(batches, stop); err != nil {
			failed := make(chan recordBatch, 1)
			failed <- recordBatch{err: err}
			select {
			case batches <- failed:
			case <-stop:
			}
		}
	}()
	defer func() {
		close(stop)
		for f := range batches { // let the reader and the workers end before zr closes
			<-f
		}
	}()
	b := newEdit(Empty())
	sec := -1
	for f := range batches {
		batch := <-f
		if batch.err != nil {
			return nil, bad("%v", batch.err)
		}
		if batch.sec != sec {
			sec = batch.sec
			if sections[sec].begin != nil {
				sections[sec].begin(b, batch.count)
			}
		}
		for i, v := range batch.items {
			if err := sections[sec].put(b, v); err != nil {
				return nil, bad("%s[%d]: %v", sections[sec].name, batch.first+i, err)
			}
		}
	}
	if !r.complete {
		return nil, bad("incomplete")
	}
	if forServing {
		b.fileTables()
	} else {
		b.s.unfiled = true
	}
	b.s.seq, b.s.lastID = seq, lastID
	if got := b.s.StateHash(); got != cp.StateHash {
		return nil, bad("state hash %s, the checkpoint says %s", got, cp.StateHash)
	}
	return b.s, nil
}

// recordBatch is a run of decoded records of one section (or what stopped
// the reading).
type recordBatch struct {
	sec   int
	count int // records in the section
	first int // index of items[0] in the section
	items []decoded
	err   error
}

// recordReader reads the parts of a decompressed checkpoint.
type recordReader struct {
	r        *bufio.Reader
	buf      []byte
	complete bool // the end marker was read, and nothing after it
}

func (r *recordReader) read(n int64) ([]byte, error) {
	if n < 0 || n > maxRecord {
		return nil, errMalformed
	}
	if int64(cap(r.buf)) < n {
		r.buf = make([]byte, n)
	}
	r.buf = r.buf[:n]
	_, err := io.ReadFull(r.r, r.buf)
	return r.buf, err
}

func (r *recordReader) int() (int64, error) {
	b, err := r.read(8)
	if err != nil {
		return 0, err
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

func (r *recordReader) str() (string, error) {
	n, err := r.int()
	if err != nil {
		return "", err
	}
	b, err := r.read(n)
	return string(b), err
}

// decodeWorkers is how many runs of records decode at once: one per core,
// beside the reader and the filer.
func decodeWorkers() int { return max(1, runtime.GOMAXPROCS(0)) }

// decodeAll reads every section's records in order until the end marker, in
// runs, and decodes each run (and its digests) on a worker of its own: out
// gets one future per run, in order, each filled once its run is decoded.
// It stops early when stop closes; the futures already sent are filled
// all the same.
func (r *recordReader) decodeAll(out chan<- chan recordBatch, stop <-chan struct{}) error {
	const batchSize = 512
	workers := make(chan struct{}, decodeWorkers())
	send := func(run rawRun) bool {
		f := make(chan recordBatch, 1)
		select {
		case out <- f:
		case <-stop:
			return false
		}
		workers <- struct{}{}
		go func() {
			defer func() { <-workers }()
			f <- run.decode()
			run.recycle() // the decoded records copied what they keep
		}()
		return true
	}
	for si, sec := range sections {
		name, err := r.str()
		if err != nil || name != sec.name {
			return fmt.Errorf("section %q where %q belongs (%v)", name, sec.name, err)
		}
		n, err := r.int()
		if err != nil || n < 0 {
			return fmt.Errorf("%s: count %d (%v)", sec.name, n, err)
		}
		run := newRawRun(si, int(n), 0)
		for i := range int(n) {
			recSize, err := r.int()
			if err == nil && (recSize < 0 || recSize > maxRecord) {
				err = errMalformed
			}
			if err != nil {
				return fmt.Errorf("%s[%d]: %w", sec.name, i, err)
			}
			// Read straight into the run: no copy through r.buf.
			start := len(run.data)
			run.data = slices.Grow(run.data, int(recSize))[:start+int(recSize)]
			if _, err := io.ReadFull(r.r, run.data[start:]); err != nil {
				return fmt.Errorf("%s[%d]: %w", sec.name, i, err)
			}
			run.ends = append(run.ends, len(run.data))
			if len(run.ends) == batchSize {
				if !send(run) {
					return nil
				}
				run = newRawRun(si, int(n), i+1)
			}
		}
		// An empty run too: the section's begin must run.
		if !send(run) {
			return nil
		}
	}
	if end, err := r.str(); err != nil || end != "" {
		return fmt.Errorf("no end marker (%v)", err)
	}
	if _, err := r.r.ReadByte(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("data after the end marker (%v)", err)
	}
	r.complete = true
	return nil
}

// rawRun is a run of records of one section as read, not yet decoded:
// record k is data[ends[k-1]:ends[k]].
type rawRun struct {
	sec   int
	count int // records in the section
	first int // index of the run's first record in the section
	data  []byte
	ends  []int
}

// rawRuns recycles the buffers of decoded runs: a load reads its whole
// checkpoint through them, several times the live state's size in garbage
// otherwise.
var rawRuns sync.Pool

func newRawRun(sec, count, first int) rawRun {
	run, ok := rawRuns.Get().(*rawRun)
	if !ok {
		run = &rawRun{}
	}
	return rawRun{sec: sec, count: count, first: first, data: run.data[:0], ends: run.ends[:0]}
}

func (run rawRun) recycle() {
	rawRuns.Put(&rawRun{data: run.data, ends: run.ends})
}

func (run rawRun) decode() recordBatch {
	sec := sections[run.sec]
	batch := recordBatch{sec: run.sec, count: run.count, first: run.first, items: make([]decoded, 0, len(run.ends))}
	start := 0
	for k, end := range run.ends {
		d := decoder{b: run.data[start:end]}
		start = end
		v, err := sec.decode(&d)
		if err == nil && len(d.b) != 0 {
			err = fmt.Errorf("%d bytes left over", len(d.b))
		}
		if err != nil {
			return recordBatch{err: fmt.Errorf("%s[%d]: %w", sec.name, run.first+k, err)}
		}
		batch.items = append(batch.items, v)
	}
	return batch
}

// CheckpointStore keeps checkpoints; *events.SQLStore is one.
type CheckpointStore interface {
	// SaveCheckpoint stores cp unless one of the same seq and version
	// exists (insert-or-ignore) and reports whether it stored it.
	SaveCheckpoint(ctx context.Context, cp events.Checkpoint) (bool, error)
	// Checkpoints lists checkpoints without data, newest first.
	Checkpoints(ctx context.Context, version string, atOrBelow int64, limit int) ([]events.Checkpoint, error)
	// LoadCheckpoint returns one checkpoint with its data.
	LoadCheckpoint(ctx context.Context, seq int64, version string) (events.Checkpoint, error)
}

var _ CheckpointStore = (*events.SQLStore)(nil)

// LatestCheckpoint returns the snapshot of the newest usable checkpoint at
// or below seq atOrBelow, or nil when there is none. Checkpoints that do not
// verify are logged and skipped. Only a store error is returned as an error.
func LatestCheckpoint(ctx context.Context, cs CheckpointStore, atOrBelow int64, log *slog.Logger) (*Snapshot, error) {
	return latestCheckpoint(ctx, cs, atOrBelow, true, log)
}

// latestCheckpoint is LatestCheckpoint, the state for serving or, unless
// forServing, for a history query (see decodeCheckpoint).
func latestCheckpoint(ctx context.Context, cs CheckpointStore, atOrBelow int64, forServing bool, log *slog.Logger) (*Snapshot, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	const page = 8
	for atOrBelow > 0 {
		list, err := cs.Checkpoints(ctx, ApplyVersion, atOrBelow, page)
		if err != nil {
			return nil, fmt.Errorf("projections: list checkpoints: %w", err)
		}
		for _, info := range list {
			cp, err := cs.LoadCheckpoint(ctx, info.Seq, info.ApplyVersion)
			if errors.Is(err, events.ErrNoCheckpoint) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("projections: load checkpoint %d: %w", info.Seq, err)
			}
			s, err := decodeCheckpoint(cp, forServing)
			if err != nil {
				log.Warn("checkpoint skipped: it does not verify", "seq", info.Seq, "err", err)
				continue
			}
			return s, nil
		}
		if len(list) < page {
			break
		}
		atOrBelow = list[len(list)-1].Seq - 1
	}
	return nil, nil
}

// StateAt returns the state right after event at. It starts from the
// nearest of: near (a state in memory, such as the current snapshot, when
// its seq is at most at), the newest usable checkpoint at or below at (when
// store keeps checkpoints), or the empty state; and applies the store's
// events from there to at (0 is the empty state). It costs the events between at and where it
// starts, not the whole log; a checkpoint only when it costs less than the
// events from near (ReplayIsCheaper). A state from a checkpoint is for reading (its
// routes are filed in matcher tables only if something matches against it).
func StateAt(ctx context.Context, store events.Store, at int64, near *Snapshot, log *slog.Logger) (*Snapshot, error) {
	return stateAt(ctx, store, at, []*Snapshot{near}, nil, log)
}

// stateAt is StateAt starting from the nearest of several states in
// memory; loaded, if set, hears of each checkpoint state it loads.
func stateAt(ctx context.Context, store events.Store, at int64, near []*Snapshot, loaded func(*Snapshot), log *slog.Logger) (*Snapshot, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := Empty()
	if at <= 0 {
		return start, nil
	}
	for _, s := range near {
		if s != nil && s.Seq() <= at && s.Seq() > start.Seq() {
			start = s
		}
	}
	if start.Seq() == at {
		return start, nil
	}
	if cs, ok := store.(CheckpointStore); ok && !ReplayIsCheaper(start.Size(), at-start.Seq()) {
		cp, err := nearerCheckpoint(ctx, cs, start.Seq(), at, log)
		if err != nil {
			return nil, err
		}
		if cp != nil {
			start = cp
			if loaded != nil {
				loaded(cp)
			}
		}
	}
	return ReplayStore(ctx, store, start, at, func(ev events.Envelope, err error) {
		log.Debug("replay skipped an event", "at", at, "seq", ev.Seq, "err", err)
	})
}

// ReplayIsCheaper reports whether applying events events to a state of size
// aggregates costs less than loading a checkpoint of that size: an event
// costs about twice what one aggregate's record does (both decode and
// digest one aggregate; an event also reads a row and copies the old one).
func ReplayIsCheaper(size int, events int64) bool { return events*2 <= int64(size) }

// nearerCheckpoint is LatestCheckpoint at or below at, when there is one
// beyond seq from (nil otherwise, so the caller keeps its start).
func nearerCheckpoint(ctx context.Context, cs CheckpointStore, from, at int64, log *slog.Logger) (*Snapshot, error) {
	list, err := cs.Checkpoints(ctx, ApplyVersion, at, 1)
	if err != nil {
		return nil, fmt.Errorf("projections: list checkpoints: %w", err)
	}
	if len(list) == 0 || list[0].Seq <= from {
		return nil, nil
	}
	s, err := latestCheckpoint(ctx, cs, at, false, log)
	if err != nil || s == nil || s.Seq() <= from {
		return nil, err
	}
	return s, nil
}

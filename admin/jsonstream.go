package admin

import (
	"bufio"
	"bytes"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"

	// go-json writes the same bytes as encoding/json (TestWriteStateDocument
	// compares them) in about half the time.
	json "github.com/goccy/go-json"
	"github.com/gofiber/fiber/v2"
)

// sendStream answers 200 with the JSON that write writes, streamed: the
// state or a diff of 100,000 routes is tens of MiB that is never held whole.
// what names the answer in the log lines.
func (a *API) sendStream(c *fiber.Ctx, what string, write func(w *bufio.Writer) error) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer func() {
			if v := recover(); v != nil {
				a.log.Error("admin: panic while streaming an answer", "answer", what, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
		}()
		if err := write(w); err != nil {
			a.log.Debug("admin: stream ended early", "answer", what, "err", err)
		}
	})
	return nil
}

// arrayRun is how many items of a large array one worker encodes at a time.
const arrayRun = 256

// writeArray writes items as a JSON array, indented as the second level of
// a document when indent is set: the bytes json.Marshal (or an indenting
// Encoder) writes. Runs of items are encoded on one worker per core and
// written in order: encoding 55 MiB of state was most of a state?at query.
// A bufio.Writer's error sticks, so the caller's Flush reports it.
func writeArray[T any](w *bufio.Writer, items []T, indent bool) error {
	_, _ = w.WriteString("[")
	err := inRuns(len(items), arrayRun, func(lo, hi int) (*bytes.Buffer, error) {
		buf := runBuffers.Get().(*bytes.Buffer)
		buf.Reset()
		return buf, encodeItems(buf, items[lo:hi], lo > 0, indent)
	}, func(buf *bytes.Buffer) error {
		_, err := w.Write(buf.Bytes())
		if buf.Cap() <= 1<<20 {
			runBuffers.Put(buf)
		}
		return err
	})
	if err != nil {
		return err
	}
	if indent && len(items) > 0 {
		_, _ = w.WriteString("\n  ")
	}
	_, err = w.WriteString("]")
	return err
}

// encodeItems encodes a run of an array's items into buf, each after a
// comma when the run does not begin the array. One Encoder per run reuses
// its buffer across items (json.Marshal allocates one per item).
func encodeItems[T any](buf *bytes.Buffer, items []T, afterOthers, indent bool) error {
	enc := json.NewEncoder(buf)
	if indent {
		enc.SetIndent("    ", "  ")
	}
	for i, item := range items {
		if i > 0 || afterOthers {
			buf.WriteByte(',')
		}
		if indent {
			buf.WriteString("\n    ")
		}
		if err := enc.Encode(item); err != nil {
			return err
		}
		buf.Truncate(buf.Len() - 1) // Encode ends each value with a newline
	}
	return nil
}

// runBuffers hold encoded runs between their worker and the writer.
var runBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// inRuns calls encode for each run [lo, hi) of n items, size items at a
// time, on up to one worker per core, and write with their results in
// order. It stops at the first error; runs still encoding then finish
// unread.
func inRuns[R any](n, size int, encode func(lo, hi int) (R, error), write func(R) error) error {
	if n <= size { // one run or none: no goroutine
		if n == 0 {
			return nil
		}
		b, err := encode(0, n)
		if err != nil {
			return err
		}
		return write(b)
	}
	type result struct {
		r   R
		err error
	}
	// A run is encoded once its future is queued, so the queue's length
	// bounds the runs in flight (and their memory) while write waits.
	futures := make(chan chan result, runtime.GOMAXPROCS(0))
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(futures)
		for lo := 0; lo < n; lo += size {
			f := make(chan result, 1)
			select {
			case futures <- f:
			case <-stop:
				return
			}
			go func(lo, hi int) {
				r, err := encode(lo, hi)
				f <- result{r, err}
			}(lo, min(lo+size, n))
		}
	}()
	for f := range futures {
		res := <-f
		if res.err == nil {
			res.err = write(res.r)
		}
		if res.err != nil {
			return res.err
		}
	}
	return nil
}

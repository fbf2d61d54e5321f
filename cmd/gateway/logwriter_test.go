package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLogWriterFlushesPeriodicallyAndOnClose(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	lw := newLogWriter(&out)
	fmt.Fprintln(lw, "first")
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(out.String(), "first") {
		if time.Now().After(deadline) {
			t.Fatal("a buffered line was never flushed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				fmt.Fprintf(lw, "line %d-%d\n", i, j)
			}
		}()
	}
	wg.Wait()
	lw.Close()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 801 {
		t.Fatalf("want 801 whole lines after Close, got %d", len(lines))
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "line ") {
			t.Fatalf("interleaved line %q", l)
		}
	}
}

func BenchmarkLogWriter(b *testing.B) {
	lw := newLogWriter(io.Discard)
	defer lw.Close()
	line := []byte(strings.Repeat("x", 200) + "\n")
	b.ReportAllocs()
	for b.Loop() {
		_, _ = lw.Write(line)
	}
}

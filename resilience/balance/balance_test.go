package balance

import (
	"sync"
	"testing"
)

func ups(weights ...int) []int { return weights }

func counts(p Picker, n, picks int, skip Skip) []int {
	c := make([]int, n)
	for range picks {
		i := p.Pick(n, skip)
		if i < 0 {
			panic("no pick")
		}
		c[i]++
	}
	return c
}

func TestRoundRobinExact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		n    int
		want []int
	}{
		{name: "one", n: 1, want: []int{1000}},
		{name: "two", n: 2, want: []int{500, 500}},
		{name: "four", n: 4, want: []int{250, 250, 250, 250}},
		{name: "three", n: 3, want: []int{334, 333, 333}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := counts(&RoundRobinPicker{}, tc.n, 1000, 0)
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("counts = %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestRoundRobinOrder(t *testing.T) {
	t.Parallel()
	rr := &RoundRobinPicker{}
	for k := range 9 {
		if got := rr.Pick(3, 0); got != k%3 {
			t.Fatalf("pick %d = %d, want %d", k, got, k%3)
		}
	}
}

func TestWeightedShareAndSmoothness(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		weights []int
		maxRun  int // longest run of the heaviest upstream allowed
	}{
		{name: "3:1", weights: []int{3, 1}, maxRun: 3},
		{name: "1:3", weights: []int{1, 3}, maxRun: 3},
		{name: "5:1:1", weights: []int{5, 1, 1}, maxRun: 4}, // nginx: a a b a c a a, repeated
		{name: "7:2:1", weights: []int{7, 2, 1}, maxRun: 3},
		{name: "1000:1", weights: []int{1000, 1}, maxRun: 1000},
		{name: "equal", weights: []int{2, 2, 2}, maxRun: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			total, heavy := 0, 0
			for i, w := range tc.weights {
				total += w
				if w > tc.weights[heavy] {
					heavy = i
				}
			}
			w := NewWeighted(append([]int(nil), tc.weights...))
			got := make([]int, len(tc.weights))
			run, longest := 0, 0
			for range 1000 {
				i := w.Pick(len(tc.weights), 0)
				got[i]++
				if i == heavy {
					run++
					longest = max(longest, run)
				} else {
					run = 0
				}
			}
			for i, c := range got {
				share := float64(c) / 1000
				want := float64(tc.weights[i]) / float64(total)
				if d := share - want; d > 0.02 || d < -0.02 {
					t.Errorf("upstream %d share %.3f, want %.3f±0.02 (counts %v)", i, share, want, got)
				}
			}
			if longest > tc.maxRun {
				t.Errorf("heaviest upstream picked %d times in a row, want <= %d", longest, tc.maxRun)
			}
		})
	}
}

func TestRandomShare(t *testing.T) {
	t.Parallel()
	got := counts(RandomPicker{}, 2, 1000, 0)
	for i, c := range got {
		if c < 400 || c > 600 {
			t.Fatalf("upstream %d got %d of 1000 picks, want 400..600", i, c)
		}
	}
}

func TestSkipsUnavailable(t *testing.T) {
	t.Parallel()
	onlyOdd := Skip(0).With(0).With(2)
	none := Skip(0).With(0).With(1).With(2).With(3)
	for _, tc := range []struct {
		name   string
		picker func() Picker
	}{
		{name: "round-robin", picker: func() Picker { return &RoundRobinPicker{} }},
		{name: "weighted", picker: func() Picker { return NewWeighted([]int{5, 1, 5, 1}) }},
		{name: "random", picker: func() Picker { return RandomPicker{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := tc.picker()
			c := counts(p, 4, 1000, onlyOdd)
			if c[0] != 0 || c[2] != 0 {
				t.Fatalf("unavailable upstreams picked: %v", c)
			}
			if c[1] < 400 || c[3] < 400 {
				t.Fatalf("available upstreams not shared: %v", c)
			}
			if got := p.Pick(4, none); got != -1 {
				t.Fatalf("Pick with none available = %d, want -1", got)
			}
			if got := p.Pick(0, 0); got != -1 {
				t.Fatalf("Pick(0) = %d, want -1", got)
			}
		})
	}
}

func TestRegistryKeepsStateAcrossSnapshots(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	p1 := r.Picker("r1", RoundRobin, ups(1, 1, 1))
	if p1.Pick(3, 0) != 0 || p1.Pick(3, 0) != 1 {
		t.Fatal("unexpected rotation")
	}
	// Same route, same upstream count (a new snapshot after an unrelated change).
	p2 := r.Picker("r1", RoundRobin, ups(1, 1, 1))
	if p2 != p1 {
		t.Fatal("picker replaced although policy and upstreams are unchanged")
	}
	if got := p2.Pick(3, 0); got != 2 {
		t.Fatalf("rotation restarted: got %d, want 2", got)
	}
	for _, tc := range []struct {
		name   string
		policy Policy
		ups    []int
	}{
		{name: "policy change", policy: Weighted, ups: ups(1, 1, 1)},
		{name: "weight change", policy: Weighted, ups: ups(2, 1, 1)},
		{name: "upstream count change", policy: Weighted, ups: ups(2, 1)},
	} {
		prev := r.Picker("r1", RoundRobin, ups(1, 1, 1))
		if next := r.Picker("r1", tc.policy, tc.ups); next == prev {
			t.Fatalf("%s: picker not replaced", tc.name)
		}
	}
	r.Picker("r2", Random, ups(1))
	r.Prune(func(id string) bool { return id == "r2" })
	if r.Len() != 1 {
		t.Fatalf("Len after prune = %d, want 1", r.Len())
	}
}

func TestSkipBeyond64(t *testing.T) {
	t.Parallel()
	all := ^Skip(0)
	if got := (&RoundRobinPicker{}).Pick(65, all); got != 64 {
		t.Fatalf("Pick(65, all of 0..63 skipped) = %d, want 64", got)
	}
	if all.With(70) != all || all.Has(70) {
		t.Fatal("indexes from 64 up must never be skipped")
	}
}

func TestConcurrentPicks(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := make([]int, 3)
	for range 8 {
		wg.Go(func() {
			local := make([]int, 3)
			for range 300 {
				p := r.Picker("r", Weighted, ups(1, 1, 1))
				local[p.Pick(3, 0)]++
			}
			mu.Lock()
			for i := range local {
				total[i] += local[i]
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	for i, c := range total {
		if c != 800 {
			t.Fatalf("upstream %d got %d of 2400 picks, want 800 (%v)", i, c, total)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	for _, tc := range []struct {
		name   string
		picker Picker
	}{
		{name: "round-robin", picker: &RoundRobinPicker{}},
		{name: "weighted", picker: NewWeighted([]int{3, 1, 2})},
		{name: "random", picker: RandomPicker{}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					tc.picker.Pick(3, 0)
				}
			})
		})
	}
}

package promutil

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterReturnsTheExistingCollector(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "x_total", Help: "x"}
	first, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	second.Inc()
	if first != second {
		t.Fatal("a second registration must hand back the first collector")
	}
	if _, err := Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "x_total", Help: "other"})); err == nil {
		t.Fatal("a different collector under a taken name must fail")
	}
}

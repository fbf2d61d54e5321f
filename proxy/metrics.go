package proxy

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the data plane's Prometheus series. Labels are ids and
// classes, never raw paths or keys, so their number stays bounded by the
// configuration. A nil *metrics records nothing.
type metrics struct {
	requests  *prometheus.CounterVec   // tenant, route, class
	latency   *prometheus.HistogramVec // tenant, route
	upErrors  *prometheus.CounterVec   // tenant, route, kind
	retries   *prometheus.CounterVec   // tenant, route
	fallbacks *prometheus.CounterVec   // tenant, route
	refused   *prometheus.CounterVec   // tenant, route: retries the budget refused
	framing   *prometheus.CounterVec   // reason: requests the framing guard refused
	bytes     *prometheus.CounterVec   // tenant, route, direction: body bytes proxied (streams and tunnels included)
	streamDur *prometheus.HistogramVec // tenant, route: how long streamed answers lasted
	streams   prometheus.Gauge         // answers being streamed now
	tunnels   prometheus.Gauge         // open WebSocket tunnels
	tunnelDur *prometheus.HistogramVec // tenant, route

	// children caches each (tenant, route)'s series: a lock-free read
	// instead of the vectors' shared RWMutex and label hashing per request.
	children sync.Map // seriesKey -> *series
}

type seriesKey struct{ tenant, route string }

type series struct {
	requests     [len(classes)]prometheus.Counter
	latency      prometheus.Observer
	fallbacks    prometheus.Counter
	in, out      prometheus.Counter // body bytes from the client, to the client
	streamLasted prometheus.Observer
}

func (m *metrics) series(tenant, route string) *series {
	k := seriesKey{tenant, route}
	if v, ok := m.children.Load(k); ok {
		return v.(*series)
	}
	s := &series{
		latency:      m.latency.WithLabelValues(tenant, route),
		fallbacks:    m.fallbacks.WithLabelValues(tenant, route),
		in:           m.bytes.WithLabelValues(tenant, route, "in"),
		out:          m.bytes.WithLabelValues(tenant, route, "out"),
		streamLasted: m.streamDur.WithLabelValues(tenant, route),
	}
	for i, c := range classes {
		s.requests[i] = m.requests.WithLabelValues(tenant, route, c)
	}
	v, _ := m.children.LoadOrStore(k, s)
	return v.(*series)
}

// forget drops the series of routes that no longer exist, so the number of
// series follows the configuration instead of growing forever.
func (m *metrics) forget(live func(routeID string) bool) {
	if m == nil {
		return
	}
	m.children.Range(func(k, _ any) bool {
		sk := k.(seriesKey)
		if sk.route != "" && !live(sk.route) {
			m.children.Delete(k)
			for _, v := range []interface {
				DeletePartialMatch(prometheus.Labels) int
			}{m.requests, m.latency, m.upErrors, m.retries, m.fallbacks, m.refused, m.bytes, m.streamDur, m.tunnelDur} {
				v.DeletePartialMatch(prometheus.Labels{"route": sk.route})
			}
		}
		return true
	})
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gateway", Subsystem: "proxy", Name: "requests_total",
			Help: "Proxied requests by tenant, route and status class (2xx..5xx).",
		}, []string{"tenant", "route", "class"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "gateway", Subsystem: "proxy", Name: "request_duration_seconds",
			Help:    "Time from receiving a request to having its response ready, retries included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"tenant", "route"}),
		upErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gateway", Subsystem: "proxy", Name: "upstream_errors_total",
			Help: "Upstream attempts that got no answer, by kind (connect, tls, timeout, no_free_connection).",
		}, []string{"tenant", "route", "kind"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gateway", Subsystem: "proxy", Name: "retries_total",
			Help: "Upstream retries.",
		}, []string{"tenant", "route"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gateway", Subsystem: "proxy", Name: "fallbacks_total",
			Help: "Responses served from a route's fallback.",
		}, []string{"tenant", "route"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gateway", Subsystem: "proxy", Name: "retry_budget_refusals_total",
			Help: "Retries not made because the route's retry budget was spent.",
		}, []string{"tenant", "route"}),
		framing: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gateway", Subsystem: "http", Name: "refused_requests_total",
			Help: "Requests refused before any handler because they do not parse or their framing is ambiguous (400, 408, 431), by reason.",
		}, []string{"reason"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gateway", Subsystem: "proxy", Name: "bytes_total",
			Help: "Body bytes proxied, by direction: in from the client, out to the client (streams and tunnels included).",
		}, []string{"tenant", "route", "direction"}),
		streamDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "gateway", Subsystem: "proxy", Name: "stream_duration_seconds",
			Help:    "How long streamed answers (bodies too large or of unknown length to read whole) lasted, from the request to the body's end.",
			Buckets: []float64{.01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 900, 3600},
		}, []string{"tenant", "route"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "gateway", Subsystem: "proxy", Name: "open_streams",
			Help: "Answers being streamed to clients now.",
		}),
		tunnels: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "gateway", Subsystem: "proxy", Name: "open_tunnels",
			Help: "WebSocket tunnels open now.",
		}),
		tunnelDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "gateway", Subsystem: "proxy", Name: "tunnel_duration_seconds",
			Help:    "How long WebSocket tunnels stayed open.",
			Buckets: []float64{.1, 1, 10, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600},
		}, []string{"tenant", "route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.upErrors, m.retries, m.fallbacks, m.refused, m.framing, m.bytes, m.streamDur, m.streams, m.tunnels, m.tunnelDur} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			return nil, errors.New("proxy: metrics already registered (one Proxy per registry)")
		}
	}
	return m, nil
}

var classes = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// classOf is the index in classes of a status (out of range counts as 5xx).
func classOf(s int) int {
	if s < 100 || s > 599 {
		return 4
	}
	return s/100 - 1
}

func (m *metrics) retry(x *exchange) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(tenantID(x), routeID(x)).Inc()
}

func (m *metrics) budgetRefused(x *exchange) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(tenantID(x), routeID(x)).Inc()
}

// framingRefused counts a request the framing guard refused. A nil
// *metrics counts nothing.
func (m *metrics) framingRefused(reason string) {
	if m == nil {
		return
	}
	m.framing.WithLabelValues(reason).Inc()
}

func (m *metrics) upstreamError(x *exchange, kind string) {
	if m == nil {
		return
	}
	m.upErrors.WithLabelValues(tenantID(x), routeID(x), kind).Inc()
}

// tunnelOpened counts t as open and gives it its byte counters.
func (m *metrics) tunnelOpened(t *tunnel) {
	if m == nil {
		return
	}
	m.tunnels.Inc()
	t.inBytes = m.bytes.WithLabelValues(t.tenant, t.route, "in")
	t.outBytes = m.bytes.WithLabelValues(t.tenant, t.route, "out")
}

// tunnelClosed records the end of a tunnel open for d.
func (m *metrics) tunnelClosed(t *tunnel, d time.Duration) {
	if m == nil {
		return
	}
	m.tunnels.Dec()
	m.tunnelDur.WithLabelValues(t.tenant, t.route).Observe(d.Seconds())
}

func (m *metrics) streamOpened() {
	if m != nil {
		m.streams.Inc()
	}
}

func (m *metrics) streamClosed() {
	if m != nil {
		m.streams.Dec()
	}
}

// streamed records a streamed answer's body bytes and how long it lasted.
func (m *metrics) streamed(x *exchange, bytes int64, d time.Duration) {
	if m == nil || x.route == nil {
		return
	}
	s := x.route.series
	s.out.Add(float64(bytes))
	s.streamLasted.Observe(d.Seconds())
}

package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis high-availability tests run real redis-server processes on
// loopback, started by the test in its temporary directory and killed when
// it ends: a Sentinel set (a master, a replica, three sentinels) or a
// Cluster. Without redis-server the test is skipped (failed under CI=true).

// RedisProcess is one redis-server (or sentinel) process.
type RedisProcess struct {
	Addr     string
	password string // requirepass, if any
	args     []string
	log      string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// StartRedis runs a disposable redis-server of the test's own (never the
// shared one) on a free loopback port, killed when the test ends. Kill and
// Start stop it and bring it back on the same port, empty (it keeps
// nothing). Without redis-server the test is skipped (failed under CI=true).
func StartRedis(t testing.TB) *RedisProcess {
	t.Helper()
	port := freeRedisPort(t, false)
	return startRedisProcess(t, port, "", redisDataArgs(port, t.TempDir())...)
}

// URL is the process's redis:// URL, database 0.
func (p *RedisProcess) URL() string { return "redis://" + p.Addr + "/0" }

// startRedisProcess runs redis-server with args and waits until it answers
// PING (with password, when it requires one).
func startRedisProcess(t testing.TB, port int, password string, args ...string) *RedisProcess {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "redis-server is not installed")
	}
	p := &RedisProcess{Addr: "127.0.0.1:" + strconv.Itoa(port), password: password, args: append([]string{bin}, args...),
		log: filepath.Join(t.TempDir(), "redis-"+strconv.Itoa(port)+".log")}
	p.Start(t)
	t.Cleanup(p.Kill)
	return p
}

// Start (re)starts the process and waits until it answers.
func (p *RedisProcess) Start(t testing.TB) {
	t.Helper()
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start %s: %v", strings.Join(p.args, " "), err)
	}
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
	c := p.Client()
	defer c.Close()
	// The process that answers must be this one: another test may have
	// taken the port between the look and the bind.
	pid := "process_id:" + strconv.Itoa(cmd.Process.Pid) + "\r\n"
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := c.Info(context.Background(), "server").Result()
		if err == nil && strings.Contains(info, pid) {
			return
		}
		if time.Now().After(deadline) || (err == nil && !strings.Contains(info, pid)) {
			b, _ := os.ReadFile(p.log)
			t.Fatalf("testenv: redis-server on %s did not start (another process on the port?):\n%s", p.Addr, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill kills the process (SIGKILL: no shutdown, nothing saved).
func (p *RedisProcess) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

// Client is a new client of this one process; the caller closes it.
func (p *RedisProcess) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: p.Addr, Password: p.password, MaxRetries: -1, DialTimeout: time.Second})
}

// freeRedisPort returns a loopback port that is free, and with cluster also
// port+10000 (the cluster bus). Ports come from a random range rather than
// the kernel's ephemeral ones so that port+10000 exists.
func freeRedisPort(t testing.TB, cluster bool) int {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(35000)
		if !portFree(port) || (cluster && !portFree(port+10000)) {
			continue
		}
		return port
	}
	t.Fatal("testenv: no free port for redis")
	return 0
}

func portFree(port int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

func redisDataArgs(port int, dir string) []string {
	return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}
}

// Sentinel is a Sentinel-managed master with one replica and three sentinels.
type Sentinel struct {
	MasterName string
	// Sentinels are the sentinels' addresses.
	Sentinels []string
	SentinelAuth

	t     testing.TB
	data  []*RedisProcess // master and replica, by start order
	sents []*RedisProcess
}

// SentinelAuth are the passwords of a Sentinel set; empty: none.
type SentinelAuth struct {
	Password         string // the master's and the replica's (requirepass, masterauth)
	SentinelPassword string // the sentinels' own
}

// StartSentinel starts the set and waits until every sentinel knows the
// master, its replica and the other sentinels (so a failover can happen).
func StartSentinel(t testing.TB, auth SentinelAuth) *Sentinel {
	t.Helper()
	s := &Sentinel{MasterName: "gwmaster", SentinelAuth: auth, t: t}
	var authArgs []string
	if auth.Password != "" {
		authArgs = []string{"--requirepass", auth.Password, "--masterauth", auth.Password}
	}
	dir := t.TempDir()
	masterPort := freeRedisPort(t, false)
	master := startRedisProcess(t, masterPort, auth.Password, append(redisDataArgs(masterPort, dir), authArgs...)...)
	replicaPort := freeRedisPort(t, false)
	replica := startRedisProcess(t, replicaPort, auth.Password, append(append(redisDataArgs(replicaPort, t.TempDir()), authArgs...),
		"--replicaof", "127.0.0.1", strconv.Itoa(masterPort))...)
	s.data = []*RedisProcess{master, replica}
	for i := range 3 {
		port := freeRedisPort(t, false)
		conf := filepath.Join(t.TempDir(), fmt.Sprintf("sentinel-%d.conf", i))
		// Quick detection (1 s) so a killed master is replaced in seconds.
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 5000\n"+
			"sentinel parallel-syncs %s 1\n",
			port, filepath.Dir(conf), s.MasterName, masterPort, s.MasterName, s.MasterName, s.MasterName)
		if auth.Password != "" {
			body += fmt.Sprintf("sentinel auth-pass %s %s\n", s.MasterName, auth.Password)
		}
		if auth.SentinelPassword != "" {
			// The sentinels also use it with each other.
			body += fmt.Sprintf("requirepass %s\nsentinel sentinel-pass %s\n", auth.SentinelPassword, auth.SentinelPassword)
		}
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		sp := startRedisProcess(t, port, auth.SentinelPassword, conf, "--sentinel")
		s.sents = append(s.sents, sp)
		s.Sentinels = append(s.Sentinels, sp.Addr)
	}
	WaitFor(t, "every sentinel knows the master, its replica and the other sentinels", 30*time.Second, func() bool {
		for _, sp := range s.sents {
			m, err := s.sentinelMaster(sp)
			if err != nil || m["ip"]+":"+m["port"] != master.Addr || m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" {
				return false
			}
		}
		return replicaInSync(replica)
	})
	return s
}

// sentinelMaster is one sentinel's SENTINEL MASTER answer.
func (s *Sentinel) sentinelMaster(sp *RedisProcess) (map[string]string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: sp.Addr, Password: s.SentinelPassword, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Master(ctx, s.MasterName).Result()
}

func replicaInSync(p *RedisProcess) bool {
	c := p.Client()
	defer c.Close()
	info, err := c.Info(context.Background(), "replication").Result()
	return err == nil && strings.Contains(info, "master_link_status:up")
}

// Master is the address every live sentinel reports for the master, or ""
// while they disagree.
func (s *Sentinel) Master() string {
	addr := ""
	for _, sp := range s.sents {
		m, err := s.sentinelMaster(sp)
		if err != nil {
			continue
		}
		a := m["ip"] + ":" + m["port"]
		if addr != "" && a != addr {
			return ""
		}
		addr = a
	}
	return addr
}

// process is the data process at addr.
func (s *Sentinel) process(addr string) *RedisProcess {
	for _, p := range s.data {
		if p.Addr == addr {
			return p
		}
	}
	s.t.Fatalf("testenv: no redis process at %s", addr)
	return nil
}

// Failover asks a sentinel for a failover (SENTINEL FAILOVER: the replica is
// promoted, the old master demoted to its replica) and waits until every
// sentinel reports the new master and it accepts writes. It returns the old
// and the new master.
func (s *Sentinel) Failover() (from, to string) {
	s.t.Helper()
	from = s.Master()
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0], Password: s.SentinelPassword, MaxRetries: -1})
	defer c.Close()
	if err := c.Failover(context.Background(), s.MasterName).Err(); err != nil {
		s.t.Fatalf("testenv: SENTINEL FAILOVER: %v", err)
	}
	to = s.WaitNewMaster(from, 30*time.Second)
	return from, to
}

// KillMaster kills the master process (kill -9) and returns its address; the
// sentinels notice within about a second and promote the replica.
func (s *Sentinel) KillMaster() string {
	s.t.Helper()
	addr := s.Master()
	if addr == "" {
		s.t.Fatal("testenv: the sentinels disagree on the master")
	}
	s.process(addr).Kill()
	return addr
}

// WaitNewMaster waits until every sentinel reports a master other than old
// and that master takes writes, and returns it.
func (s *Sentinel) WaitNewMaster(old string, within time.Duration) string {
	s.t.Helper()
	var to string
	WaitFor(s.t, "the sentinels agree on a new master", within, func() bool {
		to = s.Master()
		if to == "" || to == old {
			return false
		}
		c := s.process(to).Client()
		defer c.Close()
		return c.Set(context.Background(), "testenv:failover-probe", "1", time.Second).Err() == nil
	})
	return to
}

// Cluster is a Redis Cluster of masters only, each with a third of the slots.
type Cluster struct {
	// Addrs are the nodes' addresses.
	Addrs []string
	nodes []*RedisProcess
}

// StartCluster starts masters cluster-enabled nodes, joins them with
// redis-cli --cluster create and waits until every node reports the cluster ok.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		unavailable(t, "redis-cli is not installed")
	}
	c := &Cluster{}
	for range masters {
		port := freeRedisPort(t, true)
		dir := t.TempDir()
		p := startRedisProcess(t, port, "", append(redisDataArgs(port, dir),
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "2000")...)
		c.nodes = append(c.nodes, p)
		c.Addrs = append(c.Addrs, p.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	WaitFor(t, "every cluster node reports cluster_state:ok and knows every other", 30*time.Second, func() bool {
		for _, n := range c.nodes {
			cl := n.Client()
			info, err := cl.ClusterInfo(context.Background()).Result()
			_ = cl.Close()
			if err != nil || !strings.Contains(info, "cluster_state:ok") ||
				!strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(masters)) {
				return false
			}
		}
		return true
	})
	return c
}

// NodeFor is the node that holds key.
func (c *Cluster) NodeFor(t testing.TB, key string) *RedisProcess {
	t.Helper()
	cl := c.nodes[0].Client()
	defer cl.Close()
	slot, err := cl.ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	slots, err := cl.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) {
			for _, n := range c.nodes {
				if n.Addr == s.Nodes[0].Addr {
					return n
				}
			}
		}
	}
	t.Fatalf("testenv: no node holds slot %d", slot)
	return nil
}

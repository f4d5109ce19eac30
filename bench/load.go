package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// load is one closed-loop test: clients workers each send op back to back; after warmup,
// every op that completes within duration is measured.
type load struct {
	name    string // case and side, for errors and profile labels
	side    string
	clients int
	// postmaster is the cluster's pid; CPU is counted for it and its children.
	postmaster int
	warmup     time.Duration
	duration   time.Duration
	op         func(context.Context) error
	// settle runs before the load starts.
	settle func(context.Context) error
}

// measurement is what one side of one case achieved.
type measurement struct {
	Ops       int     `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50       millis  `json:"p50_ms"`
	P99       millis  `json:"p99_ms"`
	// CPU used, in cores: by this process (the load clients, and for Velocity the API
	// server), by the cluster's Postgres processes, and by the whole host. Host minus the
	// other two is someone else's work, which makes the numbers noisy.
	BenchCores    float64 `json:"bench_cores"`
	PostgresCores float64 `json:"postgres_cores"`
	HostCores     float64 `json:"host_cores"`
}

// cpuPerOp is the CPU time one op cost this process and Postgres. Unlike ops/s it hardly
// changes when other work on the host takes CPU away.
func (m measurement) cpuPerOp() (bench, postgres time.Duration) {
	if m.OpsPerSec == 0 {
		return 0, 0
	}
	per := func(cores float64) time.Duration { return time.Duration(cores / m.OpsPerSec * float64(time.Second)) }
	return per(m.BenchCores), per(m.PostgresCores)
}

// otherCores is the host CPU that neither this process nor its Postgres used.
func (m measurement) otherCores() float64 {
	return max(0, m.HostCores-m.BenchCores-m.PostgresCores)
}

// millis is a latency that JSON shows in milliseconds.
type millis time.Duration

func (m millis) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(m)/float64(time.Millisecond), 'f', 3, 64), nil
}

func (m millis) String() string {
	return strconv.FormatFloat(float64(m)/float64(time.Millisecond), 'f', 2, 64) + "ms"
}

// run drives the load and returns its measurement. The first failed op stops it: a
// benchmark whose requests fail measures nothing.
func (l load) run(ctx context.Context) (measurement, error) {
	if err := l.settle(ctx); err != nil {
		return measurement{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	from := time.Now().Add(l.warmup)
	end := from.Add(l.duration)
	latencies := make([][]time.Duration, l.clients)
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	labels := pprof.Labels("case", l.name, "side", l.side, "clients", strconv.Itoa(l.clients))
	for w := range l.clients {
		wg.Add(1)
		go pprof.Do(ctx, labels, func(ctx context.Context) {
			defer wg.Done()
			for {
				start := time.Now()
				if !start.Before(end) || ctx.Err() != nil {
					return
				}
				err := l.op(ctx)
				done := time.Now()
				if err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
				if done.After(from) && !done.After(end) {
					latencies[w] = append(latencies[w], done.Sub(start))
				}
			}
		})
	}
	cpuFrom, cpuEnd := cpuAt(ctx, from, l.postmaster), cpuAt(ctx, end, l.postmaster)
	wg.Wait()
	if firstErr != nil {
		return measurement{}, fmt.Errorf("%s %s, %d clients: %w", l.side, l.name, l.clients, firstErr)
	}
	if err := ctx.Err(); err != nil {
		return measurement{}, err
	}

	all := slices.Concat(latencies...)
	slices.Sort(all)
	m := measurement{
		Ops:       len(all),
		OpsPerSec: float64(len(all)) / l.duration.Seconds(),
		P50:       millis(percentile(all, 0.50)),
		P99:       millis(percentile(all, 0.99)),
	}
	if a, b := <-cpuFrom, <-cpuEnd; a.ok && b.ok && b.hostTotal > a.hostTotal {
		cores := func(from, to uint64) float64 {
			return float64(to-from) / float64(b.hostTotal-a.hostTotal) * float64(b.cpus)
		}
		m.BenchCores = cores(a.self, b.self)
		m.PostgresCores = cores(a.postgres, b.postgres)
		m.HostCores = cores(a.hostBusy, b.hostBusy)
	}
	return m, nil
}

// percentile returns the q-quantile of sorted by the nearest-rank method.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, i)]
}

// cpuSample counts CPU ticks at one moment: this process's, the Postgres cluster's (the
// postmaster and its children, living and reaped), and the whole host's.
type cpuSample struct {
	self, postgres      uint64
	hostBusy, hostTotal uint64
	cpus                int
	ok                  bool
}

// cpuAt delivers a sample taken at t (or an empty one if ctx ends first).
func cpuAt(ctx context.Context, t time.Time, postmaster int) <-chan cpuSample {
	c := make(chan cpuSample, 1)
	go func() {
		select {
		case <-time.After(time.Until(t)):
			c <- sampleCPU(postmaster)
		case <-ctx.Done():
			c <- cpuSample{}
		}
	}()
	return c
}

// sampleCPU reads /proc; ok is false where it cannot. Ticks of processes and of the host
// share one unit, so their ratios need no clock rate.
func sampleCPU(postmaster int) cpuSample {
	var s cpuSample
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
		case fields[0] == "cpu":
			// user nice system idle iowait irq softirq steal; guest time is already in user.
			for i, f := range fields[1:min(len(fields), 9)] {
				n, _ := strconv.ParseUint(f, 10, 64)
				s.hostTotal += n
				if i != 3 && i != 4 {
					s.hostBusy += n
				}
			}
		case strings.HasPrefix(fields[0], "cpu"):
			s.cpus++
		}
	}
	self, _, ok := procTicks("self")
	if !ok {
		return s
	}
	s.self = self
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ticks, ppid, ok := procTicks(e.Name())
		if ok && (pid == postmaster || ppid == postmaster) {
			s.postgres += ticks
		}
	}
	s.ok = s.hostTotal > 0 && s.cpus > 0
	return s
}

// procTicks returns a process's user+system ticks, its reaped children's included, and its
// parent's pid, from /proc/<pid>/stat.
func procTicks(pid string) (ticks uint64, ppid int, ok bool) {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name may hold spaces and parentheses; the fields after it do not.
	end := strings.LastIndexByte(string(data), ')')
	if end < 0 {
		return 0, 0, false
	}
	// state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
	f := strings.Fields(string(data[end+1:]))
	if len(f) < 15 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	for _, v := range f[11:15] {
		n, _ := strconv.ParseUint(v, 10, 64)
		ticks += n
	}
	return ticks, ppid, true
}

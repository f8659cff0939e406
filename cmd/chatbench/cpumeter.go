package main

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// How CPU per message is measured, for chatd, bare mochi and Mosquitto
// alike: a process's CPU time is utime+stime of /proc/PID/stat (the server
// found by --server-pid or as the process listening on --mqtt's port; the
// load generator as /proc/self/stat), which counts every thread, exited
// ones included. A cpuMeter reads it every cpuSampleEvery while the
// traffic runs, and the CPU of the measured window (from the first send
// to the last delivery or PUBACK, whichever is later) is interpolated
// linearly between the samples around the window's two ends. So connecting
// the clients before, and the drain wait, the report and closing the
// clients after, are not counted, and neither is idle time when a run
// waits out --drain for missing deliveries. Work a server defers past the
// window (a store compaction after the run) is not counted either; with
// several seconds of traffic per run it is small next to the per-message
// work. The kernel counts CPU time in ticks of 10 ms: over a window of a
// few seconds that is within a percent.
const cpuSampleEvery = 20 * time.Millisecond

type cpuSample struct {
	at  time.Time
	cpu time.Duration
}

// cpuMeter samples one process's CPU time in the background.
type cpuMeter struct {
	read func() (time.Duration, error)
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	samples []cpuSample
	err     error
}

// startCPUMeter takes a first sample now, then one every `every` until
// finish.
func startCPUMeter(read func() (time.Duration, error), every time.Duration) *cpuMeter {
	m := &cpuMeter{read: read, stop: make(chan struct{}), done: make(chan struct{})}
	m.sample()
	go func() {
		defer close(m.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				m.sample()
			}
		}
	}()
	return m
}

func (m *cpuMeter) sample() {
	cpu, err := m.read()
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if m.err == nil {
			m.err = err
		}
		return
	}
	m.samples = append(m.samples, cpuSample{at: now, cpu: cpu})
}

// finish stops sampling after one last sample.
func (m *cpuMeter) finish() {
	close(m.stop)
	<-m.done
	m.sample()
}

// between is the CPU time used from a to b; call it after finish.
func (m *cpuMeter) between(a, b time.Time) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return 0, m.err
	}
	if len(m.samples) < 2 {
		return 0, fmt.Errorf("cpu: %d samples", len(m.samples))
	}
	return cpuAt(m.samples, b) - cpuAt(m.samples, a), nil
}

// cpuAt interpolates linearly between the samples (in time order) around
// at; outside them it is the nearest sample's value.
func cpuAt(samples []cpuSample, at time.Time) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	if !at.After(samples[0].at) {
		return samples[0].cpu
	}
	for i := 1; i < len(samples); i++ {
		s0, s1 := samples[i-1], samples[i]
		if at.After(s1.at) {
			continue
		}
		span := s1.at.Sub(s0.at)
		if span <= 0 {
			return s1.cpu
		}
		frac := float64(at.Sub(s0.at)) / float64(span)
		return s0.cpu + time.Duration(frac*float64(s1.cpu-s0.cpu))
	}
	return samples[len(samples)-1].cpu
}

// readSelfCPU is the load generator's own CPU time.
func readSelfCPU() (time.Duration, error) { return readCPU(os.Getpid()) }

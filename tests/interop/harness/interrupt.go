package main

// Stopping the plugin in the middle of a stage and executing the stage again,
// as piped does after a restart (scenario field StageCase.Interrupt).

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/pipe-cd/pipecd/pkg/app/pipedv1/plugin"
	"github.com/pipe-cd/pipecd/pkg/lifecycle"
	"github.com/pipe-cd/pipecd/pkg/model"
)

// pipedGracePeriod is how long piped's GracefulStop waits after SIGTERM
// before it kills a plugin (piped's --grace-period default).
const pipedGracePeriod = 30 * time.Second

// interruptStage runs the stage's first attempt and stops the plugin in its
// middle, then relaunches the plugin and sets the stage RUNNING, so that the
// caller's executeStage is piped's re-execution. It returns the blocks the
// store held when the plugin was stopped; the caller checks they survive.
func (s *suite) interruptStage(t *T, p *plan, ps *model.PipelineStage, sc *StageCase) []*model.LogBlock {
	ic := sc.Interrupt
	where := fmt.Sprintf("stage %q (index %d), interrupted by %s", ps.Name, ps.Index, ic.Signal)
	if ic.Signal != "KILL" && ic.Signal != "TERM" {
		t.Fatalf("scenario: interrupt.signal must be KILL or TERM, not %q", ic.Signal)
	}
	first := *sc
	first.Interrupt, first.Commands, first.CancelAfterSeconds = nil, nil, 0
	done := make(chan *stageRun, 1)
	go func() { done <- s.executeStage(t, p, ps, &first) }()

	want := ic.AfterBlocks
	if want < 1 {
		want = 1
	}
	var before []*model.LogBlock
	deadline := time.Now().Add(20 * time.Second)
	for len(before) < want {
		select {
		case r := <-done:
			t.Fatalf("%s: ExecuteStage returned (%v, %v) before %d log blocks reached the store; use a longer stage", where, r.res.GetStatus(), r.err, want)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d log blocks reached the store within 20s", where, len(before), want)
		}
		before = s.cp.stageLogs(p.d.Id, ps.Id).view
	}

	stopped := time.Now()
	if ic.Signal == "KILL" {
		pid, err := s.plugin.pluginPID()
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("%s: kill %d: %v", where, pid, err)
		}
	} else {
		// piped's own stop: SIGTERM, SIGKILL after the grace period. The RPC stays open,
		// so the plugin's answer to the stopped call is seen.
		s.plugin.cmd.GracefulStop(pipedGracePeriod)
		took := time.Since(stopped)
		limit := time.Duration(firstPositive(ic.ExitWithinSeconds, 10) * float64(time.Second))
		t.Logf("%s: the plugin exited %s after SIGTERM", where, took.Round(time.Millisecond))
		if took > limit {
			t.Errorf("%s: the plugin took %s to exit after SIGTERM, want under %s (piped kills it at %s)", where, took.Round(time.Millisecond), limit, pipedGracePeriod)
		}
	}
	var r *stageRun
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: ExecuteStage did not end within 30s of the plugin's stop", where)
	}
	t.Logf("%s: the stopped call ended with (%v, %v); piped records %s", where, r.res.GetStatus(), r.err, r.piped)
	if ic.ExpectStatus != "" {
		want, err := parseStageStatus(ic.ExpectStatus)
		if err != nil {
			t.Fatalf("scenario: %v", err)
		}
		if r.err != nil || r.res.GetStatus() != want {
			t.Errorf("%s: the stopped call ended with (%v, %v), want reply %s", where, r.res.GetStatus(), r.err, want)
		}
	}
	snap := s.cp.stageLogs(p.d.Id, ps.Id)
	if snap.completed {
		t.Errorf("%s: the stopped run completed the stage log; the re-execution cannot continue it (FAILED_PRECONDITION)", where)
	}
	t.Logf("%s: %d blocks in the store at the stop, %d durable after it", where, len(before), len(snap.persisted))

	if err := s.relaunchPlugin(); err != nil {
		t.Fatalf("%s: relaunching the plugin: %v", where, err)
	}
	ps.Status = model.StageStatus_STAGE_RUNNING // what a restarted piped sends for the stage it lost
	return before
}

// checkSurvived checks that every block the store held before the stop is in
// the store's view after the re-execution.
func (s *suite) checkSurvived(t *T, p *plan, ps *model.PipelineStage, before []*model.LogBlock) {
	now := map[int64]string{}
	for _, b := range s.cp.stageLogs(p.d.Id, ps.Id).view {
		now[b.Index] = b.Log
	}
	lost := 0
	for _, b := range before {
		if text, ok := now[b.Index]; !ok || text != b.Log {
			lost++
		}
	}
	t.Logf("stage %q: %d of the first run's %d blocks are in the store after the re-execution", ps.Name, len(before)-lost, len(before))
	if lost > 0 {
		t.Errorf("stage %q: %d of the first run's %d log blocks were lost by the re-execution (never made durable by a checkpoint)", ps.Name, lost, len(before))
	}
}

// relaunchPlugin starts the plugin again like a restarted piped (same file,
// argv and port), connects, and rebuilds the plugin registry. The
// launchedPlugin is updated in place, so whoever stops it at the end stops the
// new process.
func (s *suite) relaunchPlugin() error {
	lp := s.plugin
	if lp.client != nil {
		lp.client.Close()
		lp.client = nil
	}
	for deadline := time.Now().Add(10 * time.Second); lp.cmd.IsRunning(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("the stopped plugin process is still running")
		}
	}
	cmd, err := lifecycle.RunBinary(s.ctx, lp.path, lp.argv)
	if err != nil {
		return fmt.Errorf("RunBinary: %w", err)
	}
	lp.cmd, lp.started = cmd, time.Now()
	if err := lp.connect(s.ctx, 30*time.Second); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	reg, err := plugin.NewPluginRegistry(ctx, []plugin.Plugin{{Name: s.name, Cli: lp.client}})
	if err != nil {
		return fmt.Errorf("plugin.NewPluginRegistry: %w", err)
	}
	s.registry = reg
	return nil
}

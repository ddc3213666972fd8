package main

// Two parts of piped's world the rest of the suite leaves out:
//
//   - a crash in the middle of a stage: piped's host dies with its plugins; the
//     new piped launches the plugin again, from the file it already downloaded
//     and with the same argv, rebuilds its registry and executes the lost stage
//     again, sending its status as RUNNING (scheduler.go resumes RUNNING stages);
//   - the control plane's check of who may approve: the web API's ApproveStage
//     refuses (PermissionDenied) a user outside the stage's authorized operators,
//     so such a command never reaches piped (web_api.go, validateApprover).

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/status"

	"github.com/pipe-cd/pipecd/pkg/model"
	"github.com/pipe-cd/pipecd/pkg/plugin/api/v1alpha1/deployment"
)

// pluginPID finds the plugin's process among the harness's children: piped's
// lifecycle.Command keeps its PID private. The plugin is the child whose command
// line carries the exact --config JSON it was launched with (a .py plugin's
// wrapper execs the interpreter, so its path is not in the command line).
func (lp *launchedPlugin) pluginPID() (int, error) {
	config := []byte(lp.argv[len(lp.argv)-1])
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", os.Getpid()))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, field := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(field)
			if err != nil {
				continue
			}
			cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err == nil && bytes.Contains(cmdline, config) {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("the plugin process is not among the harness's children (/proc/<pid>/task/*/children)")
}

// killHard sends SIGKILL to the plugin by PID, as a host crash ends it: no
// SIGTERM, so it cannot flush, complete logs or answer.
func (lp *launchedPlugin) killHard() (int, error) {
	pid, err := lp.pluginPID()
	if err != nil {
		return 0, err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return pid, fmt.Errorf("SIGKILL %d: %w", pid, err)
	}
	for deadline := time.Now().Add(10 * time.Second); lp.cmd.IsRunning(); {
		if time.Now().After(deadline) {
			return pid, fmt.Errorf("plugin %d still running 10s after SIGKILL", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return pid, nil
}

// relaunch starts the plugin again as a restarted piped does (see relaunchPlugin).
func (s *suite) relaunch(t *T) {
	if err := s.relaunchPlugin(); err != nil {
		t.Fatalf("relaunching the plugin: %v", err)
	}
	t.Logf("plugin relaunched and listening after %s", s.plugin.ready.Round(time.Millisecond))
}

// approverRefused says why the web API would refuse an approval from
// commander for stage ps, or "" when it accepts it (no authorized operators
// means anyone may approve).
func approverRefused(ps *model.PipelineStage, commander string) string {
	if len(ps.AuthorizedOperators) == 0 {
		return ""
	}
	for _, op := range ps.AuthorizedOperators {
		if op == commander {
			return ""
		}
	}
	return fmt.Sprintf("PermissionDenied: %q is not among the stage's authorized operators %v", commander, ps.AuthorizedOperators)
}

// crashDuringStage executes the stage, kills the plugin after killAfter
// seconds, relaunches it, and leaves req ready to be executed again as piped
// re-executes a stage it lost: status RUNNING. The killed call's stage
// commands are not marked handled (piped died before it could).
func (s *suite) crashDuringStage(t *T, ctx context.Context, req *deployment.ExecuteStageRequest, killAfter float64) {
	type kill struct {
		pid int
		err error
	}
	killed := make(chan kill, 1)
	timer := time.AfterFunc(time.Duration(killAfter*float64(time.Second)), func() {
		pid, err := s.plugin.killHard()
		killed <- kill{pid, err}
	})
	defer timer.Stop()
	name := req.Input.Stage.Name
	res, err := s.plugin.client.ExecuteStage(ctx, req)
	if err == nil {
		t.Fatalf("stage %q: ExecuteStage returned %v before the plugin was killed at %.1fs; use a longer stage", name, res.GetStatus(), killAfter)
	}
	k := <-killed
	if k.err != nil {
		t.Fatalf("stage %q: killing the plugin: %v", name, k.err)
	}
	t.Logf("stage %q: plugin (pid %d) killed with SIGKILL %.1fs into the call; the call ended with %v", name, k.pid, killAfter, status.Code(err))
	s.relaunch(t)
	req.Input.Stage.Status = model.StageStatus_STAGE_RUNNING
}

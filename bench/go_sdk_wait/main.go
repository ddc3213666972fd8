// Command go_sdk_wait is a WAIT stage plugin built on the official PipeCD
// Go plugin SDK (github.com/pipe-cd/piped-plugin-sdk-go). It is a benchmark
// anchor for pipeplug: the same stage, written the "official" way, so that
// pipeplug's latency, cold start and memory can be compared against it.
//
// Behaviour:
//   - FetchDefinedStages returns ["WAIT"].
//   - BuildPipelineSyncStages returns one non-rollback WAIT stage per
//     requested stage, keeping the request index.
//   - ExecuteStage reads `with.duration` (Go duration string, e.g. "30s").
//   - "0s" (or any zero duration) returns SUCCESS at once, without calling
//     piped (no metadata calls, no stage logs), so the SDK's own overhead
//     for an "immediate" ExecuteStage can be measured against a fake piped.
//   - A positive duration keeps the start time in stage metadata under
//     "startTime" (unix seconds, decimal string). When the stage is executed
//     again (e.g. after a piped restart) only the remainder is waited.
//     Progress is logged to the stage log every 10s. Cancellation returns
//     FAILURE (piped ignores replies to cancelled calls anyway).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	sdk "github.com/pipe-cd/piped-plugin-sdk-go"
	"github.com/pipe-cd/piped-plugin-sdk-go/unit"
	"go.uber.org/zap"
)

const (
	stageWait        = "WAIT"
	metadataStartKey = "startTime"
	progressInterval = 10 * time.Second
)

// version is reported by the SDK's `version` subcommand and admin /version.
// Override with -ldflags "-X main.version=...".
var version = "bench"

// Plugin-level, deploy-target and application config are all unused.
type (
	pluginConfig      struct{}
	deployTargetCfg   struct{}
	applicationConfig struct{}
)

// waitOptions is the `with:` block of a WAIT stage.
type waitOptions struct {
	Duration *unit.Duration `json:"duration"`
}

func parseWaitOptions(raw []byte) (time.Duration, error) {
	if len(raw) == 0 {
		return 0, errors.New("missing stage config: `with.duration` is required")
	}
	var opts waitOptions
	if err := json.Unmarshal(raw, &opts); err != nil {
		return 0, fmt.Errorf("invalid WAIT stage config: %w", err)
	}
	if opts.Duration == nil {
		return 0, errors.New("`with.duration` is required")
	}
	d := opts.Duration.Duration()
	if d < 0 {
		return 0, fmt.Errorf("`with.duration` must not be negative, got %s", d)
	}
	return d, nil
}

type waitStagePlugin struct{}

func (waitStagePlugin) FetchDefinedStages() []string {
	return []string{stageWait}
}

func (waitStagePlugin) BuildPipelineSyncStages(
	_ context.Context,
	_ *pluginConfig,
	in *sdk.BuildPipelineSyncStagesInput,
) (*sdk.BuildPipelineSyncStagesResponse, error) {
	out := make([]sdk.PipelineStage, 0, len(in.Request.Stages))
	for _, s := range in.Request.Stages {
		if s.Name != stageWait {
			return nil, fmt.Errorf("unsupported stage %q", s.Name)
		}
		if _, err := parseWaitOptions(s.Config); err != nil {
			return nil, fmt.Errorf("stage %d: %w", s.Index, err)
		}
		out = append(out, sdk.PipelineStage{
			Index:              s.Index,
			Name:               s.Name,
			Rollback:           false,
			Metadata:           map[string]string{},
			AvailableOperation: sdk.ManualOperationNone,
		})
	}
	return &sdk.BuildPipelineSyncStagesResponse{Stages: out}, nil
}

func (waitStagePlugin) ExecuteStage(
	ctx context.Context,
	_ *pluginConfig,
	_ []*sdk.DeployTarget[deployTargetCfg],
	in *sdk.ExecuteStageInput[applicationConfig],
) (*sdk.ExecuteStageResponse, error) {
	if in.Request.StageName != stageWait {
		return nil, fmt.Errorf("unsupported stage %q", in.Request.StageName)
	}

	duration, err := parseWaitOptions(in.Request.StageConfig)
	if err != nil {
		stageLog(in).Errorf("Failed to parse WAIT options: %v", err)
		return &sdk.ExecuteStageResponse{Status: sdk.StageStatusFailure}, nil
	}

	// Immediate path: touch nothing in piped.
	if duration == 0 {
		return &sdk.ExecuteStageResponse{Status: sdk.StageStatusSuccess}, nil
	}

	return waitFor(ctx, in, duration), nil
}

func waitFor(ctx context.Context, in *sdk.ExecuteStageInput[applicationConfig], duration time.Duration) *sdk.ExecuteStageResponse {
	lp := stageLog(in)
	now := time.Now()
	start := now

	// Resume: a previous attempt of this stage may have stored its start time.
	if v, found, err := in.Client.GetStageMetadata(ctx, metadataStartKey); err != nil {
		in.Logger.Warn("failed to read stage metadata; starting the wait from now", zap.Error(err))
	} else if found {
		if sec, perr := strconv.ParseInt(v, 10, 64); perr == nil && sec > 0 {
			if t := time.Unix(sec, 0); !t.After(now) {
				start = t
			}
		} else {
			in.Logger.Warn("ignoring malformed startTime metadata", zap.String("value", v))
		}
	}
	if err := in.Client.PutStageMetadata(ctx, metadataStartKey, strconv.FormatInt(start.Unix(), 10)); err != nil {
		in.Logger.Warn("failed to store startTime in stage metadata", zap.Error(err))
	}

	remaining := duration - now.Sub(start)
	if remaining <= 0 {
		lp.Infof("Wait of %s already elapsed (started at %s)", duration, start.UTC().Format(time.RFC3339))
		lp.Success("Wait finished")
		return &sdk.ExecuteStageResponse{Status: sdk.StageStatusSuccess}
	}
	if start.Equal(now) {
		lp.Infof("Waiting for %s", duration)
	} else {
		lp.Infof("Resuming wait: %s of %s remaining", remaining.Round(time.Second), duration)
	}

	deadline := time.NewTimer(remaining)
	defer deadline.Stop()
	ticker := time.NewTicker(progressInterval)
	defer ticker.Stop()

	for {
		select {
		case <-deadline.C:
			lp.Successf("Waited for %s", duration)
			return &sdk.ExecuteStageResponse{Status: sdk.StageStatusSuccess}
		case t := <-ticker.C:
			left := duration - t.Sub(start)
			if left < 0 {
				left = 0
			}
			lp.Infof("Waiting... %s elapsed, %s left", t.Sub(start).Round(time.Second), left.Round(time.Second))
		case <-ctx.Done():
			lp.Info("Wait cancelled")
			return &sdk.ExecuteStageResponse{Status: sdk.StageStatusFailure}
		}
	}
}

// stageLog returns the stage log persister, or a no-op one if the SDK gave none.
func stageLog(in *sdk.ExecuteStageInput[applicationConfig]) sdk.StageLogPersister {
	if in.Client != nil {
		if lp, err := in.Client.StageLogPersister(); err == nil && lp != nil {
			return lp
		}
	}
	return nopLog{}
}

type nopLog struct{}

func (nopLog) Write(b []byte) (int, error)     { return len(b), nil }
func (nopLog) Info(string)                     {}
func (nopLog) Infof(string, ...interface{})    {}
func (nopLog) Success(string)                  {}
func (nopLog) Successf(string, ...interface{}) {}
func (nopLog) Error(string)                    {}
func (nopLog) Errorf(string, ...interface{})   {}

func main() {
	plugin, err := sdk.NewPlugin(
		version,
		sdk.WithStagePlugin[pluginConfig, deployTargetCfg, applicationConfig](waitStagePlugin{}),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed to create plugin: %v\n", err)
		os.Exit(1)
	}
	if err := plugin.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "plugin stopped with error: %v\n", err)
		os.Exit(1)
	}
}

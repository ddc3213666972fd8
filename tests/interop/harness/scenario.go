package main

// Scenario files: the plugin-specific expectations, as JSON. See
// tests/interop/README.md for the format. Every field is optional; a missing
// scenario (or an empty one) gives the generic checks that any plugin serving
// FetchDefinedStages must pass.

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/pipe-cd/pipecd/pkg/model"
)

type Scenario struct {
	// Plugin name as in piped's spec.plugins[].name. Flag -name overrides it.
	Name string `json:"name"`
	// Plugin part of piped's config (spec.plugins[].config / deployTargets).
	Plugin struct {
		Config        json.RawMessage `json:"config,omitempty"`
		DeployTargets []struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels,omitempty"`
			Config json.RawMessage   `json:"config"`
		} `json:"deployTargets,omitempty"`
	} `json:"plugin"`

	// Exact set of stage names FetchDefinedStages must return.
	ExpectDefinedStages []string `json:"expectDefinedStages,omitempty"`
	// Stage names FetchDefinedStages must include.
	ExpectDefinedStagesInclude []string `json:"expectDefinedStagesInclude,omitempty"`
	// Loopback addresses the plugin must answer on. Default: 127.0.0.1 and ::1.
	Loopback []string `json:"loopback,omitempty"`
	// Max seconds from process start to a listening gRPC port. Default 30.
	StartupSeconds float64 `json:"startupSeconds,omitempty"`
	// Max seconds the plugin may take to exit after SIGTERM. Default 10.
	ShutdownSeconds float64 `json:"shutdownSeconds,omitempty"`

	Deployments []DeploymentCase `json:"deployments,omitempty"`

	Concurrency *ConcurrencyCase `json:"concurrency,omitempty"`

	// "OK", "UNIMPLEMENTED" or "ANY" (either; the default).
	Livestate   *RPCExpect `json:"livestate,omitempty"`
	PlanPreview *RPCExpect `json:"planPreview,omitempty"`
	// The app config used for livestate and plan preview. Default: the first
	// deployment's, else a plugins-keyed app.
	App json.RawMessage `json:"app,omitempty"`
}

type RPCExpect struct {
	Expect string `json:"expect"`
	// For livestate: minimum number of resources; for plan preview: results.
	MinItems int `json:"minItems,omitempty"`
}

// DeploymentCase is one deployment, planned like piped's planner and, when
// Execute is set, run like piped's scheduler.
type DeploymentCase struct {
	Name string `json:"name"`
	// The app config: a JSON object (converted to YAML) or a YAML string.
	App json.RawMessage `json:"app"`
	// The app config of the running (previous) commit. Default: App.
	RunningApp json.RawMessage `json:"runningApp,omitempty"`
	// Extra files in the application directory: relative path -> content.
	Files map[string]string `json:"files,omitempty"`
	// Files of the running commit's application directory. Default: Files.
	RunningFiles map[string]string `json:"runningFiles,omitempty"`
	// First deployment of the app: no last successful commit, no running source.
	First bool `json:"first"`
	// Trigger: commit message and commander (commander "" = a commit trigger),
	// and a sync strategy forced by the trigger ("QUICK_SYNC"/"PIPELINE").
	CommitMessage   string `json:"commitMessage,omitempty"`
	Commander       string `json:"commander,omitempty"`
	TriggerStrategy string `json:"triggerStrategy,omitempty"`
	// Deploy target names put into deployment.deploy_targets_by_plugin[<name>].
	// Default: every target of the plugin config.
	DeployTargets []string `json:"deployTargets,omitempty"`

	// What the plugin's own DetermineStrategy answers: "UNSUPPORTED",
	// "QUICK_SYNC", "PIPELINE" or "ANY" (default).
	ExpectPluginStrategy string `json:"expectPluginStrategy,omitempty"`
	// What piped's controller.DetermineStrategy decides: "QUICK_SYNC",
	// "PIPELINE" or "NONE" (no plugin decided: piped cannot plan).
	ExpectStrategy string `json:"expectStrategy,omitempty"`
	// Planning outcome: "PLANNED", "FAILED" or "ANY" (default "PLANNED").
	// With "ANY", a plan that failed skips execute (piped runs nothing).
	ExpectPlan string `json:"expectPlan,omitempty"`
	// Text piped's planning error must contain (each item); implies the plan failed.
	ExpectPlanErrorContains []string `json:"expectPlanErrorContains,omitempty"`
	// Expected planned stages, in piped's final order. Only given fields compare.
	ExpectStages []StageShape `json:"expectStages,omitempty"`
	// Expected versions from DetermineVersions (kind and version).
	ExpectVersions []struct {
		Kind    string `json:"kind"`
		Version string `json:"version"`
	} `json:"expectVersions,omitempty"`

	Execute bool `json:"execute"`
	// Per-stage instructions and expectations; the first match applies.
	Stages []StageCase `json:"stages,omitempty"`
	// SUCCESS, FAILURE, CANCELLED or RUNNING (parked). Default: not checked.
	ExpectDeploymentStatus string `json:"expectDeploymentStatus,omitempty"`
	// Deployment plugin metadata (namespace = plugin name): key -> value ("*" = any non-empty).
	ExpectPluginMetadata map[string]string `json:"expectPluginMetadata,omitempty"`
	// Application shared objects of this plugin: key -> value ("*" = any).
	ExpectSharedObjects map[string]string `json:"expectSharedObjects,omitempty"`
}

type StageShape struct {
	Name                string            `json:"name,omitempty"`
	Index               *int32            `json:"index,omitempty"`
	Rollback            *bool             `json:"rollback,omitempty"`
	Desc                *string           `json:"desc,omitempty"`
	AvailableOperation  string            `json:"availableOperation,omitempty"`
	AuthorizedOperators []string          `json:"authorizedOperators,omitempty"`
	Metadata            map[string]string `json:"metadata,omitempty"`
}

type StageCase struct {
	// Match: name, and optionally index and rollback.
	Name     string `json:"name"`
	Index    *int32 `json:"index,omitempty"`
	Rollback *bool  `json:"rollback,omitempty"`

	// Commands the control plane hands out for this stage.
	Commands []struct {
		Type         string  `json:"type"` // APPROVE_STAGE or SKIP_STAGE
		Commander    string  `json:"commander"`
		DelaySeconds float64 `json:"delaySeconds,omitempty"`
		// Send it through the web API's approver check: an APPROVE_STAGE from a
		// user outside the stage's authorized operators is then refused and
		// never reaches piped. Without it the command reaches piped as is.
		ViaWebAPI bool `json:"viaWebAPI,omitempty"`
	} `json:"commands,omitempty"`
	// Stage metadata already stored when the stage starts (a resumed stage).
	SeedMetadata map[string]string `json:"seedMetadata,omitempty"`
	// The stage status piped sends: NOT_STARTED_YET (default) or RUNNING (piped
	// re-executes a stage it lost in an ungraceful restart).
	SendStatus string `json:"sendStatus,omitempty"`

	// Cancel the ExecuteStage RPC this many seconds after the call (as piped
	// does on a UI cancel); 0 = no cancel.
	CancelAfterSeconds float64 `json:"cancelAfterSeconds,omitempty"`
	// After a cancel: seconds within which the plugin must have finished its
	// logs (completed=true) and answer again. Default 5.
	CancelWithinSeconds float64 `json:"cancelWithinSeconds,omitempty"`
	// Kill the plugin with SIGKILL this many seconds into the call, as a host
	// crash does, then launch it again like a restarted piped and execute the
	// stage again with status RUNNING; the checks apply to that second call.
	// 0 = no crash.
	KillAfterSeconds float64 `json:"killAfterSeconds,omitempty"`
	// The (second, after a crash) ExecuteStage must return within this many
	// seconds, e.g. to show a resumed stage did not start over. 0 = unchecked.
	ExpectWithinSeconds float64 `json:"expectWithinSeconds,omitempty"`
	// Harness timeout for the RPC. Default 60.
	TimeoutSeconds float64 `json:"timeoutSeconds,omitempty"`
	// Stop the plugin in the middle of this stage, relaunch it and execute the
	// stage again, as piped does after a restart; see InterruptCase.
	Interrupt *InterruptCase `json:"interrupt,omitempty"`

	// STAGE_SUCCESS, STAGE_FAILURE, ... (short names like SUCCESS work too):
	// the status the plugin returns. For a cancelled call: not checked.
	ExpectStatus string `json:"expectStatus,omitempty"`
	// "required" (default): the stage log is completed (completed=true);
	// "nonempty": completed and at least one block; "optional": checked only
	// if sent; "none": no logs at all. Every block sent is always checked.
	Logs              string   `json:"logs,omitempty"`
	ExpectLogContains []string `json:"expectLogContains,omitempty"`
	// Stage metadata saved to the control plane: key -> value ("*" = any non-empty).
	ExpectStageMetadata map[string]string `json:"expectStageMetadata,omitempty"`
}

// InterruptCase stops the plugin process while the stage runs: "KILL"
// (SIGKILL, as when the host dies) or "TERM" (piped's GracefulStop: SIGTERM,
// SIGKILL after 30 s). The harness then launches the plugin again, as a
// restarted piped does, and executes the stage again with status RUNNING and
// the same stage id; that run is checked as the StageCase says. Whatever
// reached the control plane's stage log store before the stop must still be
// there after the re-execution, and the log must not be completed before it.
type InterruptCase struct {
	Signal string `json:"signal"`
	// Stop once this many log blocks of the stage are in the store. Default 1.
	AfterBlocks int `json:"afterBlocks,omitempty"`
	// TERM: seconds within which the plugin must exit. Default 10 (piped's
	// deadline is 30).
	ExitWithinSeconds float64 `json:"exitWithinSeconds,omitempty"`
	// TERM: the reply the stopped call must end with (e.g. "RUNNING": piped
	// keeps the stage as it is). Default: not checked.
	ExpectStatus string `json:"expectStatus,omitempty"`
}

// ConcurrencyCase starts Count concurrent ExecuteStage calls of a long stage,
// checks the plugin still answers FetchDefinedStages, then cancels them all.
type ConcurrencyCase struct {
	App        json.RawMessage `json:"app"`
	StageIndex int32           `json:"stageIndex"`
	Count      int             `json:"count"`
	// Seconds to keep them in flight before cancelling. Default 2.
	HoldSeconds float64 `json:"holdSeconds,omitempty"`
}

// loadScenario reads a scenario file, replacing ${NAME} for each vars entry
// (JSON-escaped) first.
func loadScenario(path string, vars map[string]string) (*Scenario, error) {
	s := &Scenario{}
	if path == "" {
		return s, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	text := string(b)
	for k, v := range vars {
		q, _ := json.Marshal(v)
		text = strings.ReplaceAll(text, "${"+k+"}", string(q[1:len(q)-1]))
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// appYAML turns a scenario app config (a JSON object or a YAML string) into the
// bytes of an app.pipecd.yaml file.
func appYAML(raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("no app config")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return []byte(s), nil
	}
	return yaml.JSONToYAML(raw)
}

func parseStageStatus(s string) (model.StageStatus, error) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(s, "STAGE_") {
		s = "STAGE_" + s
	}
	v, ok := model.StageStatus_value[s]
	if !ok {
		return 0, fmt.Errorf("unknown stage status %q", s)
	}
	return model.StageStatus(v), nil
}

func parseManualOperation(s string) (model.ManualOperation, error) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(s, "MANUAL_OPERATION_") {
		s = "MANUAL_OPERATION_" + s
	}
	v, ok := model.ManualOperation_value[s]
	if !ok {
		return 0, fmt.Errorf("unknown manual operation %q", s)
	}
	return model.ManualOperation(v), nil
}

func (c *StageCase) matches(ps *model.PipelineStage) bool {
	if c.Name != ps.Name {
		return false
	}
	if c.Index != nil && *c.Index != ps.Index {
		return false
	}
	if c.Rollback != nil && *c.Rollback != ps.Rollback {
		return false
	}
	return true
}

package main

// The checks. Planning follows pkg/app/pipedv1/controller/planner.go (buildPlan,
// buildQuickSyncStages, buildPipelineSyncStages, validateStageIndexes) and
// execution follows scheduler.go (executeStage and the stage loop), written
// here against piped's exported API because those functions are unexported.
// Where piped exports the real thing (DetermineStrategy, the plugin registry,
// config parsing, GetStageConfigByte, FindRollbackStages, the PGV validators,
// MergeApplicationSyncState) it is called directly.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pipe-cd/pipecd/pkg/app/pipedv1/controller"
	"github.com/pipe-cd/pipecd/pkg/app/pipedv1/plugin"
	"github.com/pipe-cd/pipecd/pkg/app/server/service/pipedservice"
	config "github.com/pipe-cd/pipecd/pkg/configv1"
	"github.com/pipe-cd/pipecd/pkg/model"
	pluginapi "github.com/pipe-cd/pipecd/pkg/plugin/api/v1alpha1"
	"github.com/pipe-cd/pipecd/pkg/plugin/api/v1alpha1/common"
	"github.com/pipe-cd/pipecd/pkg/plugin/api/v1alpha1/deployment"
	"github.com/pipe-cd/pipecd/pkg/plugin/api/v1alpha1/livestate"
	"github.com/pipe-cd/pipecd/pkg/plugin/api/v1alpha1/planpreview"
)

const (
	pipedID   = "piped-interop"
	projectID = "project-interop"
	appID     = "app-interop"
	appName   = "interop-app"
	appPath   = "apps/interop"
	appFile   = "app.pipecd.yaml"
	repoID    = "repo-interop"
)

type suite struct {
	ctx        context.Context
	logger     *zap.Logger
	tmp        string
	scenario   *Scenario
	name       string
	cp         *fakeControlPlane
	piped      *pipedSide
	plugin     *launchedPlugin
	registry   plugin.PluginRegistry
	stages     []string
	verbose    bool
	targetsAll []string
	seq        int
}

func randomHash() string {
	b := make([]byte, 20)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// writeSource lays out a repository copy the way deploysource does and returns
// the plugin-side DeploymentSource.
func (s *suite) writeSource(tag string, appCfg []byte, files map[string]string, commit string) (*common.DeploymentSource, error) {
	s.seq++
	repo := filepath.Join(s.tmp, "sources", fmt.Sprintf("%03d-%s", s.seq, tag), "repo")
	dir := filepath.Join(repo, appPath)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(repo, ".pipe"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, appFile), appCfg, 0o644); err != nil {
		return nil, err
	}
	for p, c := range files {
		fp := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(fp, []byte(c), 0o644); err != nil {
			return nil, err
		}
	}
	return &common.DeploymentSource{
		ApplicationDirectory:      dir,
		CommitHash:                commit,
		ApplicationConfig:         appCfg,
		ApplicationConfigFilename: appFile,
		SharedConfigDirectory:     filepath.Join(repo, ".pipe"),
	}, nil
}

func (s *suite) newDeployment(dc *DeploymentCase, commit, runningCommit string) *model.Deployment {
	now := time.Now().Unix()
	targets := dc.DeployTargets
	if targets == nil {
		targets = s.targetsAll
	}
	d := &model.Deployment{
		Id:              uuid.New().String(),
		ApplicationId:   appID,
		ApplicationName: appName,
		PipedId:         pipedID,
		ProjectId:       projectID,
		Kind:            model.ApplicationKind_KUBERNETES, // deprecated; what pipedv1 apps carry by default
		GitPath: &model.ApplicationGitPath{
			Repo:           &model.ApplicationGitRepository{Id: repoID, Remote: "git@example.invalid:interop/repo.git", Branch: "main"},
			Path:           appPath,
			ConfigFilename: appFile,
		},
		Labels: map[string]string{"env": "interop"},
		Trigger: &model.DeploymentTrigger{
			Commit: &model.Commit{
				Hash:      commit,
				Message:   firstNonEmpty(dc.CommitMessage, "interop: "+dc.Name),
				Author:    "interop-author",
				Branch:    "main",
				CreatedAt: now,
			},
			Commander: dc.Commander,
			Timestamp: now,
		},
		RunningCommitHash:     runningCommit,
		RunningConfigFilename: appFile,
		Status:                model.DeploymentStatus_DEPLOYMENT_PENDING,
		CreatedAt:             now,
		UpdatedAt:             now,
	}
	if len(targets) > 0 {
		d.DeployTargetsByPlugin = map[string]*model.DeployTargets{s.name: {DeployTargets: targets}}
	}
	if dc.TriggerStrategy != "" {
		d.Trigger.SyncStrategy = model.SyncStrategy(model.SyncStrategy_value[dc.TriggerStrategy])
		d.Trigger.StrategySummary = "forced by the trigger"
	}
	return d
}

func firstNonEmpty(a ...string) string {
	for _, s := range a {
		if s != "" {
			return s
		}
	}
	return ""
}

// ---------------------------------------------------------------- registry

func (s *suite) checkRegistry(t *T) {
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	// Exactly what piped does after launching the plugins.
	reg, err := plugin.NewPluginRegistry(ctx, []plugin.Plugin{{Name: s.name, Cli: s.plugin.client}})
	if err != nil {
		t.Fatalf("plugin.NewPluginRegistry failed, piped would refuse to start: %v", err)
	}
	s.registry = reg
	res, err := s.plugin.client.FetchDefinedStages(ctx, &deployment.FetchDefinedStagesRequest{})
	if err != nil {
		t.Fatalf("FetchDefinedStages: %v", err)
	}
	s.stages = res.Stages
	t.Logf("defined stages: %v", res.Stages)
	seen := map[string]bool{}
	for _, st := range res.Stages {
		if st == "" {
			t.Errorf("FetchDefinedStages returned an empty stage name")
		}
		if seen[st] {
			t.Errorf("FetchDefinedStages returned %q twice", st)
		}
		seen[st] = true
		if cli, err := reg.GetPluginClientByStageName(st); err != nil || cli.Name() != s.name {
			t.Errorf("registry does not route stage %q to the plugin: %v", st, err)
		}
	}
	if exp := s.scenario.ExpectDefinedStages; exp != nil {
		got := append([]string(nil), res.Stages...)
		want := append([]string(nil), exp...)
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("defined stages = %v, want exactly %v", got, want)
		}
	}
	for _, st := range s.scenario.ExpectDefinedStagesInclude {
		if !seen[st] {
			t.Errorf("defined stages %v lack %q", res.Stages, st)
		}
	}
}

// checkLoopback checks that the plugin answers on every loopback address, since
// piped dials "localhost:<port>", which may resolve to either.
func (s *suite) checkLoopback(t *T) {
	addrs := s.scenario.Loopback
	if addrs == nil {
		addrs = []string{"127.0.0.1", "::1"}
	}
	for _, a := range addrs {
		if a == "::1" && !hasIPv6Loopback() {
			t.Logf("no IPv6 loopback on this host; ::1 not checked")
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		addr := fmt.Sprintf("%s:%d", a, s.plugin.port)
		if strings.Contains(a, ":") {
			addr = fmt.Sprintf("[%s]:%d", a, s.plugin.port)
		}
		cli, err := pluginapi.NewClient(ctx, s.name, addr, dialOpts()...)
		if err != nil {
			t.Errorf("plugin does not accept connections on %s: %v", addr, err)
			cancel()
			continue
		}
		if _, err := cli.FetchDefinedStages(ctx, &deployment.FetchDefinedStagesRequest{}); err != nil {
			t.Errorf("FetchDefinedStages via %s: %v", addr, err)
		}
		cli.Close()
		cancel()
	}
}

// ---------------------------------------------------------------- planning

type plan struct {
	dc         *DeploymentCase
	spec       *config.GenericApplicationSpec
	d          *model.Deployment
	target     *common.DeploymentSource
	running    *common.DeploymentSource
	strategy   model.SyncStrategy
	summary    string
	versions   []*model.ArtifactVersion
	stages     []*model.PipelineStage
	planErr    error // why piped's planner would fail the deployment
	lastCommit string
}

func (s *suite) prepare(t *T, dc *DeploymentCase) *plan {
	p := &plan{dc: dc}
	target, err := appYAML(dc.App)
	if err != nil {
		t.Fatalf("scenario: %v", err)
	}
	commit := randomHash()
	if p.target, err = s.writeSource("target", target, dc.Files, commit); err != nil {
		t.Fatalf("writing target source: %v", err)
	}
	if !dc.First {
		running := target
		if len(dc.RunningApp) > 0 {
			if running, err = appYAML(dc.RunningApp); err != nil {
				t.Fatalf("scenario: %v", err)
			}
		}
		p.lastCommit = randomHash()
		files := dc.Files
		if dc.RunningFiles != nil {
			files = dc.RunningFiles
		}
		if p.running, err = s.writeSource("running", running, files, p.lastCommit); err != nil {
			t.Fatalf("writing running source: %v", err)
		}
	}
	cfg, err := config.DecodeYAML[*config.GenericApplicationSpec](target)
	if err != nil {
		t.Fatalf("scenario app config does not parse with piped's parser: %v", err)
	}
	p.spec = cfg.Spec
	p.d = s.newDeployment(dc, commit, p.lastCommit)
	return p
}

// planDeployment runs the planning RPCs as piped's planner does and checks the
// answers as piped and the control plane would.
func (s *suite) planDeployment(t *T, dc *DeploymentCase) *plan {
	p := s.prepare(t, dc)
	ctx, cancel := context.WithTimeout(s.ctx, 60*time.Second)
	defer cancel()

	// The controller registers a metadata store for the deployment while planning.
	s.piped.mds.Register(p.d)

	plugins, err := s.registry.GetPluginClientsByAppConfig(p.spec)
	if err != nil {
		t.Fatalf("registry.GetPluginClientsByAppConfig: %v", err)
	}
	input := &deployment.PlanPluginInput{Deployment: p.d, RunningDeploymentSource: p.running, TargetDeploymentSource: p.target}
	if err := (&deployment.DetermineVersionsRequest{Input: input}).Validate(); err != nil {
		t.Fatalf("harness bug: our PlanPluginInput is invalid: %v", err)
	}

	// 1. DetermineVersions.
	for _, plg := range plugins {
		res, err := plg.DetermineVersions(ctx, &deployment.DetermineVersionsRequest{Input: input})
		if err != nil {
			t.Logf("DetermineVersions error (piped logs it and skips the plugin): %v", err)
			continue
		}
		for _, v := range res.Versions {
			if _, ok := model.ArtifactVersion_Kind_name[int32(v.GetKind())]; !ok {
				t.Errorf("DetermineVersions: version %v has an undefined kind", v)
			}
			if err := v.Validate(); err != nil {
				t.Errorf("DetermineVersions: version %v fails the control plane's validation: %v", v, err)
			}
		}
		p.versions = append(p.versions, res.Versions...)
	}
	if dc.ExpectVersions != nil {
		if len(dc.ExpectVersions) != len(p.versions) {
			t.Errorf("versions = %v, want %v", p.versions, dc.ExpectVersions)
		} else {
			for i, ev := range dc.ExpectVersions {
				v := p.versions[i]
				if (ev.Kind != "" && ev.Kind != v.Kind.String()) || (ev.Version != "" && ev.Version != v.Version) {
					t.Errorf("version[%d] = %s/%s, want %s/%s", i, v.Kind, v.Version, ev.Kind, ev.Version)
				}
			}
		}
	}
	if len(p.versions) == 0 {
		p.versions = []*model.ArtifactVersion{{Kind: model.ArtifactVersion_UNKNOWN, Version: "unknown"}}
	}

	// 2a. The plugin's own answer to DetermineStrategy (piped may decide
	// before asking, so this call is made here unconditionally).
	for _, plg := range plugins {
		res, err := plg.DetermineStrategy(ctx, &deployment.DetermineStrategyRequest{Input: input})
		got := ""
		switch {
		case err != nil:
			got = "ERROR"
			t.Logf("DetermineStrategy error (piped logs it and skips the plugin): %v", err)
		case res.Unsupported:
			got = "UNSUPPORTED"
		default:
			got = res.SyncStrategy.String()
			if res.SyncStrategy != model.SyncStrategy_QUICK_SYNC && res.SyncStrategy != model.SyncStrategy_PIPELINE {
				t.Errorf("DetermineStrategy answered %s without unsupported=true; piped then cannot plan", res.SyncStrategy)
			}
		}
		if e := dc.ExpectPluginStrategy; e != "" && e != "ANY" && e != got {
			t.Errorf("plugin DetermineStrategy = %s, want %s", got, e)
		}
	}

	// 2b. piped's own strategy decision.
	p.strategy, p.summary, err = controller.DetermineStrategy(ctx, p.spec, plugins, input, p.d.GetTrigger(), p.lastCommit, s.logger)
	if err != nil {
		t.Fatalf("controller.DetermineStrategy: %v", err)
	}
	gotStrategy := p.strategy.String()
	if p.strategy == model.SyncStrategy_AUTO {
		gotStrategy = "NONE"
	}
	t.Logf("piped strategy: %s (%q)", gotStrategy, p.summary)
	if e := dc.ExpectStrategy; e != "" && e != "ANY" && e != gotStrategy {
		t.Errorf("piped's DetermineStrategy = %s, want %s", gotStrategy, e)
	}

	// 3/4. Stages.
	switch p.strategy {
	case model.SyncStrategy_QUICK_SYNC:
		p.stages, p.planErr = s.buildQuickSyncStages(t, ctx, p.spec, plugins)
	case model.SyncStrategy_PIPELINE:
		p.stages, p.planErr = s.buildPipelineSyncStages(t, ctx, p.spec)
	default:
		p.planErr = fmt.Errorf("unable to plan the deployment")
	}

	outcome := "PLANNED"
	if p.planErr != nil {
		outcome = "FAILED"
		t.Logf("piped would fail the deployment: Unable to plan the deployment (%v)", p.planErr)
	}
	exp := firstNonEmpty(dc.ExpectPlan, "PLANNED")
	if exp != "ANY" && exp != outcome {
		t.Errorf("plan outcome = %s, want %s", outcome, exp)
	}
	for _, want := range dc.ExpectPlanErrorContains {
		if p.planErr == nil || !strings.Contains(p.planErr.Error(), want) {
			t.Errorf("planning error = %v, want one containing %q", p.planErr, want)
		}
	}
	if p.planErr == nil {
		s.checkPlannedStages(t, p)
	}
	if p.planErr != nil || !dc.Execute {
		s.piped.mds.Delete(p.d.Id)
	}
	return p
}

func (s *suite) buildQuickSyncStages(t *T, ctx context.Context, spec *config.GenericApplicationSpec, plugins []pluginapi.PluginClient) ([]*model.PipelineStage, error) {
	rollback := *spec.Planner.AutoRollback
	var stages, rollbacks []*model.PipelineStage
	for _, plg := range plugins {
		res, err := plg.BuildQuickSyncStages(ctx, &deployment.BuildQuickSyncStagesRequest{Rollback: rollback})
		if err != nil {
			return nil, fmt.Errorf("BuildQuickSyncStages: %w", err)
		}
		for _, st := range res.Stages {
			st.Id = uuid.New().String()
			if st.Rollback {
				rollbacks = append(rollbacks, st)
			} else {
				stages = append(stages, st)
			}
		}
	}
	stages = append(stages, rollbacks...)
	if len(stages) == 0 {
		return nil, fmt.Errorf("unable to build quick sync stages for deployment")
	}
	return stages, nil
}

func (s *suite) buildPipelineSyncStages(t *T, ctx context.Context, spec *config.GenericApplicationSpec) ([]*model.PipelineStage, error) {
	rollback := *spec.Planner.AutoRollback
	type group struct {
		cli  pluginapi.PluginClient
		cfgs []*deployment.BuildPipelineSyncStagesRequest_StageConfig
	}
	var groups []*group
	byCli := map[pluginapi.PluginClient]*group{}
	for i, sc := range spec.Pipeline.Stages {
		cli, err := s.registry.GetPluginClientByStageName(sc.Name.String())
		if err != nil {
			return nil, fmt.Errorf("stage %q: %w", sc.Name, err)
		}
		g, ok := byCli[cli]
		if !ok {
			g = &group{cli: cli}
			byCli[cli] = g
			groups = append(groups, g)
		}
		g.cfgs = append(g.cfgs, &deployment.BuildPipelineSyncStagesRequest_StageConfig{
			Name: sc.Name.String(), Desc: sc.Desc, Index: int32(i), Config: sc.With,
		})
	}
	var stages, rollbacks []*model.PipelineStage
	for _, g := range groups {
		res, err := g.cli.BuildPipelineSyncStages(ctx, &deployment.BuildPipelineSyncStagesRequest{Stages: g.cfgs, Rollback: rollback})
		if err != nil {
			return nil, fmt.Errorf("BuildPipelineSyncStages: %w", err)
		}
		if err := checkStageIndexes(g.cfgs, res.Stages); err != nil {
			// piped fails the plan here; that is always a plugin bug.
			t.Errorf("BuildPipelineSyncStages: %v (piped fails the plan)", err)
			return nil, err
		}
		for _, st := range res.Stages {
			st.Id = uuid.New().String()
			if st.Rollback {
				rollbacks = append(rollbacks, st)
			} else {
				stages = append(stages, st)
			}
		}
	}
	sort.Sort(model.PipelineStages(stages))
	sort.Sort(model.PipelineStages(rollbacks))
	prev := ""
	for _, st := range stages {
		if prev != "" {
			st.Requires = []string{prev}
		}
		prev = st.Id
	}
	stages = append(stages, rollbacks...)
	if len(stages) == 0 {
		return nil, fmt.Errorf("unable to build pipeline sync stages for deployment")
	}
	return stages, nil
}

// checkStageIndexes applies the rules of piped's validateStageIndexes.
func checkStageIndexes(req []*deployment.BuildPipelineSyncStagesRequest_StageConfig, res []*model.PipelineStage) error {
	normal, rb, allowed := map[int32]bool{}, map[int32]bool{}, map[int32]bool{}
	for _, r := range req {
		allowed[r.Index] = true
	}
	for _, st := range res {
		m := normal
		kind := "stage"
		if st.Rollback {
			m, kind = rb, "rollback stage"
		}
		if m[st.Index] {
			return fmt.Errorf("%s index %d from plugin is duplicated", kind, st.Index)
		}
		m[st.Index] = true
	}
	for _, st := range res {
		if !allowed[st.Index] {
			return fmt.Errorf("stage index %d from plugin is not defined in the request", st.Index)
		}
	}
	return nil
}

func (s *suite) checkPlannedStages(t *T, p *plan) {
	for _, st := range p.stages {
		where := fmt.Sprintf("planned stage %q (index %d, rollback %v)", st.Name, st.Index, st.Rollback)
		if st.Name == "" {
			t.Errorf("%s: empty name", where)
		} else if cli, err := s.registry.GetPluginClientByStageName(st.Name); err != nil || cli.Name() != s.name {
			t.Errorf("%s: name is not in FetchDefinedStages, piped cannot route its execution", where)
		}
		if st.Status != model.StageStatus_STAGE_NOT_STARTED_YET {
			t.Errorf("%s: status %s, want STAGE_NOT_STARTED_YET", where, st.Status)
		}
		if st.CreatedAt <= 0 || st.UpdatedAt <= 0 {
			t.Errorf("%s: created_at=%d updated_at=%d, both must be > 0", where, st.CreatedAt, st.UpdatedAt)
		}
		if _, ok := model.ManualOperation_name[int32(st.AvailableOperation)]; !ok {
			t.Errorf("%s: available_operation %d is not a defined value", where, st.AvailableOperation)
		}
	}
	// What the control plane's request validation does with ReportDeploymentPlanned.
	req := &pipedservice.ReportDeploymentPlannedRequest{
		DeploymentId:          p.d.Id,
		Summary:               p.summary,
		StatusReason:          "The deployment has been planned",
		RunningCommitHash:     p.lastCommit,
		RunningConfigFilename: appFile,
		SyncStrategy:          p.strategy,
		Versions:              p.versions,
		Stages:                p.stages,
	}
	if err := req.Validate(); err != nil {
		t.Errorf("the control plane would reject ReportDeploymentPlanned (deployment stays PENDING): %v", err)
	}
	var b strings.Builder
	for _, st := range p.stages {
		fmt.Fprintf(&b, " %s[i=%d rb=%v op=%s]", st.Name, st.Index, st.Rollback, st.AvailableOperation)
	}
	t.Logf("planned stages:%s", b.String())

	if exp := p.dc.ExpectStages; exp != nil {
		if len(exp) != len(p.stages) {
			t.Errorf("planned %d stages, want %d", len(p.stages), len(exp))
			return
		}
		for i, e := range exp {
			st := p.stages[i]
			if e.Name != "" && e.Name != st.Name {
				t.Errorf("stage[%d].name = %q, want %q", i, st.Name, e.Name)
			}
			if e.Index != nil && *e.Index != st.Index {
				t.Errorf("stage[%d].index = %d, want %d", i, st.Index, *e.Index)
			}
			if e.Rollback != nil && *e.Rollback != st.Rollback {
				t.Errorf("stage[%d].rollback = %v, want %v", i, st.Rollback, *e.Rollback)
			}
			if e.Desc != nil && *e.Desc != st.Desc {
				t.Errorf("stage[%d].desc = %q, want %q", i, st.Desc, *e.Desc)
			}
			if e.AvailableOperation != "" {
				op, err := parseManualOperation(e.AvailableOperation)
				if err != nil {
					t.Fatalf("scenario: %v", err)
				}
				if op != st.AvailableOperation {
					t.Errorf("stage[%d].available_operation = %s, want %s", i, st.AvailableOperation, op)
				}
			}
			if e.AuthorizedOperators != nil && strings.Join(e.AuthorizedOperators, ",") != strings.Join(st.AuthorizedOperators, ",") {
				t.Errorf("stage[%d].authorized_operators = %v, want %v", i, st.AuthorizedOperators, e.AuthorizedOperators)
			}
			for k, v := range e.Metadata {
				if got, ok := st.Metadata[k]; !ok || (v != "*" && got != v) {
					t.Errorf("stage[%d].metadata[%q] = %q, want %q", i, k, got, v)
				}
			}
		}
	}
}

// ---------------------------------------------------------------- execution

type stageRun struct {
	ps          *model.PipelineStage
	res         *deployment.ExecuteStageResponse
	err         error
	cancelled   bool
	cancelledAt time.Time
	startedAt   time.Time
	returnedAt  time.Time
	timedOut    bool
	piped       model.StageStatus // what piped records for the stage
}

func (s *suite) stageCase(dc *DeploymentCase, ps *model.PipelineStage) *StageCase {
	for i := range dc.Stages {
		if dc.Stages[i].matches(ps) {
			return &dc.Stages[i]
		}
	}
	return &StageCase{}
}

func (s *suite) executeStage(t *T, p *plan, ps *model.PipelineStage, sc *StageCase) *stageRun {
	r := &stageRun{ps: ps}
	var stageConfig []byte
	if !p.d.IsQuickSync() {
		cfg, ok := p.spec.GetStageConfigByte(ps.Index)
		if !ok {
			t.Errorf("stage %q: no pipeline stage at index %d; piped records FAILURE without calling the plugin", ps.Name, ps.Index)
			r.piped = model.StageStatus_STAGE_FAILURE
			return r
		}
		stageConfig = cfg
	}
	for _, c := range sc.Commands {
		typ, ok := model.Command_Type_value[c.Type]
		if !ok {
			t.Fatalf("scenario: unknown command type %q", c.Type)
		}
		now := time.Now().Unix()
		cmd := &model.Command{
			Id: uuid.New().String(), PipedId: pipedID, ApplicationId: appID, DeploymentId: p.d.Id,
			StageId: ps.Id, Commander: c.Commander, ProjectId: projectID, Type: model.Command_Type(typ),
			CreatedAt: now, UpdatedAt: now,
		}
		switch cmd.Type {
		case model.Command_APPROVE_STAGE:
			if why := approverRefused(ps, c.Commander); c.ViaWebAPI && why != "" {
				t.Logf("stage %q: the web API refuses the approval of %q: %s", ps.Name, c.Commander, why)
				continue
			}
			cmd.ApproveStage = &model.Command_ApproveStage{DeploymentId: p.d.Id, StageId: ps.Id}
		case model.Command_SKIP_STAGE:
			cmd.SkipStage = &model.Command_SkipStage{DeploymentId: p.d.Id, StageId: ps.Id}
		}
		s.cp.addCommand(cmd, time.Duration(c.DelaySeconds*float64(time.Second)))
	}
	req := &deployment.ExecuteStageRequest{Input: &deployment.ExecutePluginInput{
		Deployment:              p.d,
		Stage:                   ps,
		StageConfig:             stageConfig,
		RunningDeploymentSource: p.running,
		TargetDeploymentSource:  p.target,
	}}
	if err := req.Validate(); err != nil {
		t.Fatalf("harness bug: our ExecuteStageRequest is invalid: %v", err)
	}
	timeout := time.Duration(firstPositive(sc.TimeoutSeconds, 60) * float64(time.Second))
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	var cancelTimer *time.Timer
	cancelled := make(chan time.Time, 1)
	if sc.CancelAfterSeconds > 0 {
		cancelTimer = time.AfterFunc(time.Duration(sc.CancelAfterSeconds*float64(time.Second)), func() {
			cancelled <- time.Now()
			cancel()
		})
	}
	if sc.KillAfterSeconds > 0 {
		s.crashDuringStage(t, ctx, req, sc.KillAfterSeconds)
	}
	r.startedAt = time.Now()
	r.res, r.err = s.plugin.client.ExecuteStage(ctx, req)
	r.returnedAt = time.Now()
	if limit := sc.ExpectWithinSeconds; limit > 0 && r.returnedAt.Sub(r.startedAt) > time.Duration(limit*float64(time.Second)) {
		t.Errorf("stage %q: ExecuteStage took %s, want at most %.1fs", ps.Name, r.returnedAt.Sub(r.startedAt).Round(time.Millisecond), limit)
	}
	if cancelTimer != nil && !cancelTimer.Stop() {
		r.cancelledAt = <-cancelled
	}
	// piped's result handling (scheduler.executeStage).
	switch {
	case ctx.Err() == context.Canceled:
		r.cancelled = true
		r.piped = model.StageStatus_STAGE_CANCELLED
	case ctx.Err() == context.DeadlineExceeded:
		r.timedOut = true
		r.piped = model.StageStatus_STAGE_FAILURE
	case r.err != nil:
		r.piped = model.StageStatus_STAGE_FAILURE
	default:
		r.piped = r.res.Status
	}
	if !ps.Rollback {
		if err := s.piped.cmdStore.Reporter().ReportStageCommandsHandled(s.ctx, p.d.Id, ps.Id); err != nil {
			t.Logf("ReportStageCommandsHandled: %v", err)
		}
	}
	return r
}

func firstPositive(a ...float64) float64 {
	for _, v := range a {
		if v > 0 {
			return v
		}
	}
	return 0
}

// checkStageRun checks one executed stage: the reply, the logs and the metadata
// that reached the control plane.
func (s *suite) checkStageRun(t *T, p *plan, r *stageRun, sc *StageCase) {
	ps := r.ps
	where := fmt.Sprintf("stage %q (index %d%s)", ps.Name, ps.Index, map[bool]string{true: ", rollback"}[ps.Rollback])
	t.Logf("%s: ExecuteStage took %s; piped records %s", where, r.returnedAt.Sub(r.startedAt).Round(time.Millisecond), r.piped)
	if r.timedOut {
		t.Errorf("%s: ExecuteStage did not return within the harness timeout", where)
	}
	logWait := 3 * time.Second
	switch {
	case sc.CancelAfterSeconds > 0 && !r.cancelled:
		t.Errorf("%s: ExecuteStage returned (%v, %v) before the cancel at %.1fs; use a longer stage", where, r.res.GetStatus(), r.err, sc.CancelAfterSeconds)
	case r.cancelled:
		d := r.returnedAt.Sub(r.cancelledAt)
		t.Logf("%s: call ended %s after the cancel (code %s)", where, d.Round(time.Millisecond), status.Code(r.err))
		if d > 2*time.Second || status.Code(r.err) != codes.Canceled {
			t.Errorf("%s: cancelled ExecuteStage ended after %s with %v, want a prompt CANCELED", where, d, r.err)
		}
		logWait = time.Duration(firstPositive(sc.CancelWithinSeconds, 5) * float64(time.Second))
		// The plugin must still be able to serve after a cancel.
		hctx, hcancel := context.WithTimeout(s.ctx, 5*time.Second)
		if _, err := s.plugin.client.FetchDefinedStages(hctx, &deployment.FetchDefinedStagesRequest{}); err != nil {
			t.Errorf("%s: plugin does not answer FetchDefinedStages after the cancel: %v", where, err)
		}
		hcancel()
	case r.err != nil:
		t.Logf("%s: ExecuteStage error: %v", where, r.err)
		if sc.ExpectStatus != "" {
			t.Errorf("%s: ExecuteStage failed with %v, want reply %s", where, r.err, sc.ExpectStatus)
		}
	default:
		if _, ok := model.StageStatus_name[int32(r.res.Status)]; !ok {
			t.Errorf("%s: reply status %d is not a defined StageStatus", where, r.res.Status)
		}
		if sc.ExpectStatus != "" {
			want, err := parseStageStatus(sc.ExpectStatus)
			if err != nil {
				t.Fatalf("scenario: %v", err)
			}
			if want != r.res.Status {
				t.Errorf("%s: reply status %s, want %s", where, r.res.Status, want)
			}
		} else if r.res.Status == model.StageStatus_STAGE_NOT_STARTED_YET || r.res.Status == model.StageStatus_STAGE_RUNNING {
			t.Errorf("%s: reply status %s parks the deployment in piped", where, r.res.Status)
		}
	}

	// Logs: wait for completed=true when logs are required. "required" means a log that has lines
	// must be completed; a stage that wrote nothing need not send completed=true (the Go SDK does
	// not either). "nonempty" also demands lines.
	mode := firstNonEmpty(sc.Logs, "required")
	deadline := time.Now().Add(logWait)
	snap := s.cp.stageLogs(p.d.Id, ps.Id)
	mustComplete := func(snap logSnapshot) bool {
		return mode == "nonempty" || (mode == "required" && len(snap.blocks) > 0)
	}
	for mustComplete(snap) && !snap.completed && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		snap = s.cp.stageLogs(p.d.Id, ps.Id)
	}
	if mode != "none" {
		// A little more time for blocks sent after completion (which are errors).
		time.Sleep(200 * time.Millisecond)
		snap = s.cp.stageLogs(p.d.Id, ps.Id)
	}
	var text strings.Builder
	for _, b := range snap.blocks {
		fmt.Fprintf(&text, "[%s] %s\n", strings.TrimPrefix(b.Severity.String(), "LOG_SEVERITY_"), b.Log)
	}
	switch mode {
	case "required", "nonempty":
		if mode == "nonempty" && len(snap.blocks) == 0 {
			t.Errorf("%s: no log blocks reached the control plane", where)
		}
		if mustComplete(snap) && !snap.completed {
			t.Errorf("%s: stage log never marked completed (ReportStageLogsFromLastCheckpoint completed=true) within %s", where, logWait)
		}
	case "none":
		if len(snap.blocks) > 0 {
			t.Errorf("%s: expected no logs, got %d blocks", where, len(snap.blocks))
		}
	case "optional":
	default:
		t.Fatalf("scenario: logs must be required, nonempty, optional or none, not %q", mode)
	}
	if snap.completed {
		lag := snap.completedAt.Sub(r.returnedAt)
		t.Logf("%s: %d blocks in %d plain + %d checkpoint calls; completed %s the ExecuteStage reply", where,
			len(snap.blocks), snap.plainCalls, snap.ckptCalls, map[bool]string{true: fmt.Sprintf("%s after", lag.Round(time.Millisecond)), false: fmt.Sprintf("%s before", (-lag).Round(time.Millisecond))}[lag >= 0])
	}
	for _, pr := range snap.problems {
		t.Errorf("%s: %s", where, pr)
	}
	if len(snap.plainOnly) > 0 {
		t.Errorf("%s: blocks %v were sent with ReportStageLogs but never repeated in a checkpoint call; the control plane drops them from the cached view and never persists them", where, snap.plainOnly)
	}
	if snap.lateCalls > 0 {
		t.Errorf("%s: %d log calls after completed=true (FAILED_PRECONDITION from the control plane)", where, snap.lateCalls)
	}
	for _, rc := range snap.retriedCount {
		if rc != 0 {
			t.Errorf("%s: logs sent with retried_count=%d; pipedv1 stages always have 0", where, rc)
		}
	}
	for _, want := range sc.ExpectLogContains {
		if !strings.Contains(text.String(), want) {
			t.Errorf("%s: logs do not contain %q", where, want)
		}
	}
	if t.failed || s.verbose {
		t.Logf("%s: logs received:\n%s", where, firstNonEmpty(strings.TrimRight(text.String(), "\n"), "(none)"))
	}

	md, saves := s.cp.getStageMetadata(ps.Id)
	if len(md) > 0 || s.verbose {
		t.Logf("%s: stage metadata after %d saves: %v", where, saves, md)
	}
	for k, v := range sc.ExpectStageMetadata {
		got, ok := md[k]
		if !ok || (v == "*" && got == "") || (v != "*" && got != v) {
			t.Errorf("%s: stage metadata[%q] = %q (present %v), want %q", where, k, got, ok, v)
		}
	}
}

// executeDeployment runs the planned stages like piped's scheduler.
func (s *suite) executeDeployment(t *T, p *plan) {
	defer s.piped.mds.Delete(p.d.Id)
	d := p.d
	// What the scheduler receives from the control plane after planning.
	d.Status = model.DeploymentStatus_DEPLOYMENT_RUNNING
	d.Trigger.SyncStrategy = p.strategy
	d.Trigger.StrategySummary = p.summary
	d.Summary = p.summary
	d.Versions = p.versions
	d.Stages = p.stages
	for _, ps := range d.Stages {
		sc := s.stageCase(p.dc, ps)
		if sc.SendStatus != "" {
			st, err := parseStageStatus(sc.SendStatus)
			if err != nil {
				t.Fatalf("scenario: %v", err)
			}
			ps.Status = st
		}
		if len(sc.SeedMetadata) > 0 {
			if ps.Metadata == nil {
				ps.Metadata = map[string]string{}
			}
			for k, v := range sc.SeedMetadata {
				ps.Metadata[k] = v
			}
		}
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("harness bug: our deployment is invalid: %v", err)
	}
	s.piped.mds.Register(d)

	result := model.DeploymentStatus_DEPLOYMENT_SUCCESS
	var last *model.PipelineStage
loop:
	for _, ps := range d.Stages {
		if ps.Rollback {
			continue
		}
		last = ps
		sc := s.stageCase(p.dc, ps)
		var before []*model.LogBlock
		if sc.Interrupt != nil {
			before = s.interruptStage(t, p, ps, sc)
		}
		r := s.executeStage(t, p, ps, sc)
		s.checkStageRun(t, p, r, sc)
		if sc.Interrupt != nil {
			s.checkSurvived(t, p, ps, before)
		}
		switch r.piped {
		case model.StageStatus_STAGE_SUCCESS, model.StageStatus_STAGE_SKIPPED:
			continue
		case model.StageStatus_STAGE_EXITED:
			break loop
		case model.StageStatus_STAGE_FAILURE:
			result = model.DeploymentStatus_DEPLOYMENT_FAILURE
			break loop
		case model.StageStatus_STAGE_CANCELLED:
			result = model.DeploymentStatus_DEPLOYMENT_CANCELLED
			break loop
		default:
			result = model.DeploymentStatus_DEPLOYMENT_RUNNING
			break loop
		}
	}
	if result == model.DeploymentStatus_DEPLOYMENT_FAILURE || result == model.DeploymentStatus_DEPLOYMENT_CANCELLED {
		if rbs, ok := d.FindRollbackStages(); ok {
			t.Logf("deployment %s: running %d rollback stage(s)", result, len(rbs))
			for _, rb := range rbs {
				if last != nil {
					rb.Requires = []string{last.Id}
				}
				sc := s.stageCase(p.dc, rb)
				r := s.executeStage(t, p, rb, sc)
				s.checkStageRun(t, p, r, sc)
			}
		}
	}
	t.Logf("deployment result: %s", result)
	if e := p.dc.ExpectDeploymentStatus; e != "" {
		if !strings.HasPrefix(e, "DEPLOYMENT_") {
			e = "DEPLOYMENT_" + e
		}
		if e != result.String() {
			t.Errorf("deployment status = %s, want %s", result, e)
		}
	}
	pm := s.cp.getPluginMetadata(d.Id, s.name)
	if len(pm) > 0 || s.verbose {
		t.Logf("plugin metadata: %v", pm)
	}
	for k, v := range p.dc.ExpectPluginMetadata {
		got, ok := pm[k]
		if !ok || (v == "*" && got == "") || (v != "*" && got != v) {
			t.Errorf("plugin metadata[%q] = %q (present %v), want %q", k, got, ok, v)
		}
	}
	for k, v := range p.dc.ExpectSharedObjects {
		got, ok := s.cp.getSharedObject(appID, s.name, k)
		if !ok || (v != "*" && string(got) != v) {
			t.Errorf("application shared object %q = %q (present %v), want %q", k, got, ok, v)
		}
	}
}

// ---------------------------------------------------------------- concurrency

func (s *suite) checkConcurrency(t *T, cc *ConcurrencyCase) {
	dc := &DeploymentCase{Name: "concurrency", App: cc.App, First: true}
	p := s.prepare(t, dc)
	ctx, cancel := context.WithTimeout(s.ctx, 60*time.Second)
	defer cancel()
	stages, err := s.buildPipelineSyncStages(t, ctx, p.spec)
	if err != nil {
		t.Fatalf("BuildPipelineSyncStages: %v", err)
	}
	var base *model.PipelineStage
	for _, st := range stages {
		if st.Index == cc.StageIndex && !st.Rollback {
			base = st
		}
	}
	if base == nil {
		t.Fatalf("no planned stage at index %d", cc.StageIndex)
	}
	count := cc.Count
	if count <= 0 {
		count = 4
	}
	hold := time.Duration(firstPositive(cc.HoldSeconds, 2) * float64(time.Second))
	d := p.d
	d.Status = model.DeploymentStatus_DEPLOYMENT_RUNNING
	d.Trigger.SyncStrategy = model.SyncStrategy_PIPELINE
	for round := 1; round <= 2; round++ {
		var batch []*model.PipelineStage
		for i := 0; i < count; i++ {
			st := proto_clone(base)
			st.Id = uuid.New().String()
			batch = append(batch, st)
		}
		d.Stages = batch
		s.piped.mds.Register(d)
		cfg, _ := p.spec.GetStageConfigByte(base.Index)
		rctx, rcancel := context.WithCancel(s.ctx)
		var wg sync.WaitGroup
		var mu sync.Mutex
		early := 0
		for _, st := range batch {
			wg.Add(1)
			go func(st *model.PipelineStage) {
				defer wg.Done()
				_, err := s.plugin.client.ExecuteStage(rctx, &deployment.ExecuteStageRequest{Input: &deployment.ExecutePluginInput{
					Deployment: d, Stage: st, StageConfig: cfg, TargetDeploymentSource: p.target,
				}})
				if rctx.Err() == nil {
					mu.Lock()
					early++
					mu.Unlock()
					t.Logf("round %d: a stage returned before the cancel: %v", round, err)
				}
			}(st)
		}
		time.Sleep(hold)
		hctx, hcancel := context.WithTimeout(s.ctx, 3*time.Second)
		start := time.Now()
		_, herr := s.plugin.client.FetchDefinedStages(hctx, &deployment.FetchDefinedStagesRequest{})
		hcancel()
		if herr != nil {
			t.Errorf("round %d: with %d ExecuteStage calls in flight, FetchDefinedStages failed: %v", round, count, herr)
		} else {
			t.Logf("round %d: FetchDefinedStages answered in %s with %d stages in flight", round, time.Since(start).Round(time.Millisecond), count)
		}
		rcancel()
		wg.Wait()
		if early > 0 {
			t.Errorf("round %d: %d of %d stages finished within %s; use a longer stage", round, early, count, hold)
		}
		// Every cancelled stage that logged should complete its logs.
		deadline := time.Now().Add(5 * time.Second)
		for _, st := range batch {
			for {
				snap := s.cp.stageLogs(d.Id, st.Id)
				if snap.completed || !snap.found || time.Now().After(deadline) {
					if !snap.completed && len(snap.blocks) > 0 {
						t.Errorf("round %d: cancelled stage %s sent logs but never completed them", round, st.Id)
					}
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		s.piped.mds.Delete(d.Id)
	}
}

// ---------------------------------------------------------------- livestate, plan preview

func (s *suite) appForQueries() (*common.DeploymentSource, *common.DeploymentSource, *config.GenericApplicationSpec, error) {
	raw := s.scenario.App
	if len(raw) == 0 && len(s.scenario.Deployments) > 0 {
		raw = s.scenario.Deployments[0].App
	}
	var cfgBytes []byte
	var err error
	if len(raw) == 0 {
		cfgBytes = []byte(fmt.Sprintf("apiVersion: pipecd.dev/v1beta1\nkind: Application\nspec:\n  name: %s\n  plugins:\n    %s: {}\n", appName, s.name))
	} else if cfgBytes, err = appYAML(raw); err != nil {
		return nil, nil, nil, err
	}
	cfg, err := config.DecodeYAML[*config.GenericApplicationSpec](cfgBytes)
	if err != nil {
		return nil, nil, nil, err
	}
	target, err := s.writeSource("head", cfgBytes, nil, randomHash())
	if err != nil {
		return nil, nil, nil, err
	}
	running, err := s.writeSource("running", cfgBytes, nil, randomHash())
	if err != nil {
		return nil, nil, nil, err
	}
	return target, running, cfg.Spec, nil
}

func expectOf(e *RPCExpect) (string, int) {
	if e == nil || e.Expect == "" {
		if e != nil {
			return "ANY", e.MinItems
		}
		return "ANY", 0
	}
	return strings.ToUpper(e.Expect), e.MinItems
}

// refusedWithoutTargets reports whether err is a plugin refusing a call that names no deploy
// target, as the Go SDK refuses it (INVALID_ARGUMENT, upstream #7115/#7116). When the scenario
// gives the plugin no deploy target at all, that is the right answer unless it expects OK.
func (s *suite) refusedWithoutTargets(t *T, rpc, want string, err error) bool {
	if len(s.targetsAll) > 0 || status.Code(err) != codes.InvalidArgument || want == "OK" {
		return false
	}
	t.Logf("%s: INVALID_ARGUMENT with no deploy target to send, as a Go SDK plugin answers: %v", rpc, err)
	return true
}

func (s *suite) checkLivestate(t *T) {
	target, _, spec, err := s.appForQueries()
	if err != nil {
		t.Fatalf("app config: %v", err)
	}
	plugins, err := s.registry.GetPluginClientsByAppConfig(spec)
	if err != nil {
		t.Fatalf("GetPluginClientsByAppConfig: %v", err)
	}
	want, minItems := expectOf(s.scenario.Livestate)
	ctx, cancel := context.WithTimeout(s.ctx, 60*time.Second)
	defer cancel()
	var resources []*model.ResourceState
	var syncStates []*model.ApplicationSyncState
	for _, plg := range plugins {
		res, err := plg.GetLivestate(ctx, &livestate.GetLivestateRequest{
			PipedId: pipedID, ApplicationId: appID, ApplicationName: appName,
			DeploySource: target, DeployTargets: s.targetsAll,
		})
		if status.Code(err) == codes.Unimplemented {
			t.Logf("GetLivestate: UNIMPLEMENTED (piped skips the plugin)")
			if want == "OK" {
				t.Errorf("GetLivestate is UNIMPLEMENTED, want OK")
			}
			continue
		}
		if s.refusedWithoutTargets(t, "GetLivestate", want, err) {
			continue
		}
		if err != nil {
			t.Errorf("GetLivestate failed with %v; piped reports nothing for the app this cycle (only UNIMPLEMENTED is skipped)", err)
			continue
		}
		if want == "UNIMPLEMENTED" {
			t.Errorf("GetLivestate answered, want UNIMPLEMENTED")
		}
		if res.SyncState == nil {
			t.Errorf("GetLivestate: sync_state is missing")
		}
		resources = append(resources, res.GetApplicationLiveState().GetResources()...)
		syncStates = append(syncStates, res.GetSyncState())
	}
	if len(resources) < minItems {
		t.Errorf("GetLivestate: %d resources, want at least %d", len(resources), minItems)
	}
	if len(syncStates) == 0 {
		return
	}
	// What piped does next (livestatereporter.flush), with its own merge.
	var merged *model.ApplicationSyncState
	func() {
		defer func() {
			if v := recover(); v != nil {
				t.Errorf("model.MergeApplicationSyncState panicked (this crashes piped): %v", v)
			}
		}()
		merged = model.MergeApplicationSyncState(syncStates)
	}()
	snapshot := &model.ApplicationLiveStateSnapshot{
		ApplicationId: appID, PipedId: pipedID, ProjectId: projectID, Kind: model.ApplicationKind_KUBERNETES,
		ApplicationLiveState: &model.ApplicationLiveState{Resources: resources},
		Version:              &model.ApplicationLiveStateVersion{Timestamp: time.Now().Unix()},
	}
	snapshot.DetermineApplicationHealthStatus()
	if err := (&pipedservice.ReportApplicationLiveStateRequest{Snapshot: snapshot}).Validate(); err != nil {
		t.Errorf("the control plane would reject the live state report (and piped then skips the sync state): %v", err)
	}
	if merged != nil {
		if err := (&pipedservice.ReportApplicationSyncStateRequest{ApplicationId: appID, State: merged}).Validate(); err != nil {
			t.Errorf("the control plane would reject the sync state report: %v", err)
		}
		t.Logf("livestate: %d resources, health %s, sync %s", len(resources), snapshot.HealthStatus, merged.Status)
	}
}

func (s *suite) checkPlanPreview(t *T) {
	target, running, spec, err := s.appForQueries()
	if err != nil {
		t.Fatalf("app config: %v", err)
	}
	plugins, err := s.registry.GetPluginClientsByAppConfig(spec)
	if err != nil {
		t.Fatalf("GetPluginClientsByAppConfig: %v", err)
	}
	want, minItems := expectOf(s.scenario.PlanPreview)
	// piped's plan preview gives the plugin a deadline (the command timeout).
	ctx, cancel := context.WithTimeout(s.ctx, 60*time.Second)
	defer cancel()
	// Plan preview first decides the strategy with a minimal deployment.
	minimal := &deployment.PlanPluginInput{
		Deployment:              &model.Deployment{PipedId: pipedID, ApplicationId: appID, ApplicationName: appName},
		TargetDeploymentSource:  target,
		RunningDeploymentSource: running,
	}
	for _, plg := range plugins {
		if res, err := plg.DetermineStrategy(ctx, &deployment.DetermineStrategyRequest{Input: minimal}); err != nil {
			t.Logf("DetermineStrategy with plan preview's minimal deployment: %v (piped logs and ignores it)", err)
		} else {
			t.Logf("DetermineStrategy with plan preview's minimal deployment: %s unsupported=%v", res.SyncStrategy, res.Unsupported)
		}
	}
	total := 0
	for _, plg := range plugins {
		res, err := plg.GetPlanPreview(ctx, &planpreview.GetPlanPreviewRequest{
			ApplicationId: appID, ApplicationName: appName, PipedId: pipedID, DeployTargets: s.targetsAll,
			TargetDeploymentSource: target, RunningDeploymentSource: running,
		})
		if status.Code(err) == codes.Unimplemented {
			t.Logf("GetPlanPreview: UNIMPLEMENTED (piped skips the plugin)")
			if want == "OK" {
				t.Errorf("GetPlanPreview is UNIMPLEMENTED, want OK")
			}
			continue
		}
		if s.refusedWithoutTargets(t, "GetPlanPreview", want, err) {
			continue
		}
		if err != nil {
			t.Errorf("GetPlanPreview failed: %v (piped shows it as the app's plan preview error)", err)
			continue
		}
		if want == "UNIMPLEMENTED" {
			t.Errorf("GetPlanPreview answered, want UNIMPLEMENTED")
		}
		for _, r := range res.Results {
			t.Logf("plan preview result: target=%q noChange=%v summary=%q diffLanguage=%q details=%d bytes", r.DeployTarget, r.NoChange, r.Summary, r.DiffLanguage, len(r.Details))
		}
		total += len(res.Results)
	}
	if total < minItems {
		t.Errorf("GetPlanPreview: %d results, want at least %d", total, minItems)
	}
}

// ---------------------------------------------------------------- PluginService traffic

func (s *suite) checkPluginServiceCalls(t *T) {
	counts := map[string]int{}
	for _, c := range s.piped.recorder.snapshot() {
		counts[c.method+" "+c.code]++
		switch c.code {
		case codes.InvalidArgument.String():
			t.Errorf("piped's PluginService rejected %s: %s", c.method, c.err)
		case codes.Unknown.String(), codes.Internal.String():
			t.Errorf("%s failed in piped with %s: %s", c.method, c.code, c.err)
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("%4d × %s", counts[k], k)
	}
	for _, r := range s.cp.takeRejections() {
		t.Errorf("the control plane rejected a forwarded request: %s", r)
	}
}

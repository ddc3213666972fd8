// Command client is a small measuring tool for PipeCD v1 stage plugins
// (the Go SDK WAIT anchor in bench/go_sdk_wait, or any plugin that serves
// grpc.plugin.deploymentapi.v1alpha1.DeploymentService).
//
// Modes (-rpc):
//
//	fetch      FetchDefinedStages latency
//	execute    ExecuteStage latency for a WAIT stage (with.duration = -wait)
//	build      BuildPipelineSyncStages latency (one WAIT stage)
//	coldstart  spawn -bin with piped's argv, time spawn -> first successful
//	           FetchDefinedStages, then sample idle RSS; repeated -runs times
//	fake-piped serve a minimal in-memory piped PluginService on -listen
//
// Every measuring mode prints exactly one JSON line on stdout.
// Example:
//
//	client -addr 127.0.0.1:7001 -rpc fetch -n 2000 -concurrency 1
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pipe-cd/pipecd/pkg/model"
	"github.com/pipe-cd/pipecd/pkg/plugin/api/v1alpha1/common"
	"github.com/pipe-cd/pipecd/pkg/plugin/api/v1alpha1/deployment"
	"github.com/pipe-cd/pipecd/pkg/plugin/pipedservice"
)

func main() {
	var (
		rpc         = flag.String("rpc", "fetch", "fetch | execute | build | coldstart | fake-piped")
		addr        = flag.String("addr", "127.0.0.1:7001", "plugin gRPC address (fetch/execute/build)")
		n           = flag.Int("n", 2000, "number of measured calls")
		concurrency = flag.Int("concurrency", 1, "concurrent callers (each on the same connection)")
		warmup      = flag.Int("warmup", 20, "unmeasured calls before measuring (execute: capped at 1)")
		wait        = flag.String("wait", "0s", "with.duration sent in ExecuteStage / BuildPipelineSyncStages")
		maxTime     = flag.Duration("max-time", 60*time.Second, "stop measuring after this wall time (0 = no limit); partial results are reported")
		callTimeout = flag.Duration("call-timeout", 75*time.Second, "deadline of one RPC")

		bin       = flag.String("bin", "", "coldstart: plugin binary to spawn")
		interp    = flag.String("interpreter", "", "coldstart: run -bin with this interpreter instead of through its shebang")
		port      = flag.Int("port", 0, "coldstart: plugin port (0 = pick a free one)")
		pipedAddr = flag.String("piped-addr", "", "coldstart: piped PluginService address; empty = serve an in-process fake piped")
		runs      = flag.Int("runs", 5, "coldstart: number of spawns")
		idle      = flag.Duration("idle", 3*time.Second, "coldstart: idle time after the first RPC before sampling RSS")
		pluginLog = flag.String("plugin-log", "", "coldstart: file for the plugin's stdout/stderr (default: discarded)")
		name      = flag.String("name", "wait", "coldstart: plugin name put in --config")

		stage    = flag.String("stage", "WAIT", "execute: the stage name (e.g. to measure the official stage ports)")
		withJSON = flag.String("with", "", "execute: the stage's with: as JSON, sent as is (default: {\"duration\": -wait})")
		stageID  = flag.String("stage-id", "", "execute: fixed stage id for every call (default: unique per call; a fixed id lets you test resume)")

		listen  = flag.String("listen", "127.0.0.1:0", "fake-piped: listen address")
		verbose = flag.Bool("verbose", false, "fake-piped: print received stage logs and metadata writes to stderr")
	)
	flag.Parse()

	var (
		out any
		err error
	)
	switch *rpc {
	case "fetch", "execute", "build":
		fixedStageID, stageName, stageWith = *stageID, *stage, *withJSON
		out, err = runLatency(*rpc, *addr, *n, *concurrency, *warmup, *wait, *maxTime, *callTimeout)
	case "coldstart":
		out, err = runColdStart(*interp, *bin, *port, *pipedAddr, *runs, *idle, *pluginLog, *name)
	case "fake-piped":
		fakeVerbose = *verbose
		err = runFakePiped(*listen)
	default:
		err = fmt.Errorf("unknown -rpc %q", *rpc)
	}
	// Print the JSON line even on failure (partial results, first_error).
	if out != nil && !isNilPtr(out) {
		b, _ := json.Marshal(out)
		fmt.Println(string(b))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func isNilPtr(v any) bool {
	switch p := v.(type) {
	case *latencyResult:
		return p == nil
	case *coldResult:
		return p == nil
	}
	return false
}

// ---------------------------------------------------------------- latency

var (
	fixedStageID string
	stageName    = "WAIT"
	stageWith    string
	fakeVerbose  bool
)

type latencyResult struct {
	RPC          string  `json:"rpc"`
	Addr         string  `json:"addr"`
	N            int     `json:"n"`
	Concurrency  int     `json:"concurrency"`
	OK           int     `json:"ok"`
	Errors       int     `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"`
	StoppedEarly bool    `json:"stopped_early"`
	P50Ms        float64 `json:"p50_ms"`
	P90Ms        float64 `json:"p90_ms"`
	P99Ms        float64 `json:"p99_ms"`
	MinMs        float64 `json:"min_ms"`
	MaxMs        float64 `json:"max_ms"`
	MeanMs       float64 `json:"mean_ms"`
	CallsPerS    float64 `json:"calls_per_s"`
	WallS        float64 `json:"wall_s"`
}

func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func runLatency(rpc, addr string, n, concurrency, warmup int, wait string, maxTime, callTimeout time.Duration) (*latencyResult, error) {
	if n <= 0 || concurrency <= 0 {
		return nil, errors.New("-n and -concurrency must be positive")
	}
	if _, err := time.ParseDuration(wait); err != nil {
		return nil, fmt.Errorf("-wait: %w", err)
	}
	conn, err := dial(addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cli := deployment.NewDeploymentServiceClient(conn)

	var seq atomic.Int64
	call := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		switch rpc {
		case "fetch":
			_, err := cli.FetchDefinedStages(ctx, &deployment.FetchDefinedStagesRequest{})
			return err
		case "build":
			_, err := cli.BuildPipelineSyncStages(ctx, buildRequest(wait))
			return err
		default: // execute
			req := executeRequest(wait, seq.Add(1))
			resp, err := cli.ExecuteStage(ctx, req)
			if err != nil {
				return err
			}
			if resp.GetStatus() != model.StageStatus_STAGE_SUCCESS {
				return fmt.Errorf("status %s", resp.GetStatus())
			}
			return nil
		}
	}

	// Validate our own request shape against the proto rules, as the SDK
	// server will (PGV interceptor), to fail fast with a clear message.
	if rpc == "execute" {
		if err := executeRequest(wait, 0).ValidateAll(); err != nil {
			return nil, fmt.Errorf("built an invalid ExecuteStageRequest: %w", err)
		}
	}

	// Warm-up. ExecuteStage on the Go SDK takes up to 5s per call (see
	// README), so warm it up with a single call only.
	if rpc == "execute" && warmup > 1 {
		warmup = 1
	}
	for i := 0; i < warmup; i++ {
		if err := call(context.Background()); err != nil {
			return nil, fmt.Errorf("warm-up call failed: %w", err)
		}
	}

	var (
		mu        sync.Mutex
		lat       = make([]time.Duration, 0, n)
		nErr      int
		firstErr  string
		next      atomic.Int64
		stopEarly atomic.Bool
		wg        sync.WaitGroup
	)
	start := time.Now()
	var deadline time.Time
	if maxTime > 0 {
		deadline = start.Add(maxTime)
	}
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if !deadline.IsZero() && time.Now().After(deadline) {
					stopEarly.Store(true)
					return
				}
				t0 := time.Now()
				err := call(context.Background())
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					nErr++
					if firstErr == "" {
						firstErr = err.Error()
					}
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)

	res := &latencyResult{
		RPC: rpc, Addr: addr, N: n, Concurrency: concurrency,
		OK: len(lat), Errors: nErr, FirstError: firstErr,
		StoppedEarly: stopEarly.Load(), WallS: round3(wall.Seconds()),
	}
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		res.P50Ms = ms(pct(lat, 50))
		res.P90Ms = ms(pct(lat, 90))
		res.P99Ms = ms(pct(lat, 99))
		res.MinMs = ms(lat[0])
		res.MaxMs = ms(lat[len(lat)-1])
		res.MeanMs = ms(sum / time.Duration(len(lat)))
		res.CallsPerS = round3(float64(len(lat)) / wall.Seconds())
	}
	if len(lat) == 0 {
		return res, fmt.Errorf("no successful call: %s", firstErr)
	}
	return res, nil
}

// pct is the nearest-rank percentile of sorted durations.
func pct(sorted []time.Duration, p float64) time.Duration {
	k := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	if k < 0 {
		k = 0
	}
	if k >= len(sorted) {
		k = len(sorted) - 1
	}
	return sorted[k]
}

func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

const benchAppConfig = `apiVersion: pipecd.dev/v1beta1
kind: Application
spec:
  name: bench-wait
  planner:
    alwaysUsePipeline: true
  pipeline:
    stages:
      - name: WAIT
        with:
          duration: %s
`

func stageConfigJSON(wait string) []byte {
	if stageWith != "" {
		return []byte(stageWith)
	}
	b, _ := json.Marshal(map[string]string{"duration": wait})
	return b
}

func buildRequest(wait string) *deployment.BuildPipelineSyncStagesRequest {
	return &deployment.BuildPipelineSyncStagesRequest{
		Stages: []*deployment.BuildPipelineSyncStagesRequest_StageConfig{
			{Name: "WAIT", Desc: "bench wait", Index: 0, Config: stageConfigJSON(wait)},
		},
		Rollback: false,
	}
}

// executeRequest builds an ExecuteStage request shaped like piped's: a full
// model.Deployment and a RUNNING stage. Each call gets its own stage id, as
// in real piped (the SDK keys its stage log persister by deployment+stage).
func executeRequest(wait string, seq int64) *deployment.ExecuteStageRequest {
	now := time.Now().Unix()
	stageID := "bench-stage-" + strconv.FormatInt(seq, 10)
	if fixedStageID != "" {
		stageID = fixedStageID
	}
	stage := &model.PipelineStage{
		Id:                 stageID,
		Name:               stageName,
		Desc:               "bench wait",
		Index:              0,
		Status:             model.StageStatus_STAGE_RUNNING,
		Metadata:           map[string]string{},
		CreatedAt:          now,
		UpdatedAt:          now,
		AvailableOperation: model.ManualOperation_MANUAL_OPERATION_NONE,
	}
	d := &model.Deployment{
		Id:              "bench-deployment",
		ApplicationId:   "bench-app",
		ApplicationName: "bench-wait",
		PipedId:         "bench-piped",
		ProjectId:       "bench-project",
		GitPath: &model.ApplicationGitPath{
			Repo:           &model.ApplicationGitRepository{Id: "repo", Remote: "git@example.invalid:bench.git", Branch: "main"},
			Path:           "apps/bench",
			ConfigFilename: "app.pipecd.yaml",
		},
		Trigger: &model.DeploymentTrigger{
			Commit: &model.Commit{
				Hash: "0123456789abcdef0123456789abcdef01234567", Message: "bench", Author: "bench",
				Branch: "main", CreatedAt: now,
			},
			Commander:    "bench",
			Timestamp:    now,
			SyncStrategy: model.SyncStrategy_PIPELINE,
		},
		Status:    model.DeploymentStatus_DEPLOYMENT_RUNNING,
		Stages:    []*model.PipelineStage{stage},
		CreatedAt: now,
		UpdatedAt: now,
	}
	return &deployment.ExecuteStageRequest{
		Input: &deployment.ExecutePluginInput{
			Deployment:  d,
			Stage:       stage,
			StageConfig: stageConfigJSON(wait),
			TargetDeploymentSource: &common.DeploymentSource{
				ApplicationDirectory:      "/tmp/bench/apps/bench",
				CommitHash:                d.Trigger.Commit.Hash,
				ApplicationConfig:         []byte(fmt.Sprintf(benchAppConfig, wait)),
				ApplicationConfigFilename: "app.pipecd.yaml",
			},
		},
	}
}

// -------------------------------------------------------------- coldstart

type coldRun struct {
	TCPReadyMs    float64 `json:"tcp_ready_ms"`
	FirstRPCMs    float64 `json:"first_rpc_ms"`
	IdleRSSKB     int64   `json:"idle_rss_kb"`
	PeakRSSKB     int64   `json:"peak_rss_kb"`
	ShutdownMs    float64 `json:"shutdown_ms"`
	ExitedCleanly bool    `json:"exited_cleanly"`
}

type coldResult struct {
	Mode          string    `json:"rpc"`
	Bin           string    `json:"bin"`
	Runs          []coldRun `json:"runs"`
	ColdStartP50  float64   `json:"cold_start_p50_ms"`
	ColdStartMin  float64   `json:"cold_start_min_ms"`
	ColdStartMax  float64   `json:"cold_start_max_ms"`
	IdleRSSKBP50  int64     `json:"idle_rss_kb_p50"`
	BinaryBytes   int64     `json:"binary_bytes"`
	PipedAddr     string    `json:"piped_addr"`
	FakePipedUsed bool      `json:"fake_piped_in_process"`
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func runColdStart(interp, bin string, port int, pipedAddr string, runs int, idle time.Duration, logPath, name string) (*coldResult, error) {
	if bin == "" {
		return nil, errors.New("-bin is required for coldstart")
	}
	st, err := os.Stat(bin)
	if err != nil {
		return nil, err
	}
	res := &coldResult{Mode: "coldstart", Bin: bin, BinaryBytes: st.Size()}
	if pipedAddr == "" {
		srv, lis, err := startFakePiped("127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer srv.Stop()
		pipedAddr = lis.Addr().String()
		res.FakePipedUsed = true
	}
	res.PipedAddr = pipedAddr

	var logf *os.File
	if logPath != "" {
		if logf, err = os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return nil, err
		}
		defer logf.Close()
	}

	for i := 0; i < runs; i++ {
		p := port
		if p == 0 {
			if p, err = freePort(); err != nil {
				return nil, err
			}
		}
		r, err := coldStartOnce(interp, bin, p, pipedAddr, idle, logf, name)
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		res.Runs = append(res.Runs, *r)
	}

	starts := make([]float64, len(res.Runs))
	rss := make([]int64, len(res.Runs))
	for i, r := range res.Runs {
		starts[i], rss[i] = r.FirstRPCMs, r.IdleRSSKB
	}
	sort.Float64s(starts)
	sort.Slice(rss, func(i, j int) bool { return rss[i] < rss[j] })
	res.ColdStartP50 = starts[(len(starts)-1)/2]
	res.ColdStartMin = starts[0]
	res.ColdStartMax = starts[len(starts)-1]
	res.IdleRSSKBP50 = rss[(len(rss)-1)/2]
	return res, nil
}

func coldStartOnce(interp, bin string, port int, pipedAddr string, idle time.Duration, logf *os.File, name string) (*coldRun, error) {
	cfg, _ := json.Marshal(map[string]any{"name": name, "url": "file:///x", "port": port})
	// piped passes "localhost:<P>"; keep that form when the address is loopback.
	pa := pipedAddr
	if h, p, err := net.SplitHostPort(pipedAddr); err == nil && (h == "127.0.0.1" || h == "::1") {
		pa = "localhost:" + p
	}
	argv := []string{bin, "start", "--piped-plugin-service", pa, "--config", string(cfg)}
	if interp != "" {
		argv = append([]string{interp}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if logf != nil {
		cmd.Stdout, cmd.Stderr = logf, logf
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	kill := func() { _ = cmd.Process.Kill(); <-exited }

	r := &coldRun{}
	target := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	limit := t0.Add(30 * time.Second)

	// 1. Wait until the port accepts TCP.
	for {
		c, err := net.DialTimeout("tcp", target, 100*time.Millisecond)
		if err == nil {
			c.Close()
			r.TCPReadyMs = ms(time.Since(t0))
			break
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("plugin exited before listening: %v", err)
		default:
		}
		if time.Now().After(limit) {
			kill()
			return nil, errors.New("plugin did not listen within 30s")
		}
		time.Sleep(time.Millisecond)
	}

	// 2. First successful FetchDefinedStages (fresh connection per try, to
	//    avoid grpc-go's reconnect backoff skewing the number).
	for {
		conn, err := dial(target)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err = deployment.NewDeploymentServiceClient(conn).FetchDefinedStages(ctx, &deployment.FetchDefinedStagesRequest{})
			cancel()
			conn.Close()
			if err == nil {
				r.FirstRPCMs = ms(time.Since(t0))
				break
			}
		}
		if time.Now().After(limit) {
			kill()
			return nil, fmt.Errorf("no successful FetchDefinedStages within 30s: %v", err)
		}
		time.Sleep(time.Millisecond)
	}

	// 3. Idle, then sample memory.
	time.Sleep(idle)
	r.IdleRSSKB, r.PeakRSSKB = readRSS(cmd.Process.Pid)

	// 4. SIGTERM, as piped does, and time the shutdown.
	ts := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		r.ShutdownMs = ms(time.Since(ts))
		r.ExitedCleanly = err == nil
	case <-time.After(35 * time.Second):
		kill()
		r.ShutdownMs = ms(time.Since(ts))
	}
	return r, nil
}

func readRSS(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1, -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm
}

// ------------------------------------------------------------- fake piped

// fakePiped is a minimal in-memory piped PluginService: stage and
// deployment metadata are kept in maps, stage logs are accepted and
// dropped, everything else is UNIMPLEMENTED.
type fakePiped struct {
	pipedservice.UnimplementedPluginServiceServer
	mu    sync.Mutex
	stage map[string]string
	dep   map[string]string
}

func mkey(parts ...string) string { return strings.Join(parts, "\x00") }

func logBlocks(stageID string, blocks []*model.LogBlock) {
	if !fakeVerbose {
		return
	}
	for _, b := range blocks {
		fmt.Fprintf(os.Stderr, "[fake-piped] stage-log %s %s: %s\n", stageID, b.Severity, strings.TrimRight(b.Log, "\n"))
	}
}

func (f *fakePiped) ReportStageLogs(_ context.Context, r *pipedservice.ReportStageLogsRequest) (*pipedservice.ReportStageLogsResponse, error) {
	logBlocks(r.StageId, r.Blocks)
	return &pipedservice.ReportStageLogsResponse{}, nil
}

func (f *fakePiped) ReportStageLogsFromLastCheckpoint(_ context.Context, r *pipedservice.ReportStageLogsFromLastCheckpointRequest) (*pipedservice.ReportStageLogsFromLastCheckpointResponse, error) {
	logBlocks(r.StageId, r.Blocks)
	return &pipedservice.ReportStageLogsFromLastCheckpointResponse{}, nil
}

func (f *fakePiped) GetStageMetadata(_ context.Context, r *pipedservice.GetStageMetadataRequest) (*pipedservice.GetStageMetadataResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.stage[mkey(r.DeploymentId, r.StageId, r.Key)]
	return &pipedservice.GetStageMetadataResponse{Value: v, Found: ok}, nil
}

func (f *fakePiped) PutStageMetadata(_ context.Context, r *pipedservice.PutStageMetadataRequest) (*pipedservice.PutStageMetadataResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stage[mkey(r.DeploymentId, r.StageId, r.Key)] = r.Value
	if fakeVerbose {
		fmt.Fprintf(os.Stderr, "[fake-piped] put stage metadata %s/%s %s=%s\n", r.DeploymentId, r.StageId, r.Key, r.Value)
	}
	return &pipedservice.PutStageMetadataResponse{}, nil
}

func (f *fakePiped) PutStageMetadataMulti(_ context.Context, r *pipedservice.PutStageMetadataMultiRequest) (*pipedservice.PutStageMetadataMultiResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, v := range r.Metadata {
		f.stage[mkey(r.DeploymentId, r.StageId, k)] = v
	}
	return &pipedservice.PutStageMetadataMultiResponse{}, nil
}

func (f *fakePiped) GetDeploymentPluginMetadata(_ context.Context, r *pipedservice.GetDeploymentPluginMetadataRequest) (*pipedservice.GetDeploymentPluginMetadataResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.dep[mkey(r.DeploymentId, r.PluginName, r.Key)]
	return &pipedservice.GetDeploymentPluginMetadataResponse{Value: v, Found: ok}, nil
}

func (f *fakePiped) PutDeploymentPluginMetadata(_ context.Context, r *pipedservice.PutDeploymentPluginMetadataRequest) (*pipedservice.PutDeploymentPluginMetadataResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dep[mkey(r.DeploymentId, r.PluginName, r.Key)] = r.Value
	return &pipedservice.PutDeploymentPluginMetadataResponse{}, nil
}

func startFakePiped(listen string) (*grpc.Server, net.Listener, error) {
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, nil, err
	}
	srv := grpc.NewServer()
	pipedservice.RegisterPluginServiceServer(srv, &fakePiped{stage: map[string]string{}, dep: map[string]string{}})
	go func() { _ = srv.Serve(lis) }()
	return srv, lis, nil
}

func runFakePiped(listen string) error {
	srv, lis, err := startFakePiped(listen)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(map[string]string{"fake_piped": lis.Addr().String()})
	fmt.Println(string(b))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	srv.Stop()
	return nil
}

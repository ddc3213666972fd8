package main

// A fake of the PipeCD control plane, as seen by piped's own components.
//
// It implements the client interfaces that piped's PluginService
// (grpcapi.NewPluginAPI), the metadata store registry and the command store
// use to talk to the control plane. Like the real control plane's PipedAPI
// server, it validates every request with the generated PGV Validate() (the
// real one runs the request-validation interceptor). Stage logs go to the
// control plane's real stage log store (pkg/app/server/stagelogstore) over an
// in-memory cache (pkg/cache/memorycache) and an in-memory file store
// (memFileStore, below): plain calls reach only its cache, a checkpoint call
// rebuilds the cache from the file store and appends, and a completed log
// refuses later writes (FAILED_PRECONDITION, as the PipedAPI server maps
// ErrAlreadyCompleted). Beside the store, it records what each call carried,
// for the suite's checks.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pipe-cd/pipecd/pkg/app/server/service/pipedservice"
	"github.com/pipe-cd/pipecd/pkg/app/server/stagelogstore"
	"github.com/pipe-cd/pipecd/pkg/cache/memorycache"
	"github.com/pipe-cd/pipecd/pkg/filestore"
	"github.com/pipe-cd/pipecd/pkg/model"
)

type validator interface{ Validate() error }

type logKey struct {
	deploymentID, stageID string
	retried               int32
}

// stageLog records what the plugin sent for one (deployment, stage,
// retried_count); the logs themselves live in the real store.
type stageLog struct {
	plainIndexes map[int64]bool            // indexes that came via plain ReportStageLogs
	all          map[int64]*model.LogBlock // first version of every block ever received
	plainCalls   int
	ckptCalls    int
	completed    bool
	completedAt  time.Time
	lateCalls    int      // calls refused because the log was already completed
	problems     []string // protocol problems found while receiving
}

type sharedKey struct{ app, plugin, key string }

type pendingCommand struct {
	cmd       *model.Command
	visibleAt time.Time
}

type fakeControlPlane struct {
	mu sync.Mutex

	logStore       stagelogstore.Store
	logFiles       *memFileStore
	logs           map[logKey]*stageLog
	stageMetadata  map[string]map[string]string            // stage id -> last saved whole map
	stageMdSaves   map[string]int                          // stage id -> number of saves
	pluginMetadata map[string]map[string]map[string]string // deployment id -> plugin -> whole map
	sharedObjects  map[sharedKey][]byte
	commands       []*pendingCommand
	handled        map[string]model.CommandStatus
	rejected       []string // requests this fake refused on validation
}

func newFakeControlPlane() *fakeControlPlane {
	files := newMemFileStore()
	return &fakeControlPlane{
		logStore:       stagelogstore.NewStore(files, memorycache.NewCache(), zap.NewNop()),
		logFiles:       files,
		logs:           map[logKey]*stageLog{},
		stageMetadata:  map[string]map[string]string{},
		stageMdSaves:   map[string]int{},
		pluginMetadata: map[string]map[string]map[string]string{},
		sharedObjects:  map[sharedKey][]byte{},
		handled:        map[string]model.CommandStatus{},
	}
}

func (f *fakeControlPlane) validate(method string, req validator) error {
	if err := req.Validate(); err != nil {
		f.mu.Lock()
		f.rejected = append(f.rejected, fmt.Sprintf("%s: %v", method, err))
		f.mu.Unlock()
		return status.Error(codes.InvalidArgument, fmt.Sprintf("invalid request: %v", err))
	}
	return nil
}

func (f *fakeControlPlane) stageLogLocked(k logKey) *stageLog {
	l, ok := f.logs[k]
	if !ok {
		l = &stageLog{
			plainIndexes: map[int64]bool{},
			all:          map[int64]*model.LogBlock{},
		}
		f.logs[k] = l
	}
	return l
}

// noteBlocks records protocol-level facts about one batch of blocks.
func (l *stageLog) noteBlocks(method string, blocks []*model.LogBlock) {
	for i, b := range blocks {
		if i > 0 && b.Index <= blocks[i-1].Index {
			l.problems = append(l.problems, fmt.Sprintf("%s: block indexes not strictly increasing within one batch (%d after %d)", method, b.Index, blocks[i-1].Index))
		}
		if prev, ok := l.all[b.Index]; ok {
			if prev.Log != b.Log || prev.Severity != b.Severity {
				l.problems = append(l.problems, fmt.Sprintf("%s: index %d re-sent with different content (%q vs %q)", method, b.Index, prev.Log, b.Log))
			}
			continue
		}
		l.all[b.Index] = b
	}
}

func (f *fakeControlPlane) ReportStageLogs(ctx context.Context, req *pipedservice.ReportStageLogsRequest, _ ...grpc.CallOption) (*pipedservice.ReportStageLogsResponse, error) {
	if err := f.validate("ReportStageLogs", req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.stageLogLocked(logKey{req.DeploymentId, req.StageId, req.RetriedCount})
	if err := f.logStore.AppendLogs(ctx, req.DeploymentId, req.StageId, req.RetriedCount, req.Blocks); err != nil {
		return nil, l.refused(err)
	}
	l.plainCalls++
	l.noteBlocks("ReportStageLogs", req.Blocks)
	for _, b := range req.Blocks {
		l.plainIndexes[b.Index] = true
	}
	return &pipedservice.ReportStageLogsResponse{}, nil
}

// refused maps a store error to the PipedAPI server's answer.
func (l *stageLog) refused(err error) error {
	if errors.Is(err, stagelogstore.ErrAlreadyCompleted) {
		l.lateCalls++
		return status.Error(codes.FailedPrecondition, "could not append logs to a completed stage log")
	}
	return status.Error(codes.Internal, fmt.Sprintf("stage log store: %v", err))
}

func (f *fakeControlPlane) ReportStageLogsFromLastCheckpoint(ctx context.Context, req *pipedservice.ReportStageLogsFromLastCheckpointRequest, _ ...grpc.CallOption) (*pipedservice.ReportStageLogsFromLastCheckpointResponse, error) {
	if err := f.validate("ReportStageLogsFromLastCheckpoint", req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.stageLogLocked(logKey{req.DeploymentId, req.StageId, req.RetriedCount})
	if err := f.logStore.AppendLogsFromLastCheckpoint(ctx, req.DeploymentId, req.StageId, req.RetriedCount, req.Blocks, req.Completed); err != nil {
		return nil, l.refused(err)
	}
	l.ckptCalls++
	l.noteBlocks("ReportStageLogsFromLastCheckpoint", req.Blocks)
	if req.Completed {
		l.completed = true
		l.completedAt = time.Now()
	}
	return &pipedservice.ReportStageLogsFromLastCheckpointResponse{}, nil
}

func (f *fakeControlPlane) GetApplicationSharedObject(ctx context.Context, req *pipedservice.GetApplicationSharedObjectRequest, _ ...grpc.CallOption) (*pipedservice.GetApplicationSharedObjectResponse, error) {
	if err := f.validate("GetApplicationSharedObject", req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	obj, ok := f.sharedObjects[sharedKey{req.ApplicationId, req.PluginName, req.Key}]
	if !ok {
		return nil, status.Error(codes.NotFound, "object not found")
	}
	return &pipedservice.GetApplicationSharedObjectResponse{Object: obj}, nil
}

func (f *fakeControlPlane) PutApplicationSharedObject(ctx context.Context, req *pipedservice.PutApplicationSharedObjectRequest, _ ...grpc.CallOption) (*pipedservice.PutApplicationSharedObjectResponse, error) {
	if err := f.validate("PutApplicationSharedObject", req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sharedObjects[sharedKey{req.ApplicationId, req.PluginName, req.Key}] = append([]byte(nil), req.Object...)
	return &pipedservice.PutApplicationSharedObjectResponse{}, nil
}

func (f *fakeControlPlane) SaveStageMetadata(ctx context.Context, req *pipedservice.SaveStageMetadataRequest, _ ...grpc.CallOption) (*pipedservice.SaveStageMetadataResponse, error) {
	if err := f.validate("SaveStageMetadata", req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[string]string{}
	for k, v := range req.Metadata {
		m[k] = v
	}
	f.stageMetadata[req.StageId] = m
	f.stageMdSaves[req.StageId]++
	return &pipedservice.SaveStageMetadataResponse{}, nil
}

func (f *fakeControlPlane) SaveDeploymentPluginMetadata(ctx context.Context, req *pipedservice.SaveDeploymentPluginMetadataRequest, _ ...grpc.CallOption) (*pipedservice.SaveDeploymentPluginMetadataResponse, error) {
	if err := f.validate("SaveDeploymentPluginMetadata", req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pluginMetadata[req.DeploymentId] == nil {
		f.pluginMetadata[req.DeploymentId] = map[string]map[string]string{}
	}
	m := map[string]string{}
	for k, v := range req.Metadata {
		m[k] = v
	}
	f.pluginMetadata[req.DeploymentId][req.PluginName] = m
	return &pipedservice.SaveDeploymentPluginMetadataResponse{}, nil
}

func (f *fakeControlPlane) ListUnhandledCommands(ctx context.Context, req *pipedservice.ListUnhandledCommandsRequest, _ ...grpc.CallOption) (*pipedservice.ListUnhandledCommandsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	out := []*model.Command{}
	for _, p := range f.commands {
		if _, done := f.handled[p.cmd.Id]; done || now.Before(p.visibleAt) {
			continue
		}
		out = append(out, p.cmd)
	}
	return &pipedservice.ListUnhandledCommandsResponse{Commands: out}, nil
}

func (f *fakeControlPlane) ReportCommandHandled(ctx context.Context, req *pipedservice.ReportCommandHandledRequest, _ ...grpc.CallOption) (*pipedservice.ReportCommandHandledResponse, error) {
	if err := f.validate("ReportCommandHandled", req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handled[req.CommandId] = req.Status
	return &pipedservice.ReportCommandHandledResponse{}, nil
}

// addCommand queues a command that the control plane hands to piped after delay.
func (f *fakeControlPlane) addCommand(cmd *model.Command, delay time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands = append(f.commands, &pendingCommand{cmd: cmd, visibleAt: time.Now().Add(delay)})
}

// logSnapshot is a copy of what the control plane holds for one stage.
type logSnapshot struct {
	found        bool
	blocks       []*model.LogBlock // every distinct block received, by index
	view         []*model.LogBlock // what the store answers the web UI (FetchLogs), by index
	persisted    map[int64]bool    // indexes in the store's file
	plainOnly    []int64           // indexes sent only through plain calls and never checkpointed
	plainCalls   int
	ckptCalls    int
	completed    bool
	completedAt  time.Time
	lateCalls    int
	problems     []string
	retriedCount []int32
}

func (f *fakeControlPlane) stageLogs(deploymentID, stageID string) logSnapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s logSnapshot
	s.persisted = map[int64]bool{}
	for k, l := range f.logs {
		if k.deploymentID != deploymentID || k.stageID != stageID {
			continue
		}
		s.found = true
		s.retriedCount = append(s.retriedCount, k.retried)
		for _, b := range l.all {
			s.blocks = append(s.blocks, b)
		}
		file, fileCompleted := f.logFiles.stageLogFile(k)
		for _, b := range file {
			s.persisted[b.Index] = true
		}
		for i := range l.plainIndexes {
			if !s.persisted[i] {
				s.plainOnly = append(s.plainOnly, i)
			}
		}
		if view, _, err := f.logStore.FetchLogs(context.Background(), k.deploymentID, k.stageID, k.retried, 0); err == nil {
			s.view = append(s.view, view...)
		}
		s.plainCalls += l.plainCalls
		s.ckptCalls += l.ckptCalls
		s.completed = s.completed || fileCompleted
		if l.completed {
			s.completedAt = l.completedAt
		}
		s.lateCalls += l.lateCalls
		s.problems = append(s.problems, l.problems...)
	}
	sort.Slice(s.blocks, func(i, j int) bool { return s.blocks[i].Index < s.blocks[j].Index })
	sort.Slice(s.view, func(i, j int) bool { return s.view[i].Index < s.view[j].Index })
	sort.Slice(s.plainOnly, func(i, j int) bool { return s.plainOnly[i] < s.plainOnly[j] })
	return s
}

func (f *fakeControlPlane) getStageMetadata(stageID string) (map[string]string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for k, v := range f.stageMetadata[stageID] {
		out[k] = v
	}
	return out, f.stageMdSaves[stageID]
}

func (f *fakeControlPlane) getPluginMetadata(deploymentID, plugin string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for k, v := range f.pluginMetadata[deploymentID][plugin] {
		out[k] = v
	}
	return out
}

func (f *fakeControlPlane) getSharedObject(app, plugin, key string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.sharedObjects[sharedKey{app, plugin, key}]
	return v, ok
}

func (f *fakeControlPlane) putSharedObject(app, plugin, key string, v []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sharedObjects[sharedKey{app, plugin, key}] = v
}

func (f *fakeControlPlane) commandStatus(id string) (model.CommandStatus, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.handled[id]
	return s, ok
}

func (f *fakeControlPlane) takeRejections() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.rejected
	f.rejected = nil
	return r
}

// memFileStore is an in-memory filestore.Store for the stage log store: the
// control plane's durable storage (GCS, S3, MinIO in production).
type memFileStore struct {
	mu    sync.Mutex
	files map[string][]byte
}

var _ filestore.Store = (*memFileStore)(nil)

func newMemFileStore() *memFileStore { return &memFileStore{files: map[string][]byte{}} }

func (m *memFileStore) Get(_ context.Context, path string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[path]
	if !ok {
		return nil, filestore.ErrNotFound
	}
	return append([]byte(nil), b...), nil
}

func (m *memFileStore) GetReader(ctx context.Context, path string) (io.ReadCloser, error) {
	b, err := m.Get(ctx, path)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m *memFileStore) Put(_ context.Context, path string, content []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[path] = append([]byte(nil), content...)
	return nil
}

func (m *memFileStore) Delete(_ context.Context, path string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.files, path)
	return nil
}

func (m *memFileStore) List(_ context.Context, prefix string) ([]filestore.ObjectAttrs, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []filestore.ObjectAttrs
	for path, b := range m.files {
		if strings.HasPrefix(path, prefix) {
			out = append(out, filestore.ObjectAttrs{Path: path, Size: int64(len(b))})
		}
	}
	return out, nil
}

func (m *memFileStore) Close() error { return nil }

// stageLogFile reads the durable stage log file of k: its blocks and whether
// it carries the end marker. The store writes one JSON LogBlock per line and
// a last line "EOL" once the log is completed, at log/<deployment>/<stage>/<retried>.txt.
func (m *memFileStore) stageLogFile(k logKey) ([]*model.LogBlock, bool) {
	b, err := m.Get(context.Background(), fmt.Sprintf("log/%s/%s/%d.txt", k.deploymentID, k.stageID, k.retried))
	if err != nil {
		return nil, false
	}
	var blocks []*model.LogBlock
	scanner := bufio.NewScanner(bytes.NewReader(b))
	scanner.Buffer(make([]byte, 64*1024), 8*1024*1024)
	for scanner.Scan() {
		line := scanner.Bytes()
		switch {
		case len(line) == 0:
		case string(line) == "EOL":
			return blocks, true
		default:
			var lb model.LogBlock
			if json.Unmarshal(line, &lb) == nil {
				blocks = append(blocks, &lb)
			}
		}
	}
	return blocks, false
}

package main

// The piped side: piped's own PluginService, command store and metadata store
// registry wired as pkg/app/pipedv1/cmd/piped/piped.go wires them, and piped's
// own plugin launcher (pkg/lifecycle) and plugin client (pkg/plugin/api/v1alpha1).
//
// Two deliberate differences from piped: the PluginService listens on the
// loopback addresses only (piped's rpc.Server binds ":port"), and plugins are
// downloaded into a temporary directory instead of $HOME/.piped/plugins.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/pipe-cd/pipecd/pkg/app/pipedv1/apistore/commandstore"
	"github.com/pipe-cd/pipecd/pkg/app/pipedv1/cmd/piped/grpcapi"
	"github.com/pipe-cd/pipecd/pkg/app/pipedv1/metadatastore"
	config "github.com/pipe-cd/pipecd/pkg/configv1"
	"github.com/pipe-cd/pipecd/pkg/lifecycle"
	pluginapi "github.com/pipe-cd/pipecd/pkg/plugin/api/v1alpha1"
	"github.com/pipe-cd/pipecd/pkg/rpc"
	"github.com/pipe-cd/pipecd/pkg/rpc/rpcclient"
)

// callRecord is one call a plugin made to piped's PluginService.
type callRecord struct {
	method string
	code   string
	err    string
	at     time.Time
}

type callRecorder struct {
	mu    sync.Mutex
	calls []callRecord
}

func (r *callRecorder) interceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req interface{}, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (interface{}, error) {
		resp, err := handler(ctx, req)
		rec := callRecord{method: info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:], code: status.Code(err).String(), at: time.Now()}
		if err != nil {
			rec.err = err.Error()
		}
		r.mu.Lock()
		r.calls = append(r.calls, rec)
		r.mu.Unlock()
		return resp, err
	}
}

func (r *callRecorder) snapshot() []callRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]callRecord(nil), r.calls...)
}

type pipedSide struct {
	cp        *fakeControlPlane
	mds       *metadatastore.MetadataStoreRegistry
	cmdStore  commandstore.Store
	recorder  *callRecorder
	server    *grpc.Server
	port      int
	listeners []string
}

// startPiped starts piped's PluginService on a free loopback port (both
// 127.0.0.1 and ::1 when available) and piped's command store.
func startPiped(ctx context.Context, cp *fakeControlPlane, toolsDir string, logger *zap.Logger) (*pipedSide, error) {
	p := &pipedSide{cp: cp, recorder: &callRecorder{}}
	p.mds = metadatastore.NewMetadataStoreRegistry(cp)
	p.cmdStore = commandstore.NewStore(cp, 5*time.Second, logger)
	go p.cmdStore.Run(ctx)

	api, err := grpcapi.NewPluginAPI(&config.PipedSpec{}, cp, toolsDir, logger, p.mds, p.cmdStore.Lister())
	if err != nil {
		return nil, fmt.Errorf("NewPluginAPI: %w", err)
	}
	// Same interceptor chain as piped's rpc.Server with WithLogUnaryInterceptor and
	// WithRequestValidationUnaryInterceptor (log first, then validation); our
	// recorder sits outside so it also sees validation failures.
	p.server = grpc.NewServer(grpc.UnaryInterceptor(rpc.ChainUnaryServerInterceptors(
		p.recorder.interceptor(),
		rpc.LogUnaryServerInterceptor(logger.Named("rpc-server")),
		rpc.RequestValidationUnaryServerInterceptor(),
	)))
	api.Register(p.server)

	lis, err := listenLoopbackPair()
	if err != nil {
		return nil, err
	}
	p.port = lis[0].Addr().(*net.TCPAddr).Port
	for _, l := range lis {
		p.listeners = append(p.listeners, l.Addr().String())
		go p.server.Serve(l)
	}
	return p, nil
}

func (p *pipedSide) stop() {
	done := make(chan struct{})
	go func() { p.server.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		p.server.Stop()
	}
}

// listenLoopbackPair listens on 127.0.0.1:P and, when the host has IPv6
// loopback, on [::1]:P with the same P.
func listenLoopbackPair() ([]net.Listener, error) {
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		l4, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := l4.Addr().(*net.TCPAddr).Port
		l6, err := net.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(port)))
		if err == nil {
			return []net.Listener{l4, l6}, nil
		}
		if !hasIPv6Loopback() {
			return []net.Listener{l4}, nil
		}
		lastErr = err
		l4.Close()
	}
	return nil, fmt.Errorf("no free loopback port pair: %w", lastErr)
}

func hasIPv6Loopback() bool {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// freePort returns a port that is currently free on both loopback addresses.
func freePort() (int, error) {
	lis, err := listenLoopbackPair()
	if err != nil {
		return 0, err
	}
	port := lis[0].Addr().(*net.TCPAddr).Port
	for _, l := range lis {
		l.Close()
	}
	return port, nil
}

// preparePluginSource turns the plugin command into a single executable file
// that piped's launcher can "download" from a file:// URL.
//
//   - one path to an executable that is not a .py file: used as is;
//   - a path ending in .py: a /bin/sh wrapper that execs the Python interpreter
//     on that script by absolute path;
//   - anything else (several words): a /bin/sh wrapper that execs those words.
//
// piped copies the file, so the wrapper refers to everything by absolute path.
func preparePluginSource(pluginCmd []string, python, dir, name string) (string, error) {
	if len(pluginCmd) == 0 {
		return "", errors.New("no plugin command given")
	}
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			if _, err := os.Stat(a); err == nil {
				return a
			}
		}
		return p
	}
	argv := append([]string(nil), pluginCmd...)
	if len(argv) == 1 {
		path := abs(argv[0])
		if strings.HasSuffix(path, ".py") {
			argv = []string{python, path}
		} else if st, err := os.Stat(path); err == nil && st.Mode()&0o111 != 0 && !st.IsDir() {
			return path, nil
		}
	} else {
		for i := range argv {
			if i > 0 {
				argv[i] = abs(argv[i])
			}
		}
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# Written by the pipeplug interop harness.\nexec")
	for _, a := range argv {
		b.WriteString(" '" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	b.WriteString(" \"$@\"\n")
	path := filepath.Join(dir, name+"-wrapper")
	if err := os.WriteFile(path, []byte(b.String()), 0o755); err != nil {
		return "", err
	}
	return path, nil
}

// launchedPlugin is a plugin started the way piped's runPlugins starts it.
type launchedPlugin struct {
	name    string
	port    int
	argv    []string
	path    string
	cmd     *lifecycle.Command
	client  pluginapi.PluginClient
	started time.Time
	ready   time.Duration
}

func launchPlugin(ctx context.Context, pcfg config.PipedPlugin, pluginsDir string, pipedPort int, logger *zap.Logger) (*launchedPlugin, error) {
	// pkg/app/pipedv1/cmd/piped/piped.go runPlugins, step by step.
	path, err := lifecycle.DownloadBinary(pcfg.URL, pluginsDir, pcfg.Name, true, logger)
	if err != nil {
		return nil, fmt.Errorf("DownloadBinary: %w", err)
	}
	b, err := json.Marshal(pcfg)
	if err != nil {
		return nil, err
	}
	args := []string{"start", "--piped-plugin-service", net.JoinHostPort("localhost", strconv.Itoa(pipedPort)), "--config", string(b)}
	lp := &launchedPlugin{name: pcfg.Name, port: pcfg.Port, argv: args, path: path, started: time.Now()}
	// RunBinary retries only failures to start; keep that off the critical path
	// by giving it its own context.
	lp.cmd, err = lifecycle.RunBinary(ctx, path, args)
	if err != nil {
		return nil, fmt.Errorf("RunBinary: %w", err)
	}
	return lp, nil
}

// connect dials the plugin like piped does (WithBlock, insecure,
// localhost:<port>), but bounded by timeout and aborted if the process exits.
func (lp *launchedPlugin) connect(ctx context.Context, timeout time.Duration) error {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-dctx.Done():
				return
			case <-t.C:
				if !lp.cmd.IsRunning() {
					cancel()
					return
				}
			}
		}
	}()
	cli, err := pluginapi.NewClient(dctx, lp.name, net.JoinHostPort("localhost", strconv.Itoa(lp.port)),
		rpcclient.WithBlock(), rpcclient.WithInsecure())
	if err != nil {
		if !lp.cmd.IsRunning() {
			return fmt.Errorf("plugin process exited before it listened on localhost:%d: %w", lp.port, lp.cmd.GracefulStop(0))
		}
		return fmt.Errorf("plugin did not listen on localhost:%d within %s: %w", lp.port, timeout, err)
	}
	lp.client = cli
	lp.ready = time.Since(lp.started)
	return nil
}

// stop sends SIGTERM to the plugin process (by PID, through piped's own
// lifecycle.Command) and SIGKILL after the grace period.
func (lp *launchedPlugin) stop(grace time.Duration) (time.Duration, error) {
	if lp.client != nil {
		lp.client.Close()
	}
	start := time.Now()
	err := lp.cmd.GracefulStop(grace)
	return time.Since(start), err
}

// Command harness runs a PipeCD v1 plugin against piped's own Go code.
//
// It launches the plugin with piped's launcher (pkg/lifecycle) and argv, serves
// piped's own PluginService (grpcapi.NewPluginAPI behind pkg/rpc's request
// validation) in front of a fake control plane, builds piped's plugin registry,
// and drives planning, execution, cancellation, livestate and plan preview the
// way piped's controller does. Plugin-specific expectations come from a JSON
// scenario file (see ../README.md).
//
//	go run ./harness -plugin-cmd /abs/example_app.py -scenario scenarios/example.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/proto"

	config "github.com/pipe-cd/pipecd/pkg/configv1"
	"github.com/pipe-cd/pipecd/pkg/model"
	"github.com/pipe-cd/pipecd/pkg/rpc/rpcclient"
)

func proto_clone(st *model.PipelineStage) *model.PipelineStage {
	return proto.Clone(st).(*model.PipelineStage)
}

func dialOpts() []rpcclient.DialOption {
	return []rpcclient.DialOption{rpcclient.WithBlock(), rpcclient.WithInsecure()}
}

func main() {
	os.Exit(run())
}

func run() int {
	var (
		pluginCmd    = flag.String("plugin-cmd", os.Getenv("INTEROP_PLUGIN_CMD"), "plugin to test: an executable, a .py script, or a command line (env INTEROP_PLUGIN_CMD)")
		pluginURL    = flag.String("plugin-url", "", "instead of -plugin-cmd: the url piped downloads the plugin from (file://, https:// or oci://; for a private CA set SSL_CERT_FILE)")
		python       = flag.String("python", firstNonEmpty(os.Getenv("INTEROP_PYTHON"), "python3"), "Python interpreter for a .py plugin (env INTEROP_PYTHON)")
		scenarioPath = flag.String("scenario", os.Getenv("INTEROP_SCENARIO"), "scenario JSON file (env INTEROP_SCENARIO); empty = generic checks only")
		name         = flag.String("name", "", "plugin name (default: the scenario's name, else \"plugin\")")
		verbose      = flag.Bool("v", os.Getenv("INTEROP_VERBOSE") != "", "verbose: show details of passing checks and piped's logs")
		keep         = flag.Bool("keep", false, "keep the temporary directory")
		timeout      = flag.Duration("timeout", 4*time.Minute, "overall timeout")
	)
	flag.Parse()
	out := os.Stdout

	tmp, err := os.MkdirTemp("", "pipeplug-interop-")
	if err != nil {
		fmt.Fprintf(out, "FAIL: %v\n", err)
		return 2
	}
	if *keep {
		fmt.Fprintf(out, "temporary directory: %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	now := time.Now().Unix()
	sc, err := loadScenario(*scenarioPath, map[string]string{
		"TMP":      tmp,
		"NOW":      fmt.Sprint(now),
		"HOUR_AGO": fmt.Sprint(now - 3600),
	})
	if err != nil {
		fmt.Fprintf(out, "FAIL: scenario: %v\n", err)
		return 2
	}
	pluginName := firstNonEmpty(*name, sc.Name, "plugin")
	if strings.TrimSpace(*pluginCmd) == "" && *pluginURL == "" {
		fmt.Fprintln(out, "FAIL: no plugin: pass -plugin-cmd or -plugin-url, or set INTEROP_PLUGIN_CMD")
		return 2
	}

	level := zapcore.ErrorLevel
	if *verbose {
		level = zapcore.InfoLevel
	}
	zcfg := zap.NewDevelopmentConfig()
	zcfg.Level = zap.NewAtomicLevelAt(level)
	zcfg.OutputPaths = []string{"stderr"}
	logger, _ := zcfg.Build()
	defer logger.Sync()

	// A closed output pipe must not kill the harness before it stops the plugin.
	signal.Ignore(syscall.SIGPIPE)
	// SIGINT/SIGTERM end the run early; the deferred stops still run, so the
	// plugin process gets its SIGTERM.
	sigCtx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(sigCtx, *timeout)
	defer cancel()

	cp := newFakeControlPlane()
	piped, err := startPiped(ctx, cp, filepath.Join(tmp, "tools"), logger)
	if err != nil {
		fmt.Fprintf(out, "FAIL: starting piped's PluginService: %v\n", err)
		return 2
	}
	defer piped.stop()

	r := &Runner{out: out, verbose: *verbose}
	s := &suite{ctx: ctx, logger: logger, tmp: tmp, scenario: sc, name: pluginName, cp: cp, piped: piped, verbose: *verbose}
	fmt.Fprintf(out, "piped PluginService on %v (port %d)\n", piped.listeners, piped.port)

	// ---- launch, exactly as piped's runPlugins.
	var lp *launchedPlugin
	ok := r.Run("launch", func(t *T) {
		url := *pluginURL
		if url == "" {
			srcDir := filepath.Join(tmp, "src")
			os.MkdirAll(srcDir, 0o755)
			src, err := preparePluginSource(strings.Fields(*pluginCmd), *python, srcDir, pluginName)
			if err != nil {
				t.Fatalf("preparing the plugin file: %v", err)
			}
			url = "file://" + src
		}
		port, err := freePort()
		if err != nil {
			t.Fatalf("%v", err)
		}
		pcfg := config.PipedPlugin{Name: pluginName, URL: url, Port: port, Config: sc.Plugin.Config}
		fmt.Fprintf(out, "plugin url: %s\n", pcfg.URL) // shows whether a wrapper or the file itself is launched
		for _, dt := range sc.Plugin.DeployTargets {
			pcfg.DeployTargets = append(pcfg.DeployTargets, config.PipedDeployTarget{Name: dt.Name, Labels: dt.Labels, Config: dt.Config})
			s.targetsAll = append(s.targetsAll, dt.Name)
		}
		lp, err = launchPlugin(ctx, pcfg, filepath.Join(tmp, "plugins"), piped.port, logger)
		if err != nil {
			t.Fatalf("%v", err)
		}
		argv, _ := json.Marshal(lp.argv)
		t.Logf("launched %s with argv %s", lp.path, argv)
		startup := time.Duration(firstPositive(sc.StartupSeconds, 30) * float64(time.Second))
		if err := lp.connect(ctx, startup); err != nil {
			t.Fatalf("%v", err)
		}
		s.plugin = lp
		t.Logf("plugin listening after %s", lp.ready.Round(time.Millisecond))
	})
	if lp != nil {
		defer func() {
			if lp.cmd.IsRunning() {
				lp.stop(2 * time.Second)
			}
		}()
	}
	if ok {
		ok = r.Run("registry", s.checkRegistry)
	}
	if ok {
		r.Run("loopback", s.checkLoopback)
		deployments := sc.Deployments
		if len(deployments) == 0 {
			deployments = genericDeployments(pluginName, s.stages)
			fmt.Fprintf(out, "no scenario deployments: running %d generic planning cases\n", len(deployments))
		}
		for i := range deployments {
			dc := &deployments[i]
			var p *plan
			r.Run("plan/"+dc.Name, func(t *T) { p = s.planDeployment(t, dc) })
			if dc.Execute {
				r.Run("execute/"+dc.Name, func(t *T) {
					if p != nil && p.planErr != nil && strings.ToUpper(dc.ExpectPlan) == "ANY" {
						t.Skipf("planning failed, which the scenario allows (expectPlan ANY); piped executes nothing: %v", p.planErr)
					}
					if p == nil || p.planErr != nil {
						t.Fatalf("not planned; nothing to execute")
					}
					s.executeDeployment(t, p)
				})
			}
		}
		if sc.Concurrency != nil {
			r.Run("concurrency", func(t *T) { s.checkConcurrency(t, sc.Concurrency) })
		}
		r.Run("livestate", s.checkLivestate)
		r.Run("planpreview", s.checkPlanPreview)
		r.Run("pluginservice", s.checkPluginServiceCalls)
	}
	if lp != nil && lp.cmd.IsRunning() {
		r.Run("shutdown", func(t *T) {
			grace := time.Duration(firstPositive(sc.ShutdownSeconds, 10) * float64(time.Second))
			took, err := lp.stop(grace)
			t.Logf("SIGTERM → exit in %s (%v)", took.Round(time.Millisecond), err)
			if took >= grace {
				t.Errorf("plugin did not exit within %s of SIGTERM and was killed", grace)
			} else if err != nil {
				t.Errorf("plugin exited uncleanly after SIGTERM: %v", err)
			}
		})
	}

	passed, failed, skipped := r.Summary()
	fmt.Fprintf(out, "\nplugin %q: %d passed, %d failed, %d skipped\n", pluginName, passed, failed, skipped)
	if failed > 0 {
		fmt.Fprintf(out, "FAIL: %s\n", strings.Join(r.FailedNames(), ", "))
		return 1
	}
	fmt.Fprintln(out, "PASS")
	return 0
}

// genericDeployments are the planning cases any plugin can be put through:
// only the shape of the answers is checked, not whether planning succeeds.
func genericDeployments(name string, stages []string) []DeploymentCase {
	app := func(spec map[string]interface{}) json.RawMessage {
		spec["name"] = appName
		b, _ := json.Marshal(map[string]interface{}{"apiVersion": "pipecd.dev/v1beta1", "kind": "Application", "spec": spec})
		return b
	}
	out := []DeploymentCase{{
		Name:           "generic-plugins-keyed-first",
		App:            app(map[string]interface{}{"plugins": map[string]interface{}{name: map[string]interface{}{}}}),
		First:          true,
		ExpectStrategy: "QUICK_SYNC",
		ExpectPlan:     "ANY",
	}}
	if len(stages) > 0 {
		var pl []map[string]interface{}
		for _, st := range stages {
			pl = append(pl, map[string]interface{}{"name": st})
		}
		out = append(out,
			DeploymentCase{
				Name:       "generic-pipeline-later",
				App:        app(map[string]interface{}{"pipeline": map[string]interface{}{"stages": pl}}),
				ExpectPlan: "ANY",
			},
			DeploymentCase{
				Name:           "generic-pipeline-alwaysUsePipeline",
				App:            app(map[string]interface{}{"planner": map[string]interface{}{"alwaysUsePipeline": true}, "pipeline": map[string]interface{}{"stages": pl}}),
				ExpectStrategy: "PIPELINE",
				ExpectPlan:     "ANY",
			})
	}
	return out
}

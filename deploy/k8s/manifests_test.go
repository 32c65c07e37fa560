package k8s

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// overlays are the kustomizations the test renders, with the layout each
// must deploy. Every directory under overlays/ must be listed.
var overlays = map[string]Layout{
	"base":           {Workers: 1, Backups: 0, PS: 1},
	"overlays/small": {Workers: 4, Backups: 1, PS: 2},
	"overlays/paper": {Workers: 53, Backups: 3, PS: 17},
	"overlays/gpu":   {Workers: 4, Backups: 1, PS: 2, GPU: true},
}

// TestOverlays renders every overlay, decodes every object strictly and
// runs every cross-reference check on it.
func TestOverlays(t *testing.T) {
	entries, err := os.ReadDir("overlays")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := overlays["overlays/"+e.Name()]; e.IsDir() && !ok {
			t.Errorf("overlays/%s is not in this test's table of overlays", e.Name())
		}
	}
	for _, dir := range sortedKeys(overlays) {
		t.Run(dir, func(t *testing.T) {
			o, err := renderObjects(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, kind := range []struct {
				name      string
				got, want int
			}{
				{"StatefulSets (coordinator, ps)", len(o.StatefulSets), 2},
				{"Jobs (worker)", len(o.Jobs), 1},
				{"Services (coordinator, ps)", len(o.Services), 2},
				{"ConfigMaps (training configuration)", len(o.ConfigMaps), 1},
				{"PodMonitors", len(o.PodMonitors), 1},
			} {
				if kind.got != kind.want {
					t.Errorf("%d %s, want %d", kind.got, kind.name, kind.want)
				}
			}
			for _, err := range check(o, overlays[dir], t.TempDir()) {
				t.Error(err)
			}
		})
	}
}

// TestREADMEListsUserObjects: the Secrets and the claim the user must create
// are documented, with their keys.
func TestREADMEListsUserObjects(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for name, keys := range userSecrets {
		for _, s := range append([]string{name}, keys...) {
			if !strings.Contains(readme, "`"+s+"`") {
				t.Errorf("README.md does not mention `%s` (Secret %s)", s, name)
			}
		}
	}
	for _, name := range userClaims {
		if !strings.Contains(readme, "`"+name+"`") {
			t.Errorf("README.md does not mention the PersistentVolumeClaim `%s`", name)
		}
	}
}

// containerOf returns the container of o's workload named workloadName.
func containerOf(t *testing.T, o *Objects, workloadName string) *corev1.Container {
	t.Helper()
	for _, w := range o.workloads() {
		if w.Name == workloadName {
			return &w.Template.Spec.Containers[0]
		}
	}
	t.Fatalf("no workload %s", workloadName)
	return nil
}

func setArg(t *testing.T, c *corev1.Container, prefix, arg string) {
	t.Helper()
	for i, a := range c.Args {
		if strings.HasPrefix(a, prefix) {
			c.Args[i] = arg
			return
		}
	}
	t.Fatalf("container %s has no arg %s…", c.Name, prefix)
}

func setEnv(t *testing.T, c *corev1.Container, name string, f func(*corev1.EnvVar)) {
	t.Helper()
	for i := range c.Env {
		if c.Env[i].Name == name {
			f(&c.Env[i])
			return
		}
	}
	t.Fatalf("container %s has no env %s", c.Name, name)
}

func volume(t *testing.T, o *Objects, workloadName, name string) *corev1.Volume {
	t.Helper()
	for _, w := range o.workloads() {
		if w.Name == workloadName {
			if v := volumeOf(&w.Template.Spec, name); v != nil {
				return v
			}
		}
	}
	t.Fatalf("%s has no volume %s", workloadName, name)
	return nil
}

func ptr[T any](v T) *T { return &v }

// setTrainingConfig replaces the training configuration's JSON.
func setTrainingConfig(t *testing.T, o *Objects, f func(string) string) {
	t.Helper()
	cm := o.ConfigMaps[0]
	for k, v := range cm.Data {
		cm.Data[k] = f(v)
	}
}

// TestChecksCatchBrokenManifests: each check fails on a manifest broken the
// way it guards against. Every case starts from a fresh decode of the small
// (or gpu) overlay, which passes every check (TestOverlays).
func TestChecksCatchBrokenManifests(t *testing.T) {
	docs := map[string][][]byte{}
	for _, dir := range []string{"overlays/small", "overlays/gpu"} {
		d, err := render(dir)
		if err != nil {
			t.Fatal(err)
		}
		docs[dir] = d
	}
	cases := []struct {
		name    string
		overlay string // default overlays/small
		break_  func(t *testing.T, o *Objects)
		want    []string
	}{
		{"Service selector matches nothing", "", func(t *testing.T, o *Objects) {
			o.service("ps").Spec.Selector["app.kubernetes.io/component"] = "pserver"
		}, []string{"Service/ps: selector map[app.kubernetes.io/component:pserver app.kubernetes.io/name:logitpair] matches no pod template"}},
		{"StatefulSet selector does not match its template", "", func(t *testing.T, o *Objects) {
			o.statefulSet("ps").Spec.Selector.MatchLabels["app.kubernetes.io/component"] = "ps"
		}, []string{"StatefulSet/ps: selector", "does not match its pod template's labels"}},
		{"serviceName names no Service", "", func(t *testing.T, o *Objects) {
			o.statefulSet("ps").Spec.ServiceName = "paramservers"
		}, []string{`StatefulSet/ps: serviceName "paramservers" names no Service`}},
		{"StatefulSet Service not headless", "", func(t *testing.T, o *Objects) {
			o.service("ps").Spec.ClusterIP = ""
		}, []string{`Service "ps" is not headless`}},
		{"Service targetPort names no container port", "", func(t *testing.T, o *Objects) {
			o.service("coordinator").Spec.Ports[0].TargetPort = intstr.FromString("rpc")
		}, []string{"Service/coordinator port grpc: target port rpc/TCP is not a container port of StatefulSet/coordinator"}},
		{"probe port names no container port", "", func(t *testing.T, o *Objects) {
			containerOf(t, o, "coordinator").LivenessProbe.HTTPGet.Port = intstr.FromString("metrics")
		}, []string{"liveness probe port metrics is not a container port"}},
		{"readiness probe on the wrong path", "", func(t *testing.T, o *Objects) {
			containerOf(t, o, "ps").ReadinessProbe.HTTPGet.Path = "/ready"
		}, []string{"readiness probe is  /ready on port http, want HTTP /readyz on port http"}},
		{"readiness probe missing", "", func(t *testing.T, o *Objects) {
			containerOf(t, o, "worker").ReadinessProbe = nil
		}, []string{"Job/worker container worker has no readiness probe"}},
		{"PodMonitor port names no container port", "", func(t *testing.T, o *Objects) {
			o.PodMonitors[0].Spec.PodMetricsEndpoints[0].Port = ptr("metrics")
		}, []string{`PodMonitor/logitpair: port "metrics" is not a container port of StatefulSet/coordinator`}},
		{"PodMonitor selects nothing", "", func(t *testing.T, o *Objects) {
			o.PodMonitors[0].Spec.Selector.MatchLabels["app.kubernetes.io/part-of"] = "other"
		}, []string{"PodMonitor/logitpair: selector app.kubernetes.io/part-of=other matches no pod template", "Job/worker: no PodMonitor scrapes its pods"}},
		{"volumeMount names no volume", "", func(t *testing.T, o *Objects) {
			containerOf(t, o, "worker").VolumeMounts[0].Name = "dataset"
		}, []string{`Job/worker container worker: volumeMount "dataset" names no volume or volumeClaimTemplate`}},
		{"volumeMount names no volumeClaimTemplate", "", func(t *testing.T, o *Objects) {
			o.statefulSet("ps").Spec.VolumeClaimTemplates[0].Name = "data"
		}, []string{`StatefulSet/ps container paramserver: volumeMount "checkpoints" names no volume or volumeClaimTemplate`}},
		{"secretKeyRef to an unknown Secret", "", func(t *testing.T, o *Objects) {
			setEnv(t, containerOf(t, o, "ps"), "LOGITPAIR_JOIN_TOKEN", func(e *corev1.EnvVar) { e.ValueFrom.SecretKeyRef.Name = "logitpair-secret" })
		}, []string{`StatefulSet/ps: container paramserver env LOGITPAIR_JOIN_TOKEN refers to Secret "logitpair-secret"`}},
		{"secretKeyRef to an unknown key", "", func(t *testing.T, o *Objects) {
			setEnv(t, containerOf(t, o, "worker"), "LOGITPAIR_GOSSIP_KEY", func(e *corev1.EnvVar) { e.ValueFrom.SecretKeyRef.Key = "gossip.key" })
		}, []string{`refers to key "gossip.key" of Secret "logitpair-secrets"`}},
		{"configMapKeyRef to an unknown ConfigMap", "", func(t *testing.T, o *Objects) {
			c := containerOf(t, o, "worker")
			c.Env = append(c.Env, corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "logitpair-layout"}, Key: "workers"}}})
		}, []string{`container worker env X refers to ConfigMap "logitpair-layout"`}},
		{"ConfigMap volume names the ungenerated name", "", func(t *testing.T, o *Objects) {
			volume(t, o, "coordinator", "training-config").ConfigMap.Name = "logitpair-training"
		}, []string{`volume training-config refers to ConfigMap "logitpair-training"`}},
		{"Secret volume names an unknown Secret", "", func(t *testing.T, o *Objects) {
			volume(t, o, "ps", "tls").Secret.SecretName = "tls"
		}, []string{`StatefulSet/ps: volume tls refers to Secret "tls"`}},
		{"PersistentVolumeClaim unknown", "", func(t *testing.T, o *Objects) {
			volume(t, o, "worker", "datasets").PersistentVolumeClaim.ClaimName = "datasets"
		}, []string{`refers to PersistentVolumeClaim "datasets"`}},
		{"unknown flag", "", func(t *testing.T, o *Objects) {
			setArg(t, containerOf(t, o, "coordinator"), "--workers=", "--worker=$(CLUSTER_WORKERS)")
		}, []string{"StatefulSet/coordinator container coordinator: coordinator: unknown flag: --worker"}},
		{"training flag on the worker (only the coordinator takes them)", "", func(t *testing.T, o *Objects) {
			c := containerOf(t, o, "worker")
			c.Args = append(c.Args, "--steps=10")
		}, []string{"Job/worker container worker: worker: unknown flag: --steps"}},
		{"flag value the binary cannot parse", "", func(t *testing.T, o *Objects) {
			setEnv(t, containerOf(t, o, "coordinator"), "CLUSTER_PS", func(e *corev1.EnvVar) { e.Value = "two" })
		}, []string{`invalid argument "two" for "--ps" flag`}},
		{"positional argument", "", func(t *testing.T, o *Objects) {
			c := containerOf(t, o, "ps")
			c.Args = append(c.Args, "--index", "$(POD_INDEX)", "extra")
		}, []string{"paramserver takes no positional arguments, got [extra]"}},
		{"undefined variable", "", func(t *testing.T, o *Objects) {
			setArg(t, containerOf(t, o, "ps"), "--index=", "--index=$(POD_INDX)")
		}, []string{`StatefulSet/ps container paramserver: arg "--index=$(POD_INDX)" refers to a variable the container does not define`}},
		{"pod-index label in a Job", "", func(t *testing.T, o *Objects) {
			setEnv(t, containerOf(t, o, "worker"), "JOB_COMPLETION_INDEX", func(e *corev1.EnvVar) {
				e.ValueFrom.FieldRef.FieldPath = "metadata.labels['apps.kubernetes.io/pod-index']"
			})
		}, []string{"env JOB_COMPLETION_INDEX: the apps.kubernetes.io/pod-index label is set on StatefulSet pods only"}},
		{"command instead of args", "", func(t *testing.T, o *Objects) {
			containerOf(t, o, "coordinator").Command = []string{"/coordinator"}
		}, []string{"sets command [/coordinator]: the image's ENTRYPOINT is the binary"}},
		{"unknown image", "", func(t *testing.T, o *Objects) {
			containerOf(t, o, "ps").Image = "busybox:1.36"
		}, []string{`image "busybox:1.36" is not a logitpair binary`}},
		{"shard count differs from --ps", "", func(t *testing.T, o *Objects) {
			o.statefulSet("ps").Spec.Replicas = ptr(int32(3))
		}, []string{"StatefulSet/ps has 3 replicas but the coordinator's --ps is 2"}},
		{"worker parallelism differs from --workers", "", func(t *testing.T, o *Objects) {
			o.job("worker").Spec.Parallelism = ptr(int32(3))
		}, []string{"Job/worker: parallelism 3 and completions 4, the coordinator's --workers is 4"}},
		{"coordinator layout differs from the overlay's", "", func(t *testing.T, o *Objects) {
			setEnv(t, containerOf(t, o, "coordinator"), "CLUSTER_WORKERS", func(e *corev1.EnvVar) { e.Value = "5" })
		}, []string{"--workers=5 --backups=1 --ps=2, want --workers=4 --backups=1 --ps=2", "parallelism 4 and completions 4, the coordinator's --workers is 5"}},
		{"backups not below workers", "", func(t *testing.T, o *Objects) {
			setEnv(t, containerOf(t, o, "coordinator"), "CLUSTER_BACKUPS", func(e *corev1.EnvVar) { e.Value = "4" })
		}, []string{"--backups=4 must be in [0, --workers=4)"}},
		{"shard index not from the ordinal", "", func(t *testing.T, o *Objects) {
			setArg(t, containerOf(t, o, "ps"), "--index=", "--index=0")
		}, []string{`--index="0", want $(VAR) with VAR from the pod's apps.kubernetes.io/pod-index label`}},
		{"slot not from the completion index", "", func(t *testing.T, o *Objects) {
			setArg(t, containerOf(t, o, "worker"), "--slot=", "--slot=-1")
		}, []string{`--slot="-1", want $(VAR) with VAR the pod's completion index`}},
		{"worker Job not Indexed", "", func(t *testing.T, o *Objects) {
			o.job("worker").Spec.CompletionMode = ptr(batchv1.NonIndexedCompletion)
		}, []string{"Job/worker: completionMode must be Indexed", "is set on the pods of Indexed Jobs only"}},
		{"request above limit", "", func(t *testing.T, o *Objects) {
			containerOf(t, o, "worker").Resources.Requests[corev1.ResourceMemory] = resource.MustParse("16Gi")
		}, []string{"Job/worker container worker: memory request 16Gi exceeds its limit 8Gi"}},
		{"limit missing", "", func(t *testing.T, o *Objects) {
			delete(containerOf(t, o, "coordinator").Resources.Limits, corev1.ResourceCPU)
		}, []string{"StatefulSet/coordinator container coordinator has no cpu limit"}},
		{"more threads than CPUs", "", func(t *testing.T, o *Objects) {
			setEnv(t, containerOf(t, o, "worker"), "WORKER_THREADS", func(e *corev1.EnvVar) { e.Value = "16" })
		}, []string{"--threads=16 exceeds the CPU limit 4"}},
		{"GPU requested in an overlay without GPUs", "", func(t *testing.T, o *Objects) {
			c := containerOf(t, o, "worker")
			c.Resources.Requests[gpuResource] = resource.MustParse("1")
			c.Resources.Limits[gpuResource] = resource.MustParse("1")
		}, []string{"requests a GPU (or runs the GPU image) in an overlay without GPU workers"}},
		{"GPU workers without the GPU toleration", "overlays/gpu", func(t *testing.T, o *Objects) {
			o.job("worker").Spec.Template.Spec.Tolerations = nil
		}, []string{"Job/worker: no toleration for the nvidia.com/gpu taint"}},
		{"GPU workers without the node selector", "overlays/gpu", func(t *testing.T, o *Objects) {
			o.job("worker").Spec.Template.Spec.NodeSelector = nil
		}, []string{"Job/worker: no nodeSelector nvidia.com/gpu.present=true"}},
		{"GPU workers on the CPU image", "overlays/gpu", func(t *testing.T, o *Objects) {
			containerOf(t, o, "worker").Image = "logitpair/worker:dev"
		}, []string{"image logitpair/worker:dev, want logitpair/worker-gpu"}},
		{"GPU workers requesting two GPUs", "overlays/gpu", func(t *testing.T, o *Objects) {
			c := containerOf(t, o, "worker")
			c.Resources.Requests[gpuResource] = resource.MustParse("2")
		}, []string{"nvidia.com/gpu request 2 must equal its limit 1", "nvidia.com/gpu request 2, limit 1, want 1"}},
		{"TLS key not in the Secret", "", func(t *testing.T, o *Objects) {
			setArg(t, containerOf(t, o, "ps"), "--tls-key=", "--tls-key=/etc/logitpair/tls/tls.pem")
		}, []string{`--tls-key=/etc/logitpair/tls/tls.pem is not a file of Secret "logitpair-tls-paramserver"`}},
		{"a worker with the coordinator's certificate", "", func(t *testing.T, o *Objects) {
			volume(t, o, "worker", "tls").Secret.SecretName = "logitpair-tls-coordinator"
		}, []string{`Job/worker container worker: --tls-cert is in Secret "logitpair-tls-coordinator", want "logitpair-tls-worker"`}},
		{"TLS file on no mount", "", func(t *testing.T, o *Objects) {
			setArg(t, containerOf(t, o, "worker"), "--tls-ca=", "--tls-ca=/etc/tls/ca.crt")
		}, []string{"--tls-ca=/etc/tls/ca.crt is on no volume mount"}},
		{"no TLS", "", func(t *testing.T, o *Objects) {
			c := containerOf(t, o, "worker")
			c.Args = slices.DeleteFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--tls-") })
		}, []string{"Job/worker container worker: --tls-ca, --tls-cert and --tls-key must all be set (mutual TLS), 0 are"}},
		{"shard dir not on its persistent volume", "", func(t *testing.T, o *Objects) {
			setArg(t, containerOf(t, o, "ps"), "--dir=", "--dir=/var/lib/ps")
		}, []string{"--dir=/var/lib/ps is not on a persistent volume"}},
		{"training config with an unknown key", "", func(t *testing.T, o *Objects) {
			setTrainingConfig(t, o, func(s string) string { return strings.Replace(s, `"eps"`, `"epsilon"`, 1) })
		}, []string{`unknown field "epsilon"`}},
		{"training config invalid", "", func(t *testing.T, o *Objects) {
			setTrainingConfig(t, o, func(s string) string { return strings.Replace(s, `"lr": 0.001`, `"lr": 0`, 1) })
		}, []string{"--lr must be positive, got 0"}},
		{"model too small for the shards", "", func(t *testing.T, o *Objects) {
			// A madry-mnist of 122 parameters (conv 1+1, fc1 49+1, fc2 10+10).
			setTrainingConfig(t, o, func(s string) string {
				return strings.Replace(s, `"model": "madry-mnist",`, `"model": "madry-mnist", "model-config": {"conv1": 1, "conv2": 1, "hidden": 1},`, 1)
			})
			setEnv(t, containerOf(t, o, "coordinator"), "CLUSTER_PS", func(e *corev1.EnvVar) { e.Value = "123" })
			o.statefulSet("ps").Spec.Replicas = ptr(int32(123))
		}, []string{"123 shards for 122 parameters"}},
		{"dataset directory not mounted in the workers", "", func(t *testing.T, o *Objects) {
			setTrainingConfig(t, o, func(s string) string { return strings.Replace(s, `"/data/mnist"`, `"data/mnist"`, 1) })
		}, []string{"the dataset directory data/mnist (data-dir) is on no volume mount"}},
		{"listen port not the named container port", "", func(t *testing.T, o *Objects) {
			setArg(t, containerOf(t, o, "coordinator"), "--listen=", "--listen=0.0.0.0:7000")
		}, []string{"--listen=0.0.0.0:7000, but the container port named grpc is", `Service "coordinator" port 7070 does not lead to the coordinator's --listen port 7000`}},
		{"HTTP port not the probes' port", "", func(t *testing.T, o *Objects) {
			setArg(t, containerOf(t, o, "worker"), "--http-listen=", "--http-listen=0.0.0.0:8080")
		}, []string{"--http-listen=0.0.0.0:8080, but the container port named http is"}},
		{"coordinator address names no Service", "", func(t *testing.T, o *Objects) {
			setArg(t, containerOf(t, o, "worker"), "--coordinator=", "--coordinator=coord.$(POD_NAMESPACE).svc:7070")
		}, []string{`--coordinator=coord.logitpair.svc:7070: no Service "coord"`}},
		{"coordinator address in another namespace", "", func(t *testing.T, o *Objects) {
			setArg(t, containerOf(t, o, "ps"), "--coordinator=", "--coordinator=coordinator.default.svc:7070")
		}, []string{"--coordinator=coordinator.default.svc:7070: want SERVICE.logitpair.svc:PORT"}},
		{"gossip join on the wrong port", "", func(t *testing.T, o *Objects) {
			setArg(t, containerOf(t, o, "worker"), "--gossip-join=", "--gossip-join=coordinator.$(POD_NAMESPACE).svc:7070")
		}, []string{`Service "coordinator" port 7070 does not lead to the coordinator's --gossip-bind port 7946`}},
		{"shard advertises a name nobody resolves", "", func(t *testing.T, o *Objects) {
			setArg(t, containerOf(t, o, "ps"), "--advertise=", "--advertise=$(POD_NAME).paramserver.$(POD_NAMESPACE).svc:7071")
		}, []string{"--advertise=ps-0.paramserver.logitpair.svc:7071 (as pod ps-0), want ps-0.ps.logitpair.svc:7071"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			overlay := tc.overlay
			if overlay == "" {
				overlay = "overlays/small"
			}
			o, err := decode(docs[overlay])
			if err != nil {
				t.Fatal(err)
			}
			tc.break_(t, o)
			errs := check(o, overlays[overlay], t.TempDir())
			for _, w := range tc.want {
				if !errorsContain(errs, w) {
					t.Errorf("no error containing %q; got %d errors:", w, len(errs))
					for _, e := range errs {
						t.Log(e)
					}
				}
			}
		})
	}
}

// TestStrictDecoding: unknown, duplicate, mis-cased and mistyped fields and
// kinds this test does not know are errors.
func TestStrictDecoding(t *testing.T) {
	docs, err := render("overlays/small")
	if err != nil {
		t.Fatal(err)
	}
	var ps []byte
	for _, d := range docs {
		if bytes.Contains(d, []byte("kind: StatefulSet")) && bytes.Contains(d, []byte("\n  name: ps\n")) {
			ps = d
		}
	}
	if ps == nil {
		t.Fatal("no StatefulSet ps in the rendered overlay")
	}
	if _, err := decode([][]byte{ps}); err != nil {
		t.Fatalf("the unmodified StatefulSet does not decode: %v", err)
	}
	// insert adds a line right after the StatefulSet's "spec:" line.
	insert := func(line string) []byte {
		return bytes.Replace(ps, []byte("\nspec:\n"), []byte("\nspec:\n"+line+"\n"), 1)
	}
	for _, tc := range []struct {
		name string
		doc  []byte
		want string
	}{
		{"unknown field", insert("  replica: 2"), `StatefulSet/ps: unknown field "spec.replica"`},
		{"field in the wrong case", insert("  ServiceName: ps"), `unknown field "spec.ServiceName"`},
		{"duplicate field", insert("  replicas: 5"), `"replicas" already set in map`},
		{"mistyped field", bytes.Replace(ps, []byte("replicas: 2"), []byte("replicas: two"), 1), "cannot unmarshal string into Go struct field"},
		{"unknown kind", []byte("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: x\n"), "networking.k8s.io/v1 Ingress/x: a kind this test does not decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode([][]byte{tc.doc})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestRenderCatchesUnknownFieldThroughKustomize: an overlay whose patch
// misspells a field of the PodMonitor (a custom resource, which kustomize
// merges without a schema) renders, and the strict decoding rejects it.
func TestRenderCatchesUnknownFieldThroughKustomize(t *testing.T) {
	base, err := filepath.Abs("base")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, base) // kustomize takes relative paths only
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kustomization.yaml", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - "+rel+"\npatches:\n  - path: patch.yaml\n")
	write("patch.yaml", "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata:\n  name: logitpair\nspec:\n  podMetricEndpoints:\n    - port: http\n")
	_, err = renderObjects(dir)
	if want := `monitoring.coreos.com/v1 PodMonitor/logitpair: unknown field "spec.podMetricEndpoints"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got error %v, want one containing %q", err, want)
	}
}

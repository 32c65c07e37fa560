package k8s

import (
	"fmt"
	"math"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/logitpair/logitpair/pkg/cluster"
	"github.com/logitpair/logitpair/pkg/node"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/tlsutil"
	"github.com/logitpair/logitpair/pkg/train"
)

// Layout is what an overlay must deploy: W worker slots of which b backups,
// K parameter-server shards, and GPU workers or not.
type Layout struct {
	Workers, Backups, PS int
	GPU                  bool
}

// userSecrets are the Secrets the user creates before applying an overlay
// (README.md, "Secrets"), with their keys: the shared secrets and one TLS
// Secret per role (tlsSecret). Nothing in the overlays creates them: they
// hold the cluster's credentials.
var userSecrets = func() map[string][]string {
	m := map[string][]string{"logitpair-secrets": {"gossip-key", "join-token"}}
	for _, r := range tlsutil.AllRoles {
		m[tlsSecret(r)] = []string{tlsutil.CAFile, tlsutil.CertFile, tlsutil.KeyFile}
	}
	return m
}()

// tlsSecret is the Secret holding role's directory of `logitpair certs`:
// the CA certificate and the role's certificate and key. A process mounts
// only its own role's.
func tlsSecret(role string) string { return "logitpair-tls-" + role }

// userClaims are the PersistentVolumeClaims the user creates and fills
// (README.md, "Datasets").
var userClaims = []string{"logitpair-datasets"}

// binaries maps an image repository (its last two path elements) to the
// command its ENTRYPOINT runs.
var binaries = map[string]func() *cobra.Command{
	"logitpair/coordinator": node.CoordinatorCommand,
	"logitpair/paramserver": node.ParamServerCommand,
	"logitpair/worker":      node.WorkerCommand,
	"logitpair/worker-gpu":  node.WorkerCommand,
}

// Well-known labels and annotations the Kubernetes controllers set on pods.
const (
	podIndexLabel        = "apps.kubernetes.io/pod-index"
	completionIndexKey   = "batch.kubernetes.io/job-completion-index"
	partOfLabel          = "app.kubernetes.io/part-of"
	gpuResource          = corev1.ResourceName("nvidia.com/gpu")
	gpuImage             = "logitpair/worker-gpu"
	sampleOrdinal        = "0"
	samplePodIP          = "10.0.0.1"
	workloadKindJob      = "Job"
	workloadStatefulSet  = "StatefulSet"
	workloadDeployment   = "Deployment"
	roleCoordinator      = "coordinator"
	roleParamServer      = "paramserver"
	roleWorker           = "worker"
	defaultMetricsPath   = "/metrics"
	healthPath           = "/healthz"
	readyPath            = "/readyz"
	httpPortName         = "http"
	grpcPortName         = "grpc"
	gossipPortName       = "gossip"
	gossipUDPPortName    = "gossip-udp"
	trainingConfigFlag   = "config"
	gpuNodeSelectorLabel = "nvidia.com/gpu.present"
)

// container is one container of a workload with its arguments expanded the
// way the kubelet expands them (with sample values for the downward API)
// and parsed by the binary's real flag set.
type container struct {
	W    workload
	C    *corev1.Container
	Role string // coordinator, paramserver or worker
	// Env are the container's variables: literal values, sample values for
	// fieldRefs, placeholders for secrets.
	Env  map[string]string
	Args []string          // expanded
	Raw  map[string]string // flag name → its unexpanded value in the manifest
	FS   *pflag.FlagSet    // parsed
}

func (c *container) String() string { return c.W.String() + " container " + c.C.Name }

// flag returns the parsed value of flag name.
func (c *container) flag(name string) string {
	if f := c.FS.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// changed reports whether the manifest sets flag name.
func (c *container) changed(name string) bool {
	f := c.FS.Lookup(name)
	return f != nil && f.Changed
}

// checker collects the problems of one rendered kustomization.
type checker struct {
	o      *Objects
	ns     string
	tmpDir string
	errs   []error
}

func (k *checker) errorf(format string, a ...any) { k.errs = append(k.errs, fmt.Errorf(format, a...)) }

// check runs every check on o and returns every problem found. tmpDir is a
// scratch directory (the training configuration is loaded from a file).
func check(o *Objects, want Layout, tmpDir string) []error {
	k := &checker{o: o, ns: o.namespace(), tmpDir: tmpDir}
	k.selectors()
	k.statefulSetServices()
	k.probes()
	k.podMonitors()
	k.volumeMounts()
	k.references()
	cs := k.containers()
	k.layout(cs, want)
	k.resources(cs)
	k.gpu(cs, want)
	k.files(cs)
	k.addresses(cs)
	return k.errs
}

// allContainers lists a pod spec's init and app containers.
func allContainers(spec *corev1.PodSpec) []*corev1.Container {
	var cs []*corev1.Container
	for i := range spec.InitContainers {
		cs = append(cs, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		cs = append(cs, &spec.Containers[i])
	}
	return cs
}

// selects reports whether a label selector matches set.
func selects(sel *metav1.LabelSelector, set map[string]string) (bool, error) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, err
	}
	return !s.Empty() && s.Matches(labels.Set(set)), nil
}

// findPort returns the container port of spec that ref (a name or a number)
// names with protocol proto ("" = any).
func findPort(spec *corev1.PodSpec, ref intstr.IntOrString, proto corev1.Protocol) *corev1.ContainerPort {
	for _, c := range allContainers(spec) {
		for i := range c.Ports {
			p := &c.Ports[i]
			pp := p.Protocol
			if pp == "" {
				pp = corev1.ProtocolTCP
			}
			if proto != "" && pp != proto {
				continue
			}
			if (ref.Type == intstr.String && p.Name == ref.StrVal) || (ref.Type == intstr.Int && p.ContainerPort == ref.IntVal) {
				return p
			}
		}
	}
	return nil
}

// selectors: every workload's selector matches its pod template, every
// Service selects at least one pod template, and every Service port's
// target port exists in each pod template it selects.
func (k *checker) selectors() {
	for _, w := range k.o.workloads() {
		if w.Selector == nil {
			if w.Kind != workloadKindJob { // a Job's selector is generated
				k.errorf("%s has no selector", w)
			}
			continue
		}
		ok, err := selects(w.Selector, w.Template.Labels)
		if err != nil {
			k.errorf("%s: selector: %v", w, err)
		} else if !ok {
			k.errorf("%s: selector %s does not match its pod template's labels %v", w, metav1.FormatLabelSelector(w.Selector), w.Template.Labels)
		}
	}
	for _, s := range k.o.Services {
		if len(s.Spec.Selector) == 0 {
			k.errorf("Service/%s has no selector", s.Name)
			continue
		}
		var matched []workload
		for _, w := range k.o.workloads() {
			if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(w.Template.Labels)) {
				matched = append(matched, w)
			}
		}
		if len(matched) == 0 {
			k.errorf("Service/%s: selector %v matches no pod template", s.Name, s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port)
			}
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			for _, w := range matched {
				if findPort(&w.Template.Spec, target, proto) == nil {
					k.errorf("Service/%s port %s: target port %s/%s is not a container port of %s", s.Name, p.Name, target.String(), proto, w)
				}
			}
		}
	}
}

// statefulSetServices: a StatefulSet's serviceName names a headless Service
// that selects its pods (that Service gives the pods their DNS names).
func (k *checker) statefulSetServices() {
	for _, s := range k.o.StatefulSets {
		svc := k.o.service(s.Spec.ServiceName)
		switch {
		case s.Spec.ServiceName == "":
			k.errorf("StatefulSet/%s has no serviceName", s.Name)
		case svc == nil:
			k.errorf("StatefulSet/%s: serviceName %q names no Service", s.Name, s.Spec.ServiceName)
		case svc.Spec.ClusterIP != corev1.ClusterIPNone:
			k.errorf("StatefulSet/%s: Service %q is not headless (clusterIP: None)", s.Name, svc.Name)
		case len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(s.Spec.Template.Labels)):
			k.errorf("StatefulSet/%s: Service %q does not select its pods", s.Name, svc.Name)
		}
	}
}

// probes: every container has a liveness probe on /healthz and a readiness
// probe on /readyz, both HTTP on its plaintext port named http, and every
// probe's port is a port of the container.
func (k *checker) probes() {
	for _, w := range k.o.workloads() {
		for _, c := range w.Template.Spec.Containers {
			spec := &corev1.PodSpec{Containers: []corev1.Container{c}}
			for _, pr := range []struct {
				kind, path string
				p          *corev1.Probe
				required   bool
			}{{"liveness", healthPath, c.LivenessProbe, true}, {"readiness", readyPath, c.ReadinessProbe, true}, {"startup", "", c.StartupProbe, false}} {
				if pr.p == nil {
					if pr.required {
						k.errorf("%s container %s has no %s probe", w, c.Name, pr.kind)
					}
					continue
				}
				h := pr.p.ProbeHandler
				switch {
				case h.HTTPGet != nil:
					if findPort(spec, h.HTTPGet.Port, corev1.ProtocolTCP) == nil {
						k.errorf("%s container %s: %s probe port %s is not a container port", w, c.Name, pr.kind, h.HTTPGet.Port.String())
					}
					if h.HTTPGet.Port.String() != httpPortName || (pr.path != "" && h.HTTPGet.Path != pr.path) || h.HTTPGet.Scheme == corev1.URISchemeHTTPS {
						k.errorf("%s container %s: %s probe is %s %s on port %s, want HTTP %s on port %s", w, c.Name, pr.kind,
							h.HTTPGet.Scheme, h.HTTPGet.Path, h.HTTPGet.Port.String(), pr.path, httpPortName)
					}
				case h.TCPSocket != nil:
					if findPort(spec, h.TCPSocket.Port, corev1.ProtocolTCP) == nil {
						k.errorf("%s container %s: %s probe port %s is not a container port", w, c.Name, pr.kind, h.TCPSocket.Port.String())
					}
				case h.GRPC != nil:
					k.errorf("%s container %s: %s probe uses gRPC: the gRPC port requires a client certificate the kubelet cannot present", w, c.Name, pr.kind)
				}
			}
		}
	}
}

// podMonitors: each PodMonitor selects pods, every logitpair pod is
// scraped, and every endpoint's port is a named port of every selected pod.
func (k *checker) podMonitors() {
	scraped := map[string]bool{}
	for _, pm := range k.o.PodMonitors {
		if pm.Spec.Selector.MatchLabels == nil && pm.Spec.Selector.MatchExpressions == nil {
			k.errorf("PodMonitor/%s has an empty selector (it would select every pod)", pm.Name)
			continue
		}
		var matched []workload
		for _, w := range k.o.workloads() {
			ok, err := selects(&pm.Spec.Selector, w.Template.Labels)
			if err != nil {
				k.errorf("PodMonitor/%s: selector: %v", pm.Name, err)
			}
			if ok {
				matched = append(matched, w)
				scraped[w.String()] = true
			}
		}
		if len(matched) == 0 {
			k.errorf("PodMonitor/%s: selector %s matches no pod template", pm.Name, metav1.FormatLabelSelector(&pm.Spec.Selector))
		}
		if len(pm.Spec.PodMetricsEndpoints) == 0 {
			k.errorf("PodMonitor/%s has no podMetricsEndpoints", pm.Name)
		}
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			if ep.Port == nil || *ep.Port == "" {
				k.errorf("PodMonitor/%s: an endpoint names no port", pm.Name)
				continue
			}
			if ep.Path != "" && ep.Path != defaultMetricsPath {
				k.errorf("PodMonitor/%s: path %q, the processes serve %s", pm.Name, ep.Path, defaultMetricsPath)
			}
			for _, w := range matched {
				if findPort(&w.Template.Spec, intstr.FromString(*ep.Port), corev1.ProtocolTCP) == nil {
					k.errorf("PodMonitor/%s: port %q is not a container port of %s", pm.Name, *ep.Port, w)
				}
			}
		}
	}
	for _, w := range k.o.workloads() {
		if w.Template.Labels[partOfLabel] == "logitpair" && !scraped[w.String()] {
			k.errorf("%s: no PodMonitor scrapes its pods", w)
		}
	}
}

// volumeMounts: every volumeMount names a volume of the pod or a
// volumeClaimTemplate of the StatefulSet.
func (k *checker) volumeMounts() {
	for _, w := range k.o.workloads() {
		names := map[string]bool{}
		for _, v := range w.Template.Spec.Volumes {
			if names[v.Name] {
				k.errorf("%s: volume %q is defined twice", w, v.Name)
			}
			names[v.Name] = true
		}
		for _, c := range w.Claims {
			if names[c.Name] {
				k.errorf("%s: volumeClaimTemplate %q has the name of a volume", w, c.Name)
			}
			names[c.Name] = true
		}
		for _, c := range allContainers(&w.Template.Spec) {
			for _, m := range c.VolumeMounts {
				if !names[m.Name] {
					k.errorf("%s container %s: volumeMount %q names no volume or volumeClaimTemplate", w, c.Name, m.Name)
				}
			}
		}
	}
}

// secretKeys returns the keys of Secret name: from the overlay, else from
// the documented user-created Secrets; ok is false when it is neither.
func (k *checker) secretKeys(name string) (keys []string, ok bool) {
	if s := k.o.secret(name); s != nil {
		for key := range s.Data {
			keys = append(keys, key)
		}
		for key := range s.StringData {
			keys = append(keys, key)
		}
		return keys, true
	}
	keys, ok = userSecrets[name]
	return keys, ok
}

// configMapKeys returns the keys of ConfigMap name in the overlay.
func (k *checker) configMapKeys(name string) (keys []string, ok bool) {
	c := k.o.configMap(name)
	if c == nil {
		return nil, false
	}
	for key := range c.Data {
		keys = append(keys, key)
	}
	for key := range c.BinaryData {
		keys = append(keys, key)
	}
	return keys, true
}

// references: every Secret, ConfigMap and PersistentVolumeClaim a pod refers
// to exists in the overlay or is documented as created by the user, with the
// keys referred to.
func (k *checker) references() {
	secretRef := func(w workload, what, name, key string) {
		keys, ok := k.secretKeys(name)
		switch {
		case !ok:
			k.errorf("%s: %s refers to Secret %q, which the overlay does not create and README.md does not list", w, what, name)
		case key != "" && !slices.Contains(keys, key):
			k.errorf("%s: %s refers to key %q of Secret %q, which has %v", w, what, key, name, keys)
		}
	}
	configMapRef := func(w workload, what, name, key string) {
		keys, ok := k.configMapKeys(name)
		switch {
		case !ok:
			k.errorf("%s: %s refers to ConfigMap %q, which the overlay does not create", w, what, name)
		case key != "" && !slices.Contains(keys, key):
			k.errorf("%s: %s refers to key %q of ConfigMap %q, which has %v", w, what, key, name, keys)
		}
	}
	for _, w := range k.o.workloads() {
		spec := &w.Template.Spec
		for _, c := range allContainers(spec) {
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				what := fmt.Sprintf("container %s env %s", c.Name, e.Name)
				if r := e.ValueFrom.SecretKeyRef; r != nil {
					secretRef(w, what, r.Name, r.Key)
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					configMapRef(w, what, r.Name, r.Key)
				}
			}
			for _, e := range c.EnvFrom {
				what := fmt.Sprintf("container %s envFrom", c.Name)
				if e.SecretRef != nil {
					secretRef(w, what, e.SecretRef.Name, "")
				}
				if e.ConfigMapRef != nil {
					configMapRef(w, what, e.ConfigMapRef.Name, "")
				}
			}
		}
		for _, v := range spec.Volumes {
			what := "volume " + v.Name
			switch {
			case v.Secret != nil:
				secretRef(w, what, v.Secret.SecretName, "")
				for _, it := range v.Secret.Items {
					secretRef(w, what, v.Secret.SecretName, it.Key)
				}
			case v.ConfigMap != nil:
				configMapRef(w, what, v.ConfigMap.Name, "")
				for _, it := range v.ConfigMap.Items {
					configMapRef(w, what, v.ConfigMap.Name, it.Key)
				}
			case v.PersistentVolumeClaim != nil:
				name := v.PersistentVolumeClaim.ClaimName
				found := slices.Contains(userClaims, name)
				for _, p := range k.o.PVCs {
					found = found || p.Name == name
				}
				if !found {
					k.errorf("%s: %s refers to PersistentVolumeClaim %q, which the overlay does not create and README.md does not list", w, what, name)
				}
			case v.Projected != nil:
				for _, src := range v.Projected.Sources {
					if src.Secret != nil {
						secretRef(w, what, src.Secret.Name, "")
					}
					if src.ConfigMap != nil {
						configMapRef(w, what, src.ConfigMap.Name, "")
					}
				}
			}
		}
	}
}

// imageRepo returns an image's repository without registry host, tag or
// digest, reduced to its last two path elements ("logitpair/worker").
func imageRepo(image string) string {
	if i := strings.IndexByte(image, '@'); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndexByte(image, ':'); i > strings.LastIndexByte(image, '/') {
		image = image[:i]
	}
	parts := strings.Split(image, "/")
	if len(parts) > 2 {
		parts = parts[len(parts)-2:]
	}
	return strings.Join(parts, "/")
}

// expand replaces $(VAR) references with env's values the way the kubelet
// expands a container's command, args and env values: $$ is a literal $, and
// a reference to an undefined variable is left as it is.
func expand(s string, env map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '$' && i+1 < len(s) {
			switch s[i+1] {
			case '$':
				b.WriteByte('$')
				i++
				continue
			case '(':
				if j := strings.IndexByte(s[i+2:], ')'); j >= 0 {
					ref := s[i : i+3+j]
					if v, ok := env[s[i+2:i+2+j]]; ok {
						b.WriteString(v)
					} else {
						b.WriteString(ref)
					}
					i += 2 + j
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// samplePodName is the name of the first pod w creates.
func samplePodName(w workload) string {
	switch w.Kind {
	case workloadStatefulSet:
		return w.Name + "-" + sampleOrdinal
	case workloadKindJob:
		if w.Indexed {
			return w.Name + "-" + sampleOrdinal + "-x7k2p"
		}
		return w.Name + "-x7k2p"
	}
	return w.Name + "-5d8f9c7b6-x7k2p"
}

// fieldRefSample is the value a downward-API field has in w's first pod.
func (k *checker) fieldRefSample(w workload, field string) (string, error) {
	switch field {
	case "metadata.name":
		return samplePodName(w), nil
	case "metadata.namespace":
		return k.ns, nil
	case "status.podIP":
		return samplePodIP, nil
	case "metadata.labels['" + podIndexLabel + "']":
		if w.Kind != workloadStatefulSet {
			return "", fmt.Errorf("the %s label is set on StatefulSet pods only", podIndexLabel)
		}
		return sampleOrdinal, nil
	case "metadata.annotations['" + completionIndexKey + "']", "metadata.labels['" + completionIndexKey + "']":
		if !w.Indexed {
			return "", fmt.Errorf("%s is set on the pods of Indexed Jobs only", completionIndexKey)
		}
		return sampleOrdinal, nil
	}
	return "", fmt.Errorf("fieldRef %s: not a field this test can give a sample value for", field)
}

// containers expands every container's args and parses them with its
// binary's real flag set: a flag the binary does not have, a value it cannot
// parse or a reference to an undefined variable is an error.
func (k *checker) containers() []*container {
	var out []*container
	for _, w := range k.o.workloads() {
		for _, c := range allContainers(&w.Template.Spec) {
			newCmd, ok := binaries[imageRepo(c.Image)]
			if !ok {
				k.errorf("%s container %s: image %q is not a logitpair binary (known: %v)", w, c.Name, c.Image, sortedKeys(binaries))
				continue
			}
			if len(c.Command) > 0 {
				k.errorf("%s container %s sets command %v: the image's ENTRYPOINT is the binary, use args only", w, c.Name, c.Command)
			}
			cc := &container{W: w, C: c, Role: roleOf(imageRepo(c.Image)), Env: map[string]string{}, Raw: map[string]string{}}
			for _, e := range c.Env {
				switch {
				case e.ValueFrom == nil:
					cc.Env[e.Name] = expand(e.Value, cc.Env)
				case e.ValueFrom.FieldRef != nil:
					v, err := k.fieldRefSample(w, e.ValueFrom.FieldRef.FieldPath)
					if err != nil {
						k.errorf("%s container %s env %s: %v", w, c.Name, e.Name, err)
						continue
					}
					cc.Env[e.Name] = v
				case e.ValueFrom.ConfigMapKeyRef != nil:
					if cm := k.o.configMap(e.ValueFrom.ConfigMapKeyRef.Name); cm != nil {
						cc.Env[e.Name] = cm.Data[e.ValueFrom.ConfigMapKeyRef.Key]
					} else {
						cc.Env[e.Name] = "configmap-value"
					}
				default: // secrets, resource fields
					cc.Env[e.Name] = "value-from-" + e.Name
				}
			}
			ok = true
			for _, a := range c.Args {
				x := expand(a, cc.Env)
				if strings.Contains(x, "$(") {
					k.errorf("%s container %s: arg %q refers to a variable the container does not define", w, c.Name, a)
					ok = false
				}
				cc.Args = append(cc.Args, x)
				if name, v, isFlag := strings.Cut(strings.TrimPrefix(a, "--"), "="); isFlag && strings.HasPrefix(a, "--") {
					cc.Raw[name] = v
				}
			}
			cmd := newCmd()
			if err := cmd.ParseFlags(cc.Args); err != nil {
				k.errorf("%s container %s: %s: %v", w, c.Name, cmd.Name(), err)
				continue
			}
			if rest := cmd.Flags().Args(); len(rest) > 0 {
				k.errorf("%s container %s: %s takes no positional arguments, got %v (write flags as --name=value)", w, c.Name, cmd.Name(), rest)
				continue
			}
			if ok {
				cc.FS = cmd.Flags()
				out = append(out, cc)
			}
		}
	}
	return out
}

func roleOf(repo string) string {
	switch repo {
	case "logitpair/coordinator":
		return roleCoordinator
	case "logitpair/paramserver":
		return roleParamServer
	}
	return roleWorker
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func byRole(cs []*container, role string) []*container {
	var out []*container
	for _, c := range cs {
		if c.Role == role {
			out = append(out, c)
		}
	}
	return out
}

// fromField reports whether flag name's manifest value is exactly $(VAR)
// with VAR a downward-API variable of the container taken from one of
// fields.
func fromField(c *container, name string, fields ...string) bool {
	raw := c.Raw[name]
	if !strings.HasPrefix(raw, "$(") || !strings.HasSuffix(raw, ")") {
		return false
	}
	v := raw[2 : len(raw)-1]
	for _, e := range c.C.Env {
		if e.Name == v && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && slices.Contains(fields, e.ValueFrom.FieldRef.FieldPath) {
			return true
		}
	}
	return false
}

// layout: the coordinator's --workers/--backups/--ps are the overlay's, the
// parameter-server StatefulSet has --ps replicas whose --index is the pod
// ordinal, and the worker Job runs --workers pods at once, one per slot.
func (k *checker) layout(cs []*container, want Layout) {
	for _, j := range k.o.Jobs {
		if j.Spec.CompletionMode == nil || *j.Spec.CompletionMode != batchv1.IndexedCompletion {
			k.errorf("Job/%s: completionMode must be Indexed (the index is the worker's slot)", j.Name)
		}
	}
	coords := byRole(cs, roleCoordinator)
	if len(coords) != 1 {
		k.errorf("%d coordinator containers, want exactly 1", len(coords))
		return
	}
	co := coords[0]
	if co.W.Kind != workloadStatefulSet {
		k.errorf("%s: the coordinator runs in a %s, want a StatefulSet", co, co.W.Kind)
	} else if s := k.o.statefulSet(co.W.Name); s.Spec.Replicas != nil && *s.Spec.Replicas != 1 {
		k.errorf("%s: %d replicas, the coordinator must run once", co.W, *s.Spec.Replicas)
	}
	geti := func(name string) int {
		n, err := strconv.Atoi(co.flag(name))
		if err != nil {
			k.errorf("%s: --%s=%q: %v", co, name, co.flag(name), err)
		}
		return n
	}
	workers, backups, ps := geti("workers"), geti("backups"), geti("ps")
	if workers != want.Workers || backups != want.Backups || ps != want.PS {
		k.errorf("%s: --workers=%d --backups=%d --ps=%d, want --workers=%d --backups=%d --ps=%d", co, workers, backups, ps, want.Workers, want.Backups, want.PS)
	}
	if backups < 0 || backups >= workers {
		k.errorf("%s: --backups=%d must be in [0, --workers=%d)", co, backups, workers)
	}

	pss := byRole(cs, roleParamServer)
	if len(pss) != 1 {
		k.errorf("%d parameter-server containers in pod templates, want exactly 1", len(pss))
	} else if p := pss[0]; p.W.Kind != workloadStatefulSet {
		k.errorf("%s: parameter servers run in a %s, want a StatefulSet (stable names, ordinals and volumes)", p, p.W.Kind)
	} else {
		s := k.o.statefulSet(p.W.Name)
		replicas := int32(1)
		if s.Spec.Replicas != nil {
			replicas = *s.Spec.Replicas
		}
		if int(replicas) != ps {
			k.errorf("StatefulSet/%s has %d replicas but the coordinator's --ps is %d", s.Name, replicas, ps)
		}
		if !fromField(p, "index", "metadata.labels['"+podIndexLabel+"']") {
			k.errorf("%s: --index=%q, want $(VAR) with VAR from the pod's %s label (the shard is the pod ordinal)", p, p.Raw["index"], podIndexLabel)
		}
	}

	ws := byRole(cs, roleWorker)
	if len(ws) != 1 {
		k.errorf("%d worker containers in pod templates, want exactly 1", len(ws))
		return
	}
	w := ws[0]
	switch w.W.Kind {
	case workloadKindJob:
		j := k.o.job(w.W.Name)
		par, comp := int32(1), int32(1)
		if j.Spec.Parallelism != nil {
			par = *j.Spec.Parallelism
		}
		if j.Spec.Completions != nil {
			comp = *j.Spec.Completions
		}
		if int(par) != workers || int(comp) != workers {
			k.errorf("Job/%s: parallelism %d and completions %d, the coordinator's --workers is %d", j.Name, par, comp, workers)
		}
		if j.Spec.Template.Spec.RestartPolicy == corev1.RestartPolicyAlways || j.Spec.Template.Spec.RestartPolicy == "" {
			k.errorf("Job/%s: restartPolicy must be Never or OnFailure", j.Name)
		}
		if !fromField(w, "slot", "metadata.annotations['"+completionIndexKey+"']", "metadata.labels['"+completionIndexKey+"']") {
			k.errorf("%s: --slot=%q, want $(VAR) with VAR the pod's completion index (%s)", w, w.Raw["slot"], completionIndexKey)
		}
	case workloadDeployment:
		d := k.o.deployment(w.W.Name)
		if d.Spec.Replicas == nil || int(*d.Spec.Replicas) != workers {
			k.errorf("Deployment/%s: replicas must equal the coordinator's --workers %d", d.Name, workers)
		}
	default:
		k.errorf("%s: workers run in a %s, want an Indexed Job", w, w.W.Kind)
	}
}

// isExtended reports whether r is an extended resource (requests must
// equal limits).
func isExtended(r corev1.ResourceName) bool {
	switch {
	case r == corev1.ResourceCPU, r == corev1.ResourceMemory, r == corev1.ResourceEphemeralStorage,
		strings.HasPrefix(string(r), corev1.ResourceHugePagesPrefix):
		return false
	}
	return true
}

// resources: every container requests and limits CPU and memory, requests
// are at most the limits (equal for extended resources), and a worker's
// --threads is at least 1 and at most its CPU limit.
func (k *checker) resources(cs []*container) {
	for _, w := range k.o.workloads() {
		for _, c := range allContainers(&w.Template.Spec) {
			req, lim := c.Resources.Requests, c.Resources.Limits
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := req[r]; !ok {
					k.errorf("%s container %s requests no %s", w, c.Name, r)
				}
				if _, ok := lim[r]; !ok {
					k.errorf("%s container %s has no %s limit", w, c.Name, r)
				}
			}
			for r, q := range req {
				l, ok := lim[r]
				switch {
				case !ok:
					if isExtended(r) {
						k.errorf("%s container %s requests %s %s with no limit", w, c.Name, q.String(), r)
					}
				case isExtended(r) && q.Cmp(l) != 0:
					k.errorf("%s container %s: %s request %s must equal its limit %s", w, c.Name, r, q.String(), l.String())
				case q.Cmp(l) > 0:
					k.errorf("%s container %s: %s request %s exceeds its limit %s", w, c.Name, r, q.String(), l.String())
				}
			}
		}
	}
	for _, c := range byRole(cs, roleWorker) {
		threads, err := strconv.Atoi(c.flag("threads"))
		lim, ok := c.C.Resources.Limits[corev1.ResourceCPU]
		switch {
		case err != nil:
			k.errorf("%s: --threads=%q: %v", c, c.flag("threads"), err)
		case threads < 1:
			k.errorf("%s: --threads=%d uses all of the node's cores, not the pod's CPU limit: set it", c, threads)
		case ok && float64(threads) > math.Ceil(lim.AsApproximateFloat64()):
			k.errorf("%s: --threads=%d exceeds the CPU limit %s", c, threads, lim.String())
		}
	}
}

// gpu: in a GPU overlay every worker runs the GPU image, requests one
// nvidia.com/gpu and is scheduled on GPU nodes; elsewhere nothing requests a
// GPU.
func (k *checker) gpu(cs []*container, want Layout) {
	one := resource.MustParse("1")
	for _, c := range cs {
		req, lim := c.C.Resources.Requests[gpuResource], c.C.Resources.Limits[gpuResource]
		if !want.GPU || c.Role != roleWorker {
			if !req.IsZero() || !lim.IsZero() || imageRepo(c.C.Image) == gpuImage {
				k.errorf("%s requests a GPU (or runs the GPU image) in an overlay without GPU workers", c)
			}
			continue
		}
		if req.Cmp(one) != 0 || lim.Cmp(one) != 0 {
			k.errorf("%s: %s request %s, limit %s, want 1", c, gpuResource, req.String(), lim.String())
		}
		if imageRepo(c.C.Image) != gpuImage {
			k.errorf("%s: image %s, want %s", c, c.C.Image, gpuImage)
		}
		spec := &c.W.Template.Spec
		if spec.NodeSelector[gpuNodeSelectorLabel] != "true" {
			k.errorf("%s: no nodeSelector %s=true (GPU nodes)", c.W, gpuNodeSelectorLabel)
		}
		if !slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool { return t.Key == string(gpuResource) }) {
			k.errorf("%s: no toleration for the %s taint of GPU nodes", c.W, gpuResource)
		}
	}
}

// mountOf returns the volume mount of c whose path holds p, the deepest one,
// with p's path relative to it.
func mountOf(c *corev1.Container, p string) (*corev1.VolumeMount, string) {
	var best *corev1.VolumeMount
	rel := ""
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		r, err := filepath.Rel(m.MountPath, p)
		if err != nil || r == ".." || strings.HasPrefix(r, "../") {
			continue
		}
		if best == nil || len(m.MountPath) > len(best.MountPath) {
			best, rel = m, r
		}
	}
	return best, rel
}

func volumeOf(spec *corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

// fileKey checks that path p of container c is a file of a mounted Secret or
// ConfigMap and returns the ConfigMap's name and key ("" for Secrets).
func (k *checker) fileKey(c *container, flag, p string) (configMap, key string) {
	if !path.IsAbs(p) {
		k.errorf("%s: --%s=%s is not an absolute path", c, flag, p)
		return "", ""
	}
	m, rel := mountOf(c.C, p)
	if m == nil {
		k.errorf("%s: --%s=%s is on no volume mount", c, flag, p)
		return "", ""
	}
	if m.SubPath != "" {
		k.errorf("%s: --%s=%s: mount %s uses subPath, which this test does not follow", c, flag, p, m.Name)
		return "", ""
	}
	v := volumeOf(&c.W.Template.Spec, m.Name)
	var keys []string
	var kind, name string
	var items []corev1.KeyToPath
	switch {
	case v == nil:
		k.errorf("%s: --%s=%s is on %s, which is not a Secret or ConfigMap volume", c, flag, p, m.Name)
		return "", ""
	case v.Secret != nil:
		kind, name, items = "Secret", v.Secret.SecretName, v.Secret.Items
		keys, _ = k.secretKeys(name)
	case v.ConfigMap != nil:
		kind, name, items = "ConfigMap", v.ConfigMap.Name, v.ConfigMap.Items
		keys, _ = k.configMapKeys(name)
	default:
		k.errorf("%s: --%s=%s is on volume %s, which is not a Secret or ConfigMap volume", c, flag, p, m.Name)
		return "", ""
	}
	key = rel
	if len(items) > 0 { // only the listed keys, at their paths
		key = ""
		for _, it := range items {
			if it.Path == rel {
				key = it.Key
			}
		}
	}
	if key == "" || !slices.Contains(keys, key) {
		k.errorf("%s: --%s=%s is not a file of %s %q (keys: %v)", c, flag, p, kind, name, keys)
		return "", ""
	}
	if kind == "ConfigMap" {
		return name, key
	}
	return "", key
}

// files: the TLS material and the training configuration are files of the
// mounted Secret and ConfigMap; the coordinator's and each shard's --dir
// is on a persistent volume; the training configuration loads with the
// binaries' strict loader, is valid, partitions into --ps shards, and its
// dataset directory is mounted in the workers.
func (k *checker) files(cs []*container) {
	for _, c := range cs {
		set := 0
		for _, f := range []string{"tls-ca", "tls-cert", "tls-key"} {
			if v := c.flag(f); v != "" {
				set++
				k.fileKey(c, f, v)
			}
		}
		if set != 3 {
			k.errorf("%s: --tls-ca, --tls-cert and --tls-key must all be set (mutual TLS), %d are", c, set)
		}
		for _, f := range []string{"tls-cert", "tls-key"} {
			if p := c.flag(f); p != "" {
				if m, _ := mountOf(c.C, p); m != nil {
					if v := volumeOf(&c.W.Template.Spec, m.Name); v != nil && v.Secret != nil && v.Secret.SecretName != tlsSecret(c.Role) {
						k.errorf("%s: --%s is in Secret %q, want %q: each role gets its own certificate, and the servers refuse another role's calls",
							c, f, v.Secret.SecretName, tlsSecret(c.Role))
					}
				}
			}
		}
		if c.Role == roleCoordinator || c.Role == roleParamServer {
			dir := c.flag("dir")
			m, _ := mountOf(c.C, dir)
			if !path.IsAbs(dir) || m == nil || !slices.ContainsFunc(c.W.Claims, func(p corev1.PersistentVolumeClaim) bool { return p.Name == m.Name }) {
				k.errorf("%s: --dir=%s is not on a persistent volume (a volumeClaimTemplate)", c, dir)
			}
		}
	}
	coords := byRole(cs, roleCoordinator)
	if len(coords) != 1 {
		return
	}
	co := coords[0]
	if !co.changed(trainingConfigFlag) {
		k.errorf("%s: no --config (the training configuration)", co)
		return
	}
	cm, key := k.fileKey(co, trainingConfigFlag, co.flag(trainingConfigFlag))
	if cm == "" {
		if key != "" {
			k.errorf("%s: --config is in a Secret, want the ConfigMap", co)
		}
		return
	}
	f := filepath.Join(k.tmpDir, cm+"-"+key)
	if err := os.WriteFile(f, []byte(k.o.configMap(cm).Data[key]), 0o600); err != nil {
		k.errorf("%v", err)
		return
	}
	cfg := train.DefaultConfig()
	if err := cfg.Load(f); err != nil {
		k.errorf("ConfigMap/%s key %s: %v", cm, key, err)
		return
	}
	if err := cfg.Validate(); err != nil {
		k.errorf("ConfigMap/%s key %s: %v", cm, key, err)
		return
	}
	ps, err := strconv.Atoi(co.flag("ps"))
	if err == nil && ps >= 1 {
		if _, _, err := cluster.NewLayout(cpu.New(cpu.Options{Threads: 1}), cfg, ps); err != nil {
			k.errorf("ConfigMap/%s key %s with --ps=%d: %v", cm, key, ps, err)
		}
	}
	for _, w := range byRole(cs, roleWorker) {
		dir := cfg.DataDir
		if w.changed("data-dir") {
			dir = w.flag("data-dir")
		}
		if m, _ := mountOf(w.C, dir); !path.IsAbs(dir) || m == nil {
			k.errorf("%s: the dataset directory %s (data-dir) is on no volume mount", w, dir)
		}
	}
}

// portOf returns the port number of a host:port flag value.
func portOf(hostport string) (int32, error) {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	return int32(n), err
}

// addresses: each listen address's port is the container port of that
// name; the addresses shards and workers dial name a Service of the
// overlay in its namespace whose port reaches the coordinator's listener;
// a shard advertises its own stable pod name and listen port.
func (k *checker) addresses(cs []*container) {
	listeners := []struct{ flag, port, udpPort string }{
		{"listen", grpcPortName, ""}, {"http-listen", httpPortName, ""}, {"gossip-bind", gossipPortName, gossipUDPPortName},
	}
	for _, c := range cs {
		spec := &corev1.PodSpec{Containers: []corev1.Container{*c.C}}
		for _, l := range listeners {
			if c.FS.Lookup(l.flag) == nil {
				continue
			}
			n, err := portOf(c.flag(l.flag))
			if err != nil {
				k.errorf("%s: --%s=%s: %v", c, l.flag, c.flag(l.flag), err)
				continue
			}
			if p := findPort(spec, intstr.FromString(l.port), corev1.ProtocolTCP); p == nil || p.ContainerPort != n {
				k.errorf("%s: --%s=%s, but the container port named %s is %v", c, l.flag, c.flag(l.flag), l.port, p)
			}
			if l.udpPort != "" {
				if p := findPort(spec, intstr.FromString(l.udpPort), corev1.ProtocolUDP); p == nil || p.ContainerPort != n {
					k.errorf("%s: --%s=%s, but the UDP container port named %s is %v", c, l.flag, c.flag(l.flag), l.udpPort, p)
				}
			}
		}
	}
	coords := byRole(cs, roleCoordinator)
	if len(coords) != 1 {
		return
	}
	co := coords[0]
	for _, c := range cs {
		if c.Role == roleCoordinator {
			continue
		}
		for _, d := range []struct{ flag, listen string }{{"coordinator", "listen"}, {"gossip-join", "gossip-bind"}} {
			k.dialsCoordinator(c, co, d.flag, d.listen)
		}
		if c.Role == roleParamServer {
			s := k.o.statefulSet(c.W.Name)
			if s == nil {
				continue
			}
			want := fmt.Sprintf("%s.%s.%s.svc", samplePodName(c.W), s.Spec.ServiceName, k.ns)
			host, port, err := net.SplitHostPort(c.flag("advertise"))
			lport, _ := portOf(c.flag("listen"))
			if err != nil || host != want || port != strconv.Itoa(int(lport)) {
				k.errorf("%s: --advertise=%s (as pod %s), want %s:%d: the pod's own name under its StatefulSet's Service and its --listen port",
					c, c.flag("advertise"), samplePodName(c.W), want, lport)
			}
		}
	}
}

// dialsCoordinator checks that c's flag (an address) reaches the
// coordinator's listener given by listenFlag through a Service.
func (k *checker) dialsCoordinator(c, co *container, flag, listenFlag string) {
	v := c.flag(flag)
	host, p, err := net.SplitHostPort(v)
	if err != nil {
		k.errorf("%s: --%s=%q: %v", c, flag, v, err)
		return
	}
	port, _ := strconv.Atoi(p)
	labelsOf := strings.Split(host, ".")
	// SERVICE.NAMESPACE.svc or POD.SERVICE.NAMESPACE.svc
	if n := len(labelsOf); (n != 3 && n != 4) || labelsOf[n-1] != "svc" || labelsOf[n-2] != k.ns {
		k.errorf("%s: --%s=%s: want SERVICE.%s.svc:PORT (or POD.SERVICE.%s.svc:PORT)", c, flag, v, k.ns, k.ns)
		return
	}
	svcName := labelsOf[len(labelsOf)-3]
	svc := k.o.service(svcName)
	if svc == nil {
		k.errorf("%s: --%s=%s: no Service %q in the overlay", c, flag, v, svcName)
		return
	}
	if len(labelsOf) == 4 && (svc.Spec.ClusterIP != corev1.ClusterIPNone || labelsOf[0] != samplePodName(co.W)) {
		k.errorf("%s: --%s=%s: %s is not a pod name under the headless Service %q", c, flag, v, labelsOf[0], svcName)
		return
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(co.W.Template.Labels)) || len(svc.Spec.Selector) == 0 {
		k.errorf("%s: --%s=%s: Service %q does not select the coordinator's pods", c, flag, v, svcName)
		return
	}
	lport, err := portOf(co.flag(listenFlag))
	if err != nil {
		return // reported by addresses
	}
	for _, sp := range svc.Spec.Ports {
		if int(sp.Port) != port || (sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP) {
			continue
		}
		target := sp.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(sp.Port)
		}
		spec := &corev1.PodSpec{Containers: []corev1.Container{*co.C}}
		if cp := findPort(spec, target, corev1.ProtocolTCP); cp == nil || cp.ContainerPort != lport {
			k.errorf("%s: --%s=%s: Service %q port %d does not lead to the coordinator's --%s port %d", c, flag, v, svcName, port, listenFlag, lport)
		}
		return
	}
	k.errorf("%s: --%s=%s: Service %q has no TCP port %d", c, flag, v, svcName, port)
}

// errorsContain reports whether one of errs contains s.
func errorsContain(errs []error, s string) bool {
	return slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), s) })
}

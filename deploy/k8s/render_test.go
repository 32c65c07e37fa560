package k8s

import (
	"errors"
	"fmt"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// render builds the kustomization in dir (what `kubectl kustomize dir`
// prints) and returns one YAML document per object.
func render(dir string) ([][]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var docs [][]byte
	for _, r := range m.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %s: %w", dir, r.CurId(), err)
		}
		docs = append(docs, b)
	}
	return docs, nil
}

// Objects are the decoded objects of one rendered kustomization.
type Objects struct {
	StatefulSets []*appsv1.StatefulSet
	Deployments  []*appsv1.Deployment
	Jobs         []*batchv1.Job
	Services     []*corev1.Service
	ConfigMaps   []*corev1.ConfigMap
	Secrets      []*corev1.Secret
	PVCs         []*corev1.PersistentVolumeClaim
	PodMonitors  []*monitoringv1.PodMonitor
}

// strictUnmarshal decodes one YAML document into v the way the API server's
// strict field validation does: duplicate keys (in the YAML or the JSON),
// unknown fields and fields spelled in the wrong case are errors.
func strictUnmarshal(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// decode decodes every document strictly into its API type; a kind this
// test does not know is an error too, so that every object is checked.
func decode(docs [][]byte) (*Objects, error) {
	o := &Objects{}
	var errs []error
	for i, doc := range docs {
		var tm metav1.TypeMeta
		var meta struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", i, err))
			continue
		}
		_ = yaml.Unmarshal(doc, &meta)
		id := fmt.Sprintf("%s %s/%s", tm.APIVersion, tm.Kind, meta.Metadata.Name)
		var v any
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 StatefulSet":
			x := &appsv1.StatefulSet{}
			o.StatefulSets, v = append(o.StatefulSets, x), x
		case "apps/v1 Deployment":
			x := &appsv1.Deployment{}
			o.Deployments, v = append(o.Deployments, x), x
		case "batch/v1 Job":
			x := &batchv1.Job{}
			o.Jobs, v = append(o.Jobs, x), x
		case "v1 Service":
			x := &corev1.Service{}
			o.Services, v = append(o.Services, x), x
		case "v1 ConfigMap":
			x := &corev1.ConfigMap{}
			o.ConfigMaps, v = append(o.ConfigMaps, x), x
		case "v1 Secret":
			x := &corev1.Secret{}
			o.Secrets, v = append(o.Secrets, x), x
		case "v1 PersistentVolumeClaim":
			x := &corev1.PersistentVolumeClaim{}
			o.PVCs, v = append(o.PVCs, x), x
		case "monitoring.coreos.com/v1 PodMonitor":
			x := &monitoringv1.PodMonitor{}
			o.PodMonitors, v = append(o.PodMonitors, x), x
		default:
			errs = append(errs, fmt.Errorf("%s: a kind this test does not decode (add it to decode)", id))
			continue
		}
		if err := strictUnmarshal(doc, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
		}
	}
	return o, errors.Join(errs...)
}

// renderObjects renders dir and decodes its objects.
func renderObjects(dir string) (*Objects, error) {
	docs, err := render(dir)
	if err != nil {
		return nil, err
	}
	return decode(docs)
}

// workload is a pod-creating object seen through what the checks need.
type workload struct {
	Kind, Name string
	Selector   *metav1.LabelSelector
	Template   *corev1.PodTemplateSpec
	// Claims are a StatefulSet's volumeClaimTemplates.
	Claims []corev1.PersistentVolumeClaim
	// Indexed is an Indexed Job.
	Indexed bool
}

func (w workload) String() string { return w.Kind + "/" + w.Name }

// workloads lists the objects that create pods.
func (o *Objects) workloads() []workload {
	var ws []workload
	for _, s := range o.StatefulSets {
		ws = append(ws, workload{Kind: "StatefulSet", Name: s.Name, Selector: s.Spec.Selector, Template: &s.Spec.Template, Claims: s.Spec.VolumeClaimTemplates})
	}
	for _, d := range o.Deployments {
		ws = append(ws, workload{Kind: "Deployment", Name: d.Name, Selector: d.Spec.Selector, Template: &d.Spec.Template})
	}
	for _, j := range o.Jobs {
		ws = append(ws, workload{Kind: "Job", Name: j.Name, Selector: j.Spec.Selector, Template: &j.Spec.Template,
			Indexed: j.Spec.CompletionMode != nil && *j.Spec.CompletionMode == batchv1.IndexedCompletion})
	}
	return ws
}

// namespace is the namespace the objects are rendered into ("default" when
// the kustomization sets none).
func (o *Objects) namespace() string {
	for _, s := range o.Services {
		if s.Namespace != "" {
			return s.Namespace
		}
	}
	for _, s := range o.StatefulSets {
		if s.Namespace != "" {
			return s.Namespace
		}
	}
	return "default"
}

func (o *Objects) service(name string) *corev1.Service {
	for _, s := range o.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func (o *Objects) configMap(name string) *corev1.ConfigMap {
	for _, c := range o.ConfigMaps {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (o *Objects) secret(name string) *corev1.Secret {
	for _, s := range o.Secrets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func (o *Objects) statefulSet(name string) *appsv1.StatefulSet {
	for _, s := range o.StatefulSets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func (o *Objects) job(name string) *batchv1.Job {
	for _, j := range o.Jobs {
		if j.Name == name {
			return j
		}
	}
	return nil
}

func (o *Objects) deployment(name string) *appsv1.Deployment {
	for _, d := range o.Deployments {
		if d.Name == name {
			return d
		}
	}
	return nil
}

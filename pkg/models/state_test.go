package models_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/nn/nntest"
	"github.com/logitpair/logitpair/pkg/safetensors"
)

func tinyResNet(t *testing.T) *models.Model {
	t.Helper()
	m, err := models.New(nntest.Backends()[0], "resnet9", models.Config{"width": 2})
	if err != nil {
		t.Fatal(err)
	}
	m.Init(3)
	return m
}

func TestStateDictRoundTrip(t *testing.T) {
	be := nntest.Backends()[0]
	m := tinyResNet(t)
	*m.IntBuffers()[0].Value = 42
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := m.StateDict().WriteFileAtomic(path); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if d, shape, err := f.I64("prep.bn.num_batches_tracked"); err != nil || len(shape) != 0 || d[0] != 42 {
		t.Fatalf("num_batches_tracked saved as %v %v (%v), want scalar int64 42", d, shape, err)
	}
	m2 := tinyResNet(t)
	m2.Init(99)
	if err := m2.LoadStateDict(f, path); err != nil {
		t.Fatal(err)
	}
	for i, p := range m.Params() {
		nntest.Close(t, p.Name, nntest.Host(be, m2.Params()[i].Value), nntest.Host(be, p.Value), 0)
	}
	if *m2.IntBuffers()[0].Value != 42 {
		t.Fatal("int buffer not loaded")
	}
}

func TestLoadStateDictRejectsWrongArchitecture(t *testing.T) {
	be := nntest.Backends()[0]
	madry, _ := models.New(be, "madry-mnist", models.Config{"conv1": 2, "conv2": 2, "hidden": 4})
	m := tinyResNet(t)
	before := nntest.Host(be, m.Params()[0].Value)
	err := m.LoadStateDict(madry.StateDict(), "madry.safetensors")
	if err == nil || !strings.Contains(err.Error(), "holds a madry-mnist, not a resnet9") || !strings.Contains(err.Error(), "missing prep.conv.weight") {
		t.Fatalf("got %v", err)
	}
	nntest.Close(t, "unchanged", nntest.Host(be, m.Params()[0].Value), before, 0)

	// Same architecture, other width: shapes named.
	wide, _ := models.New(be, "resnet9", models.Config{"width": 3})
	if err := m.LoadStateDict(wide.StateDict(), "wide"); err == nil || !strings.Contains(err.Error(), "prep.conv.weight has shape") {
		t.Fatalf("got %v", err)
	}
	// NaN values are refused.
	sd := m.StateDict()
	sd.Tensors[0].Data[0], sd.Tensors[0].Data[1], sd.Tensors[0].Data[2], sd.Tensors[0].Data[3] = 0, 0, 0xc0, 0x7f
	if err := m.LoadStateDict(sd, "nan"); err == nil || !strings.Contains(err.Error(), "NaN") {
		t.Fatalf("got %v", err)
	}
}

func TestFlatLayoutGatherScatter(t *testing.T) {
	be := nntest.Backends()[0]
	m := tinyResNet(t)
	l := m.FlatLayout()
	tr := m.Trainable()
	if len(l.Ranges) != len(tr) || l.Ranges[0].Name != "prep.conv.weight" || l.Ranges[0].Offset != 0 {
		t.Fatalf("layout %+v", l.Ranges[:2])
	}
	off := 0
	for i, r := range l.Ranges {
		if r.Offset != off || r.Size != tr[i].Value.Numel() {
			t.Fatalf("range %d %+v at %d", i, r, off)
		}
		off += r.Size
	}
	if off != l.Total {
		t.Fatalf("total %d, sum %d", l.Total, off)
	}
	flat := make([]float32, l.Total)
	nn.Gather(be, tr, flat, false)
	for i := range flat {
		flat[i] = float32(i)
	}
	nn.Scatter(be, tr, flat)
	back := make([]float32, l.Total)
	nn.Gather(be, tr, back, false)
	nntest.Close(t, "gather(scatter(v))", back, flat, 0)
	last := l.Ranges[len(l.Ranges)-1]
	if got := nntest.Host(be, tr[len(tr)-1].Value)[0]; got != float32(last.Offset) {
		t.Fatalf("%s[0] = %v, want %v", last.Name, got, last.Offset)
	}
}

// TestPyTorchStrictLoad writes every model's state dict and has PyTorch load
// it with strict=True into python/logitpair_torch's module, and compare a
// forward pass. Developer-time: skipped where Debian's python3-torch is absent.
func TestPyTorchStrictLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	py := "/usr/bin/python3"
	if exec.Command(py, "-c", "import torch").Run() != nil {
		t.Skip("PyTorch (Debian python3-torch) not installed")
	}
	be := nntest.Backends()[0]
	dir := t.TempDir()
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	for _, c := range []struct {
		name string
		cfg  models.Config
	}{
		{"madry-mnist", models.Config{"conv1": 4, "conv2": 8, "hidden": 16}},
		{"resnet9", models.Config{"width": 2}},
		{"resnet-v2-50", models.Config{"width": 2, "classes": 5, "image_size": 32}},
	} {
		m, err := models.New(be, c.name, c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		m.Init(5)
		x := nntest.Random(be, newRand(6), 1, 2, m.Input[0], m.Input[1], m.Input[2])
		logits := nntest.Host(be, m.Forward(x, false))
		sd := m.StateDict()
		if err := sd.AddF32("__test_x", x.Shape(), nntest.Host(be, x)); err != nil {
			t.Fatal(err)
		}
		if err := sd.AddF32("__test_logits", []int{2, m.Classes}, logits); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, c.name+".safetensors")
		if err := sd.WriteFileAtomic(path); err != nil {
			t.Fatal(err)
		}
		script := `
import json, sys, torch
sys.path.insert(0, sys.argv[1] + "/python")
from logitpair_torch import models, safetensors_np
t, meta = safetensors_np.load_file(sys.argv[2])
x, want = torch.from_numpy(t.pop("__test_x")), torch.from_numpy(t.pop("__test_logits"))
m = models.build(meta["model"], json.loads(meta["config"]))
m.load_state_dict({k: torch.from_numpy(v) for k, v in t.items()}, strict=True)
m.eval()
got = m(x).detach()
err = ((got - want).abs() / (want.abs() + want.abs().max())).max().item()
assert err < 1e-4, err
print("ok", err)
`
		out, err := exec.Command(py, "-c", script, root, path).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "ok") {
			t.Errorf("%s: PyTorch strict load: %v\n%s", c.name, err, out)
		}
	}
	_ = os.Remove(dir)
}

// TestLoadPyTorchWrittenFile has PyTorch build each model, save its
// state_dict with python/logitpair_torch's writer (no logitpair metadata) and
// its logits on a fixed input; logitpair loads it strictly by model name and
// must produce the same logits. Developer-time: skipped without PyTorch.
func TestLoadPyTorchWrittenFile(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	py := "/usr/bin/python3"
	if exec.Command(py, "-c", "import torch").Run() != nil {
		t.Skip("PyTorch (Debian python3-torch) not installed")
	}
	be := nntest.Backends()[0]
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	dir := t.TempDir()
	for _, c := range []struct {
		name, cfg string
		input     string
	}{
		{"madry-mnist", `{"conv1": 4, "conv2": 8, "hidden": 16}`, "2,1,28,28"},
		{"resnet9", `{"width": 2}`, "2,3,32,32"},
		{"resnet-v2-101", `{"width": 2, "classes": 7, "image_size": 32}`, "2,3,32,32"},
	} {
		path := filepath.Join(dir, c.name+".safetensors")
		script := `
import json, sys, torch
sys.path.insert(0, sys.argv[1] + "/python")
from logitpair_torch import models, safetensors_np
torch.manual_seed(0)
m = models.build(sys.argv[3], json.loads(sys.argv[4]))
for mod in m.modules():
    if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
        mod.running_mean.uniform_(-0.2, 0.2); mod.running_var.uniform_(0.5, 1.5)
m.eval()
x = torch.rand(*[int(v) for v in sys.argv[5].split(",")])
sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}
sd["__x"] = x.numpy(); sd["__logits"] = m(x).detach().numpy()
safetensors_np.save_file(sd, sys.argv[2])
`
		if out, err := exec.Command(py, "-c", script, root, path, c.name, c.cfg, c.input).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", c.name, err, out)
		}
		f, err := safetensors.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		xs, xshape, _ := f.F32("__x")
		want, _, _ := f.F32("__logits")
		raw := f
		f = safetensors.New()
		for _, tt := range raw.Tensors {
			if !strings.HasPrefix(tt.Name, "__") {
				if err := f.Add(tt); err != nil {
					t.Fatal(err)
				}
			}
		}
		var cfg models.Config
		if err := json.Unmarshal([]byte(c.cfg), &cfg); err != nil {
			t.Fatal(err)
		}
		m, err := models.New(be, c.name, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.LoadStateDict(f, path); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		x := be.New(xshape...)
		be.Upload(x, xs)
		nntest.Close(t, c.name+" logits", nntest.Host(be, m.Forward(x, false)), want, 1e-4)
	}
}

package plan

import (
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/models"
)

// TestModelSize: parameters and buffers from the project's model
// definitions. madry-mnist by hand: conv 5·5·1·32+32, conv 5·5·32·64+64,
// fc 7·7·64·1024+1024, fc 1024·10+10 = 3,274,634, no batch norm. resnet9:
// 6,573,120 parameters (PyTorch's count) and batch norms over 64 + 3·128 +
// 256 + 3·512 = 2240 channels, each with a running mean and variance: 4480
// buffer elements. inception-v3: torchvision's 23,834,568 parameters and
// batch norms over 17,216 channels (stem 32+32+64+80+192 = 400; Mixed_5b–d
// 3·432 + 32+64+64 = 1456; Mixed_6a 640; Mixed_6b–e 4·768 + 6·(128+160+
// 160+192) = 6912; Mixed_7a 1280; Mixed_7b–c 2·3264 = 6528): 34,432 buffer
// elements. A config
// changes the size (10 classes: fc 2048·10+10 instead of 2048·1000+1000);
// an unknown model lists the known ones.
func TestModelSize(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  models.Config
		want Size
	}{
		{"madry-mnist", nil, Size{Params: 3274634}},
		{"resnet9", nil, Size{Params: 6573120, Buffers: 4480}},
		{"inception-v3", nil, Size{Params: 23834568, Buffers: 34432}},
		{"inception-v3", models.Config{"classes": 10}, Size{Params: 23834568 - 2048*990 - 990, Buffers: 34432}},
	} {
		got, err := ModelSize(c.name, c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s %v: %+v, want %+v", c.name, c.cfg, got, c.want)
		}
	}
	if _, err := ModelSize("inception-v4", nil); err == nil || !strings.Contains(err.Error(), "inception-v3") {
		t.Errorf("unknown model: want the known ones listed, got %v", err)
	}
}

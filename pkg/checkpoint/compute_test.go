package checkpoint

import "testing"

func TestComputeMetadataRoundTrip(t *testing.T) {
	c := Compute{WallSeconds: 12.5, Steps: 10, ExamplesSeen: 500, ForwardPasses: 21000, BackwardPasses: 20500}.WithDataset(1000)
	if c.ForwardPerExample != 21 || c.BackwardPerExample != 20.5 || c.PassesPerExample != 41.5 {
		t.Fatalf("per example %v, %v, %v; want 21, 20.5, 41.5", c.ForwardPerExample, c.BackwardPerExample, c.PassesPerExample)
	}
	got, err := ReadCompute(map[string]string{MetaCompute: c.JSON()})
	if err != nil || got == nil || *got != c {
		t.Fatalf("read back %+v, %v; want %+v", got, err, c)
	}
	if u := c.WithDataset(0); u.DatasetSize != 0 || u.PassesPerExample != 0 || u.ForwardPasses != c.ForwardPasses {
		t.Fatalf("unknown dataset: %+v", u)
	}
	if got, err := ReadCompute(map[string]string{"step": "3"}); got != nil || err != nil {
		t.Fatalf("no compute key: %+v, %v; want nil, nil", got, err)
	}
	if _, err := ReadCompute(map[string]string{MetaCompute: "{"}); err == nil {
		t.Fatal("a damaged compute value reads without error")
	}
}

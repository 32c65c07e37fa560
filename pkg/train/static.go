package train

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// LoadStaticModels loads ensemble-adv's static source models (the files of
// --static-models, written by logitpair: their metadata names the
// architecture and its config) onto be. Each must take the same input shape
// and have as many classes as like, the model being trained. The models are
// only ever used through models.EvalView — evaluation-mode logits and the
// input gradient — so their parameters are never updated and no parameter
// gradient is computed for them.
func LoadStaticModels(be tensor.Backend, paths []string, like *models.Model) ([]*models.Model, error) {
	out := make([]*models.Model, 0, len(paths))
	for _, p := range paths {
		m, err := loadStatic(be, p, like)
		if err != nil {
			return nil, fmt.Errorf("static model %s (--static-models): %w", p, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func loadStatic(be tensor.Backend, path string, like *models.Model) (*models.Model, error) {
	f, err := checkpoint.ReadModelFile(path)
	if err != nil {
		return nil, err
	}
	name := f.Metadata[models.MetaModel]
	if name == "" {
		return nil, fmt.Errorf("no logitpair metadata naming its architecture (one of %s); write it with logitpair train", strings.Join(models.Names(), ", "))
	}
	var cfg models.Config
	if cj := f.Metadata[models.MetaConfig]; cj != "" {
		if err := json.Unmarshal([]byte(cj), &cfg); err != nil {
			return nil, fmt.Errorf("model config in its metadata: %w", err)
		}
	}
	m, err := models.New(be, name, cfg)
	if err != nil {
		return nil, err
	}
	if m.Input != like.Input {
		return nil, fmt.Errorf("%s takes inputs of %v (C, H, W), the model being trained (%s) %v", name, m.Input, like.Name, like.Input)
	}
	if m.Classes != like.Classes {
		return nil, fmt.Errorf("%s has %d classes, the model being trained (%s) %d", name, m.Classes, like.Name, like.Classes)
	}
	if err := m.LoadStateDict(f, path); err != nil {
		return nil, err
	}
	return m, nil
}

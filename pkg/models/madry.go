package models

import (
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// madry-mnist is the paper's MNIST model, Madry et al.'s MNIST-challenge
// network (Madry, Makelov, Schmidt, Tsipras, Vladu 2018):
//
//	conv1 5×5×32 'same' + ReLU → max-pool 2 → conv2 5×5×64 'same' + ReLU →
//	max-pool 2 → flatten (C,H,W) → fc1 3136→1024 + ReLU → fc2 1024→10
//
// Inputs (N, 1, 28, 28) in [0, 1], no normalization. Config keys (PyTorch
// kwargs): conv1, conv2, hidden, classes.
func init() {
	register("madry-mnist", Config{"conv1": 32, "conv2": 64, "hidden": 1024, "classes": 10}, func(be tensor.Backend, c Config) (*Model, error) {
		net := nn.NewSequential(
			nn.NewConv2D(be, "conv1", 1, c["conv1"], 5, 5, nn.Same(5, 1), true).WithReLU(),
			nn.NewMaxPool(be, 2, 2, 0),
			nn.NewConv2D(be, "conv2", c["conv1"], c["conv2"], 5, 5, nn.Same(5, 1), true).WithReLU(),
			nn.NewMaxPool(be, 2, 2, 0),
			nn.NewFlatten(),
			nn.NewDense(be, "fc1", 7*7*c["conv2"], c["hidden"], true),
			nn.NewReLU(be),
			nn.NewDense(be, "fc2", c["hidden"], c["classes"], true),
		)
		return &Model{Input: [3]int{1, 28, 28}, Classes: c["classes"], net: net}, nil
	})
}

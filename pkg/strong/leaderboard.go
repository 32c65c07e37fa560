package strong

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// SuiteVersion identifies the strong suite's attack cascade (DefaultStages,
// the losses, step rules and default budgets behind it) in leaderboard
// entries. Bump it whenever the cascade changes, so that entries made with
// different cascades are never compared as equals.
const SuiteVersion = "1"

// ThreatModel is the strong suite's threat model, in RobustBench's naming: an
// L∞ ball of radius ε around each input in [0, 1] pixels.
const ThreatModel = "Linf"

// LeaderboardModel is what a leaderboard entry says about the evaluated
// model, taken from its checkpoint.
type LeaderboardModel struct {
	// Architecture: the model's registry name (pkg/models), the model file's
	// "model" metadata.
	Architecture string
	// ConfigJSON: the model's config as JSON, the bytes the model file's
	// "config" metadata stores (models.Model.ConfigJSON).
	ConfigJSON string
	// TrainConfigJSON: the training config as JSON (the model file's
	// "train_config" metadata); empty for a file without it, e.g. one
	// written from PyTorch.
	TrainConfigJSON string
}

// Leaderboard is a strong-suite result as a leaderboard takes it. The fields
// RobustBench's model_info JSON files have (dataset, architecture, eps,
// clean_acc, number_forward_passes, footnote) carry its names and its
// formats: accuracies in percent with two decimals and ε, as strings. The
// robust accuracy is robust_acc, in the same format, not RobustBench's
// autoattack_acc: that field means the AutoAttack package's number, and this
// one is our cascade's (Footnote and Attacks say which attacks), so a
// submitter moves it only with that understood. The rest are logitpair's. Fields a checkpoint cannot tell (paper
// link, authors, venue, additional data, reported accuracy) are left out for
// the submitter to fill in.
type Leaderboard struct {
	Dataset      string `json:"dataset"`
	Architecture string `json:"architecture"`
	ThreatModel  string `json:"threat_model"`
	Norm         string `json:"norm"`
	// Eps: ε as the user gave it (32-bit shortest form: "0.3", not
	// "0.30000001192092896").
	Eps      string `json:"eps"`
	CleanAcc string `json:"clean_acc"`
	// RobustAcc: the cascade's robust accuracy; Footnote says which attacks
	// produced it.
	RobustAcc string `json:"robust_acc"`
	// NumberForwardPasses: logitpair models predict with one deterministic
	// forward pass.
	NumberForwardPasses int    `json:"number_forward_passes"`
	Footnote            string `json:"footnote"`
	// Examples: test examples evaluated (the first N of the test split).
	Examples     int      `json:"n_examples"`
	SuiteVersion string   `json:"suite_version"`
	Attacks      []string `json:"attacks"`
	// ModelConfigSHA256: ConfigHash of the architecture and model config.
	ModelConfigSHA256 string `json:"model_config_sha256"`
	// TrainSeed: the training run's seed, when the checkpoint records its
	// training config; absent otherwise.
	TrainSeed *int64 `json:"train_seed,omitempty"`
	// EvalSeed: the seed of the attacks' random starts and targets.
	EvalSeed int64 `json:"eval_seed"`
}

// ConfigHash is the hex SHA-256 of a model's architecture name, a newline and
// its config JSON: equal hashes mean the same architecture with the same
// config (the weights are not hashed).
func ConfigHash(architecture, configJSON string) string {
	h := sha256.Sum256([]byte(architecture + "\n" + configJSON))
	return hex.EncodeToString(h[:])
}

// NewLeaderboard turns a strong-suite report of model m into a leaderboard
// entry. It fails on a report of another suite, or on a training config
// that is not valid JSON.
func NewLeaderboard(rep *Report, m LeaderboardModel) (*Leaderboard, error) {
	if rep.Suite != "strong" {
		return nil, fmt.Errorf("leaderboard: the report is of suite %q; run logitpair eval --suite strong", rep.Suite)
	}
	if m.Architecture == "" {
		return nil, fmt.Errorf("leaderboard: the model has no architecture name")
	}
	var seed *int64
	if m.TrainConfigJSON != "" {
		var tc struct {
			Seed *int64 `json:"seed"`
		}
		if err := json.Unmarshal([]byte(m.TrainConfigJSON), &tc); err != nil {
			return nil, fmt.Errorf("leaderboard: the checkpoint's training config: %w", err)
		}
		seed = tc.Seed
	}
	attacks := make([]string, len(rep.Stages))
	for i, s := range rep.Stages {
		attacks[i] = s.Name
	}
	return &Leaderboard{
		Dataset:             rep.Dataset,
		Architecture:        m.Architecture,
		ThreatModel:         ThreatModel,
		Norm:                ThreatModel,
		Eps:                 strconv.FormatFloat(rep.Eps, 'f', -1, 32),
		CleanAcc:            percent(rep.CleanAccuracy),
		RobustAcc:           percent(rep.RobustAccuracy),
		NumberForwardPasses: 1,
		Footnote: fmt.Sprintf("Robust accuracy from logitpair's strong suite version %s (%s) on the first %d test examples, not from the AutoAttack package.",
			SuiteVersion, strings.Join(attacks, ", "), rep.Examples),
		Examples:          rep.Examples,
		SuiteVersion:      SuiteVersion,
		Attacks:           attacks,
		ModelConfigSHA256: ConfigHash(m.Architecture, m.ConfigJSON),
		TrainSeed:         seed,
		EvalSeed:          rep.Settings.Seed,
	}, nil
}

// percent formats a fraction as a percentage with two decimals, as
// RobustBench writes accuracies ("85.34").
func percent(frac float64) string {
	return strconv.FormatFloat(100*frac, 'f', 2, 64)
}

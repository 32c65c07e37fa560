package optim

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Optimizer updates a flat float32 parameter vector (or one contiguous shard
// of it) in place and owns the per-element state it needs.
type Optimizer interface {
	// Name is the optimizer's kind: "rmsprop", "adam" or "sgd".
	Name() string
	// Step applies one update with gradient grad to params at step t
	// (0-based, used for bias correction), with the learning rate lr already
	// scheduled. It returns an error, and modifies nothing, when the lengths
	// of params or grad differ from the optimizer's, when grad holds NaN or
	// ±Inf, when lr is negative or not finite, or when t is negative.
	Step(params, grad []float32, lr float64, t int64) error
	// State returns the named state slots in a fixed order, each as long as
	// the parameters. The slices alias the optimizer's live state: copy them
	// for a snapshot that must not change with the next Step.
	State() []NamedState
	// SetState copies the given slots into the optimizer's state. The slots
	// must be exactly the optimizer's (any order), each of the right length;
	// otherwise nothing is modified and the error names the problem.
	SetState([]NamedState) error
}

// NamedState is one named slot of optimizer state (e.g. "ms", "mom"), laid
// out like the parameters.
type NamedState struct {
	Name string
	Data []float32
}

// Errors wrapped by Step (test with errors.Is).
var (
	// ErrLengthMismatch: params or grad do not have the optimizer's length.
	ErrLengthMismatch = errors.New("length mismatch")
	// ErrNonFinite: the gradient holds NaN or ±Inf.
	ErrNonFinite = errors.New("non-finite gradient")
)

// The optimizer kinds New knows.
const (
	KindRMSProp = "rmsprop"
	KindAdam    = "adam"
	KindSGD     = "sgd"
)

// KnownKinds lists the kinds New accepts, sorted.
func KnownKinds() []string { return []string{KindAdam, KindRMSProp, KindSGD} }

// Config selects an optimizer by Kind and holds the settings of each kind;
// only the section matching Kind is used (and validated).
type Config struct {
	Kind    string // "rmsprop", "adam" or "sgd"
	RMSProp RMSPropConfig
	Adam    AdamConfig
	SGD     SGDConfig
}

// DefaultConfig returns the given kind with every section at its defaults
// (DefaultRMSProp, DefaultAdam, DefaultSGD).
func DefaultConfig(kind string) (Config, error) {
	c := Config{Kind: kind, RMSProp: DefaultRMSProp(), Adam: DefaultAdam(), SGD: DefaultSGD()}
	if err := checkKind(kind); err != nil {
		return Config{}, err
	}
	return c, nil
}

func checkKind(kind string) error {
	switch kind {
	case KindRMSProp, KindAdam, KindSGD:
		return nil
	}
	return fmt.Errorf("optim: unknown optimizer kind %q (known: %s)", kind, strings.Join(KnownKinds(), ", "))
}

// Validate checks Kind and the section it selects.
func (c Config) Validate() error {
	if err := checkKind(c.Kind); err != nil {
		return err
	}
	switch c.Kind {
	case KindRMSProp:
		return c.RMSProp.Validate()
	case KindAdam:
		return c.Adam.Validate()
	default:
		return c.SGD.Validate()
	}
}

// New builds the optimizer cfg.Kind names for n parameters (a whole vector
// or one shard of it), with its state at the initial values.
func New(cfg Config, n int) (Optimizer, error) {
	if err := checkKind(cfg.Kind); err != nil {
		return nil, err
	}
	switch cfg.Kind {
	case KindRMSProp:
		return NewRMSProp(cfg.RMSProp, n)
	case KindAdam:
		return NewAdam(cfg.Adam, n)
	default:
		return NewSGD(cfg.SGD, n)
	}
}

// SliceState returns views of the range [lo, hi) of every slot, in the same
// order: the state of the shard [lo, hi) of a whole-vector checkpoint, to be
// passed to SetState of the shard's optimizer (which copies it).
func SliceState(states []NamedState, lo, hi int) ([]NamedState, error) {
	out := make([]NamedState, len(states))
	for i, s := range states {
		if lo < 0 || lo > hi || hi > len(s.Data) {
			return nil, fmt.Errorf("optim: SliceState: range [%d,%d) out of slot %q of length %d", lo, hi, s.Name, len(s.Data))
		}
		out[i] = NamedState{Name: s.Name, Data: s.Data[lo:hi:hi]}
	}
	return out, nil
}

// checkStep validates one Step call; name prefixes the errors.
func checkStep(name string, n int, params, grad []float32, lr float64, t int64) error {
	if len(params) != n {
		return fmt.Errorf("%s: %w: params has length %d, optimizer has %d", name, ErrLengthMismatch, len(params), n)
	}
	if len(grad) != n {
		return fmt.Errorf("%s: %w: grad has length %d, params %d", name, ErrLengthMismatch, len(grad), n)
	}
	if math.IsNaN(lr) || math.IsInf(lr, 0) || lr < 0 {
		return fmt.Errorf("%s: learning rate must be finite and >= 0, got %v", name, lr)
	}
	if t < 0 {
		return fmt.Errorf("%s: step must be >= 0, got %d", name, t)
	}
	if i := firstNonFinite(grad); i >= 0 {
		return fmt.Errorf("%s: %w at index %d (%v)", name, ErrNonFinite, i, grad[i])
	}
	return nil
}

// setSlots validates states against the wanted slot names (each of length n)
// and, only if all is well, copies each into dst[k].
func setSlots(name string, n int, states []NamedState, want []string, dst [][]float32) error {
	idx := make(map[string]int, len(want))
	for i, w := range want {
		idx[w] = i
	}
	seen := make([]bool, len(want))
	src := make([][]float32, len(want))
	for _, s := range states {
		i, ok := idx[s.Name]
		if !ok {
			return fmt.Errorf("%s: SetState: unknown state slot %q (want %s)", name, s.Name, strings.Join(want, ", "))
		}
		if seen[i] {
			return fmt.Errorf("%s: SetState: state slot %q given twice", name, s.Name)
		}
		if len(s.Data) != n {
			return fmt.Errorf("%s: SetState: state slot %q has length %d, want %d", name, s.Name, len(s.Data), n)
		}
		seen[i] = true
		src[i] = s.Data
	}
	var missing []string
	for i, ok := range seen {
		if !ok {
			missing = append(missing, fmt.Sprintf("%q", want[i]))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: SetState: missing state slot %s", name, strings.Join(missing, ", "))
	}
	for i := range want {
		copy(dst[i], src[i])
	}
	return nil
}

// unit reports whether x is in [0, 1) (false for NaN).
func unit(x float64) bool { return x >= 0 && x < 1 }

// positive reports whether x is finite and > 0.
func positive(x float64) bool { return x > 0 && !math.IsInf(x, 1) }

func checkLen(name string, n int) error {
	if n < 0 {
		return fmt.Errorf("%s: parameter count must be >= 0, got %d", name, n)
	}
	return nil
}

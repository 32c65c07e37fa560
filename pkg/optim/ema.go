package optim

import "fmt"

// EMAConfig configures EMA.
type EMAConfig struct {
	Decay         float64 // in [0, 1]
	UseNumUpdates bool    // TF's num_updates: cap the decay at (1+n)/(10+n)
}

// DefaultEMA returns the released ALP setting: decay 0.9999 with
// num_updates (the global step).
func DefaultEMA() EMAConfig { return EMAConfig{Decay: 0.9999, UseNumUpdates: true} }

// Validate checks the decay.
func (c EMAConfig) Validate() error {
	if !(c.Decay >= 0 && c.Decay <= 1) {
		return fmt.Errorf("ema: decay must be in [0,1], got %v", c.Decay)
	}
	return nil
}

// EMA is TF's tf.train.ExponentialMovingAverage over a flat parameter vector
// (or a shard of it). The shadow values start as a copy of the initial
// parameters (TF initialises each shadow variable with its variable's
// initial value), and each Update does, in float32 as TF does:
//
//	d      = min(float32(decay), (1+n)/(10+n))   with num_updates, n = float32(step)
//	d      = float32(decay)                      without
//	shadow = shadow − (shadow − θ)·(1 − d)       (TF's assign_moving_average, zero_debias off)
type EMA struct {
	cfg    EMAConfig
	shadow []float32
}

// NewEMA returns an EMA whose shadow values are a copy of init.
func NewEMA(cfg EMAConfig, init []float32) (*EMA, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &EMA{cfg: cfg, shadow: append([]float32{}, init...)}, nil
}

// Config returns the settings.
func (e *EMA) Config() EMAConfig { return e.cfg }

// Decay returns the effective decay d used by Update at the given step.
func (e *EMA) Decay(step int64) float32 {
	d := float32(e.cfg.Decay)
	if e.cfg.UseNumUpdates {
		n := float32(step)
		d = min(d, (1+n)/(10+n))
	}
	return d
}

// Update moves the shadow values towards params. step is TF's num_updates
// (the released code passes the global step); it is only used with
// UseNumUpdates. It returns an error, and modifies nothing, when params has
// the wrong length or step is negative.
func (e *EMA) Update(params []float32, step int64) error {
	if len(params) != len(e.shadow) {
		return fmt.Errorf("ema: %w: params has length %d, average has %d", ErrLengthMismatch, len(params), len(e.shadow))
	}
	if step < 0 {
		return fmt.Errorf("ema: step must be >= 0, got %d", step)
	}
	om := 1 - e.Decay(step)
	sh := e.shadow
	p := params[:len(sh)]
	forChunks(len(sh), func(lo, hi int) {
		sh, p := sh[lo:hi], p[lo:hi]
		for i := range sh {
			sh[i] -= float32((sh[i] - p[i]) * om)
		}
	})
	return nil
}

// Values returns the shadow (averaged) values. The slice is the live state:
// read it, copy it, do not modify it.
func (e *EMA) Values() []float32 { return e.shadow }

// State returns the single slot "ema" (a live view), for checkpoints.
func (e *EMA) State() []NamedState { return []NamedState{{Name: "ema", Data: e.shadow}} }

// SetState restores the slot "ema", which must have the average's length.
func (e *EMA) SetState(states []NamedState) error {
	return setSlots("ema", len(e.shadow), states, []string{"ema"}, [][]float32{e.shadow})
}

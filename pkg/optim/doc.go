// Package optim holds the optimizers, weight decay, learning-rate schedules
// and parameter moving average used to train logitpair models. Everything
// works on flat []float32 parameter vectors (the layout of nn.NewLayout), so
// a parameter-server shard that owns the range [lo, hi) of the vector runs
// the same code on params[lo:hi], grad[lo:hi] and its slice of the state.
//
// # Sharding
//
// Every rule here is elementwise: element i of the result depends only on
// element i of the parameters, gradient and state, plus scalars (learning
// rate, step, hyper-parameters). An optimizer built with New(cfg, hi-lo) and
// stepped on the shard's slices therefore gives results bit-identical to one
// built over the whole vector and stepped on all of it (the tests check
// this). SliceState cuts a whole-vector checkpoint into a shard's state, and
// ClipRanges moves a weight-decay mask into a shard's coordinates.
//
// # Optimizers
//
// New(cfg, n) builds the optimizer named by cfg.Kind ("rmsprop", "adam" or
// "sgd"), using the matching section of Config (cfg.RMSProp, cfg.Adam or
// cfg.SGD); DefaultConfig(kind) fills in the defaults. The rules, per element
// (the files rmsprop.go, adam.go and sgd.go spell out the float32 order of
// operations next to the code):
//
//	RMSProp (TF1 tf.train.RMSPropOptimizer; ms starts at 1, mom at 0, mg at 0):
//	    ms  ← ρ·ms + (1−ρ)·g²
//	    mg  ← ρ·mg + (1−ρ)·g                      (centered only)
//	    mom ← μ·mom + lr·g/√(ms + ε)              (√(ms − mg² + ε) when centered)
//	    θ   ← θ − mom
//	Adam (PyTorch torch.optim.Adam; m, v start at 0; k = t+1):
//	    m ← β1·m + (1−β1)·g
//	    v ← β2·v + (1−β2)·g²
//	    θ ← θ − lr·m̂/(√v̂ + ε),  m̂ = m/(1−β1^k), v̂ = v/(1−β2^k)
//	SGD (PyTorch torch.optim.SGD; buf starts at 0):
//	    buf ← μ·buf + g
//	    θ   ← θ − lr·buf            (plain, and μ = 0 gives θ ← θ − lr·g)
//	    θ   ← θ − lr·(g + μ·buf)    (Nesterov)
//
// All arithmetic is float32, as TensorFlow's and PyTorch's kernels do it;
// scalars are rounded to float32 where those kernels round them. Every
// product that is then added is converted explicitly (float32(a*b) + c), so
// the Go compiler cannot fuse it into an FMA on any architecture and results
// are the same everywhere.
//
// Step refuses (with an error wrapping ErrLengthMismatch or ErrNonFinite) a
// gradient of the wrong length or holding NaN or ±Inf, and then modifies
// nothing: neither the parameters nor the state.
//
// # Weight decay
//
// AddWeightDecay and L2Loss implement TF-slim's l2_regularizer over the
// decayed tensors (conv and dense kernels: nn.Role.Decayed), given as a list
// of half-open index ranges:
//
//	loss = wd · ½ · Σ_{i∈ranges} θ_i²      ⇒   g_i ← g_i + wd·θ_i  for i in ranges
//
// # Schedules
//
// ParseSchedule(spec, base) parses
//
//	constant                   lr = base
//	step:<every>:<factor>      lr = base · factor^⌊s/every⌋           (staircase)
//	exp:<decay-steps>:<rate>   lr = base · rate^(s/decay-steps)       (smooth)
//	cosine:<total>[:<final>]   lr = base · (f + (1−f)·½(1 + cos(π·min(s,total)/total)))
//	warmup:<w>,<inner>         lr = inner(0)·(s+1)/w for s < w, inner(s−w) after
//
// Schedules compute in float64 (TF's exponential_decay and cosine_decay
// compute in the learning rate's dtype, usually float32); the optimizers
// round the scheduled rate to float32 once, in Step.
//
// # Moving average
//
// EMA keeps TF's ExponentialMovingAverage of the parameters:
//
//	d      = min(decay, (1+n)/(10+n))   (with num_updates n; else d = decay)
//	shadow ← shadow − (1−d)·(shadow − θ)
package optim

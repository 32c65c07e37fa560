// Package strong is logitpair's strong adversarial evaluation ("evaluation
// that cannot be fooled"): an AutoAttack-style cascade of white-box APGD
// (Croce & Hein 2020) with the cross-entropy and the DLR margin loss,
// targeted APGD toward the least-likely and a random class, the
// gradient-free Square attack (Andriushchenko et al. 2020) and transfer
// attacks from other models, each run only on the examples every earlier
// attack left correct, keeping each example's worst case; and checks that
// flag the signs of gradient masking (accuracy not reaching 0 at large ε,
// accuracy rising with steps or with restarts (independent runs, since the
// cascade's accuracy can only fall), black box beating white box, attack losses
// that do not rise, loss surfaces flat along the gradient, zero input
// gradients and saturated softmax).
//
// Attacks see a model only through attack.Model (logits and input
// gradient). The iterates live on the host; the model runs on batches padded
// to at most eight distinct sizes. docs/EVALUATION.md describes the suite.
package strong

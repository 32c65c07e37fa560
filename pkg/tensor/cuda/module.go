//go:build cgo && linux && !static && !purego

package cuda

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
)

// gpu is the process-wide state of one device: its primary context (shared
// with cuBLAS, which uses the primary context) and the loaded kernels.
type gpu struct {
	ordinal, dev int
	ctx          cuContext
	name         string
	major, minor int
	arch         int
	mod          cuModule
	fns          map[string]cuFunction
	kernels      string // where the kernels came from, for Info
}

var (
	gpusMu sync.Mutex
	gpus   = map[int]*gpu{}
)

// cuErrorUnsupportedPTXVersion is CUDA_ERROR_UNSUPPORTED_PTX_VERSION.
const cuErrorUnsupportedPTXVersion = 222

// openGPU loads the libraries, retains device ordinal's primary context and
// compiles (or reads from the cache) and loads the kernels, once per device.
func openGPU(ordinal int, cacheDir string) (*gpu, error) {
	if err := loadDriver(); err != nil {
		return nil, err
	}
	if ordinal < 0 || ordinal >= loaded.devices {
		return nil, fmt.Errorf("CUDA device %d does not exist: %d device(s) visible", ordinal, loaded.devices)
	}
	if err := loadTools(); err != nil {
		return nil, err
	}
	gpusMu.Lock()
	defer gpusMu.Unlock()
	if g := gpus[ordinal]; g != nil {
		return g, nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	g := &gpu{ordinal: ordinal, fns: map[string]cuFunction{}}
	var err error
	if g.dev, err = deviceGet(ordinal); err != nil {
		return nil, err
	}
	if g.name, err = deviceName(g.dev); err != nil {
		return nil, err
	}
	if g.major, g.minor, err = computeCapability(g.dev); err != nil {
		return nil, err
	}
	if g.ctx, err = primaryCtxRetain(g.dev); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = primaryCtxRelease(g.dev)
		}
	}()
	if err := ctxSetCurrent(g.ctx); err != nil {
		return nil, err
	}
	g.arch = pickArch(g.major*10+g.minor, nvrtcArchs())
	opts := []string{fmt.Sprintf("--gpu-architecture=compute_%d", g.arch)}
	cache := Cache{Dir: cacheDir}
	key := CacheKey(kernelSource, fmt.Sprintf("nvrtc %d.%d", loaded.nvrtcMajor, loaded.nvrtcMinor), strings.Join(opts, " "))
	compile := func() ([]byte, error) { return nvrtcCompile(kernelSource, "kernels.cu", opts) }
	ptx, res, err := cache.Load(key, compile)
	if err != nil {
		return nil, err
	}
	g.mod, err = moduleLoad(ptx)
	if err != nil && res.Hit {
		// A cache entry the driver rejects (written by another NVRTC under
		// the same name, say): rebuild it once.
		_ = cache.Remove(key)
		if ptx, res, err = cache.Load(key, compile); err != nil {
			return nil, err
		}
		g.mod, err = moduleLoad(ptx)
	}
	if err != nil {
		var ce *cuError
		if errors.As(err, &ce) && ce.code == cuErrorUnsupportedPTXVersion {
			return nil, fmt.Errorf("%w: the driver (CUDA %s) is older than NVRTC %d.%d (%s); update the driver or point %s at an NVRTC no newer than the driver",
				err, versionString(loaded.driverVersion), loaded.nvrtcMajor, loaded.nvrtcMinor, loaded.nvrtcPath, LibDirEnv)
		}
		return nil, err
	}
	for _, name := range kernelNames {
		f, err := moduleFunction(g.mod, name)
		if err != nil {
			_ = moduleUnload(g.mod)
			return nil, err
		}
		g.fns[name] = f
	}
	switch {
	case res.Hit:
		g.kernels = "kernels from cache " + cache.Path(key)
	case cacheDir == "":
		g.kernels = "kernels compiled (no cache folder)"
	case res.WriteErr != nil:
		g.kernels = "kernels compiled (not cached: " + res.WriteErr.Error() + ")"
	default:
		g.kernels = "kernels compiled and cached in " + cache.Path(key)
	}
	if res.Corrupt != "" {
		g.kernels += " (a corrupt cache entry was rebuilt: " + res.Corrupt + ")"
	}
	ok = true
	gpus[ordinal] = g
	return g, nil
}

"""A stand-in for CuPy on a machine without a GPU: NumPy memory as "device" memory, kernels through the emulator.

:func:`install` puts a module named ``cupy`` in ``sys.modules`` (for the
tests' duration) whose ``RawModule`` compiles ``kernels/*.cu`` with g++ against
the CUDA shim (:mod:`emulator`) and launches its kernels on CPU threads. So
the CuPy backend's own code (its kernel wrappers, strategies, graph capture,
streams, devices) runs unchanged on this machine, against the NumPy backend.

It is stricter than it need be where CuPy is strict, so that what passes here
has a chance on the device:

* arrays are not NumPy arrays: mixing one with a NumPy array, or converting
  one implicitly (``np.asarray``), raises TypeError, as CuPy does; ``.get()``
  and ``cupy.asnumpy`` copy to the host;
* every array belongs to a device (``device.id``), and an operation or kernel
  launch on arrays of another device than the current one raises, as CuPy's
  checks do (several fake devices can exist: ``install(devices=2)``);
* during a stream capture only RawModule kernel launches are allowed (they
  are recorded and replayed by the graph); a GEMM raises NotImplementedError
  as CuPy's cuBLAS refusal does, and any other array operation raises (the
  fake executes eagerly, so it could not replay one);
* kernel arguments keep their NumPy widths and are checked against the
  kernel's parameters by the emulator.

Not modelled: asynchrony (every operation completes at once, so a missing
stream wait cannot show), device memory limits, NVRTC's own flags.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import emulator  # noqa: E402

SM_COUNT = 2  # small grids: the emulator runs blocks one after another
SHARED_OPTIN = 232448  # an H100's opt-in shared memory per block
_state = threading.local()


class _Config:
    devices = 1
    library: emulator.Library | None = None  # prebuilt instances (the tests' session library)
    build_dir: Path | None = None
    libraries: dict = {}
    launches: list = []  # (name, grid, block) of every kernel run, for tests that count them


def _current_device() -> int:
    return getattr(_state, "device", 0)


def _stream_stack() -> list:
    if not hasattr(_state, "streams"):
        _state.streams = []
    return _state.streams


def _capturing() -> Stream | None:
    s = get_current_stream()
    return s if s._capture is not None else None


def _no_capture(what: str) -> None:
    s = _capturing()
    if s is not None:
        raise RuntimeError(f"fake cupy: {what} during a stream capture (only RawModule kernels are captured here)")


# -- arrays --


class _Pointer:
    def __init__(self, a):
        self.ptr = int(a.ctypes.data) if a.size else 0


class _DeviceRef:
    def __init__(self, i):
        self.id = i

    def __eq__(self, other):
        return isinstance(other, (_DeviceRef, Device)) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


def _unwrap(x, where):
    """An argument as NumPy sees it: fake arrays unwrapped (checked to be on the current device)."""
    if isinstance(x, ndarray):
        if x._device != _current_device():
            raise ValueError(
                f"The device where the array resides ({x._device}) is different from the current device "
                f"({_current_device()})."
            )
        return x._a
    if isinstance(x, np.ndarray) and x.ndim > 0:
        raise TypeError(f"Unsupported type {type(x)} in {where}: a NumPy array cannot mix with a device array")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, where) for v in x)
    return x


def _key(key):
    """An index: device arrays unwrapped; NumPy index arrays allowed (CuPy copies them to the device)."""
    if isinstance(key, tuple):
        return tuple(_key(k) for k in key)
    if isinstance(key, np.ndarray):
        return key
    return _unwrap(key, "indexing")


def _wrap(r, base=None):
    if isinstance(r, np.ndarray):
        return ndarray(r, _current_device() if base is None else base._device)
    if isinstance(r, np.generic):  # CuPy gives 0-d arrays, never scalars
        return ndarray(np.asarray(r), _current_device() if base is None else base._device)
    if isinstance(r, tuple):
        return tuple(_wrap(v, base) for v in r)
    return r


_VIEWS = {"reshape", "view", "transpose", "swapaxes", "squeeze", "ravel", "T", "real", "imag", "diagonal"}
_READS = {"shape", "dtype", "size", "ndim", "nbytes", "itemsize", "strides", "flags"}


class ndarray:
    """A device array: NumPy memory behind CuPy's rules (see the module's docstring)."""

    __array_priority__ = 1000
    __slots__ = ("_a", "_device")

    def __init__(self, a: np.ndarray, device: int):
        self._a = a
        self._device = device

    # what CuPy has and NumPy does not
    def get(self, stream=None, order="C", out=None, blocking=True):
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        _no_capture("ndarray.set")
        self._a[...] = arr

    @property
    def data(self):
        return _Pointer(self._a)

    @property
    def device(self):
        return _DeviceRef(self._device)

    def __sn_emu_pointer__(self):
        if self._device != _current_device():
            raise ValueError(f"a kernel on device {_current_device()} was given an array of device {self._device}")
        return int(self._a.ctypes.data)

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.data.ptr, False), "version": 3}

    # NumPy's protocols: allowed on device arrays, refused for implicit host conversion
    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy array "
            "explicitly."
        )

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _no_capture(f"the ufunc {ufunc.__name__}")
        ins = _unwrap(inputs, ufunc.__name__)
        if "out" in kwargs:
            kwargs["out"] = _unwrap(kwargs["out"], ufunc.__name__)
        return _wrap(getattr(ufunc, method)(*ins, **kwargs))

    def __array_function__(self, func, types_, args, kwargs):
        _no_capture(func.__name__)
        # np.array(host, like=device_array) reaches here (NEP 35, `like` already removed): CuPy makes a device
        # array of it, as these creation functions do
        maker = {
            np.array: array,
            np.asarray: asarray,
            np.asanyarray: asarray,
            np.ascontiguousarray: ascontiguousarray,
            np.empty: empty,
            np.zeros: zeros,
            np.ones: ones,
            np.full: full,
            np.arange: arange,
        }.get(func)
        if maker is not None:
            return maker(*args, **kwargs)
        return _wrap(func(*_unwrap(args, func.__name__), **{k: _unwrap(v, func.__name__) for k, v in kwargs.items()}))

    def __getattr__(self, name):
        if name.startswith("__") or name in ("ctypes", "base", "tofile", "tobytes"):  # host views of the memory
            raise AttributeError(f"fake cupy.ndarray has no attribute {name!r}")
        a = object.__getattribute__(self, "_a")
        value = getattr(a, name)
        if name in _READS:
            return value
        if name in _VIEWS and not callable(value):
            return _wrap(value, self)
        if callable(value):

            def method(*args, **kwargs):
                if name not in _VIEWS:
                    _no_capture(f"ndarray.{name}")
                r = value(*_unwrap(args, name), **{k: _unwrap(v, name) for k, v in kwargs.items()})
                if name in _VIEWS and isinstance(r, np.ndarray) and not np.shares_memory(r, a):
                    _no_capture(f"ndarray.{name} (it copies)")
                return _wrap(r, self)

            return method
        return _wrap(value, self)

    def __getitem__(self, key):
        r = self._a[_key(key)]
        if isinstance(r, np.ndarray) and not np.shares_memory(r, self._a):
            _no_capture("fancy indexing")
        return _wrap(r, self)

    def __setitem__(self, key, value):
        _no_capture("item assignment")
        self._a[_key(key)] = value._a if isinstance(value, ndarray) else value

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(v, self) for v in self._a)

    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __index__(self):
        return self._a.__index__()

    def __complex__(self):
        return complex(self._a)

    def __format__(self, spec):
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __repr__(self):
        return repr(self._a).replace("array", "fake_cupy.array", 1)

    def __str__(self):
        return str(self._a)

    def __dlpack__(self, stream=None, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return (2, self._device)  # kDLCUDA

    def __reduce__(self):
        return (_rebuild, (self.get(), self._device))


ndarray.__module__ = "cupy"  # what sigmanet._arrays.library_of reads


def _rebuild(host, device):
    return ndarray(host, device)


def _operator(name):
    def op(self, *args):
        _no_capture(f"the operator {name}")
        return _wrap(getattr(self._a, name)(*_unwrap(args, name)), self)

    op.__name__ = name
    return op


def _inplace(name):
    def op(self, other):
        _no_capture(f"the operator {name}")
        getattr(self._a, name)(_unwrap(other, name))
        return self

    op.__name__ = name
    return op


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor", "lshift",
              "rshift"):  # fmt: skip
    setattr(ndarray, f"__{_name}__", _operator(f"__{_name}__"))
    setattr(ndarray, f"__r{_name}__", _operator(f"__r{_name}__"))
    setattr(ndarray, f"__i{_name}__", _inplace(f"__i{_name}__"))
for _name in ("lt", "le", "gt", "ge", "eq", "ne", "neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_name}__", _operator(f"__{_name}__"))
ndarray.__hash__ = None  # type: ignore[assignment]


def _matmul_guard(*args, **kwargs):
    if _capturing() is not None:
        raise NotImplementedError("cuBLAS calls are not supported during stream capture (fake cupy, as CuPy)")
    out = kwargs.get("out")
    r = np.matmul(*_unwrap(args, "matmul"), **{k: _unwrap(v, "matmul") for k, v in kwargs.items()})
    return out if out is not None else _wrap(r)


def _orig_matmul(self, other):
    return _matmul_guard(self, other)


ndarray.__matmul__ = _orig_matmul  # type: ignore[method-assign]
ndarray.__rmatmul__ = lambda self, other: _matmul_guard(other, self)  # type: ignore[method-assign]


# -- array creation: NumPy inputs are copied to the device, device inputs kept --


def _allocate(nbytes: int) -> None:
    _no_capture("an allocation")
    allocator = getattr(_state, "allocator", None)
    if allocator is not None:
        allocator(int(nbytes))


def _new(a: np.ndarray) -> ndarray:
    _allocate(a.nbytes)
    return ndarray(a, _current_device())


def asarray(a, dtype=None, order=None, blocking=False):
    if isinstance(a, ndarray):
        if dtype is None or np.dtype(dtype) == a.dtype:
            return a
        return a.astype(dtype)
    return _new(np.array(a, dtype=dtype, order=order or "K", copy=True))


def array(a, dtype=None, copy=True, order="K", ndmin=0, blocking=False):
    if isinstance(a, ndarray):
        if not copy and (dtype is None or np.dtype(dtype) == a.dtype):
            return a
        return _new(np.array(a._a, dtype=dtype, order=order, copy=True, ndmin=ndmin))
    return _new(np.array(a, dtype=dtype, order=order, copy=True, ndmin=ndmin))


def ascontiguousarray(a, dtype=None):
    a = asarray(a, dtype)
    if a._a.flags.c_contiguous:
        return a
    return _new(np.ascontiguousarray(a._a))


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


def _creator(fn):
    def make(*args, **kwargs):
        args = _unwrap(args, fn.__name__)
        return _new(fn(*args, **kwargs))

    make.__name__ = fn.__name__
    return make


empty, zeros, ones, full, arange, linspace, eye = map(
    _creator, (np.empty, np.zeros, np.ones, np.full, np.arange, np.linspace, np.eye)
)


def _like(fn):
    def make(a, *args, **kwargs):
        return _new(fn(_unwrap(a, fn.__name__), *args, **kwargs))

    make.__name__ = fn.__name__
    return make


empty_like, zeros_like, ones_like, full_like = map(_like, (np.empty_like, np.zeros_like, np.ones_like, np.full_like))
matmul = _matmul_guard


def get_array_module(*args):
    return sys.modules["cupy"] if any(isinstance(a, ndarray) for a in args) else np


def from_dlpack(x):
    raise NotImplementedError("fake cupy: from_dlpack")


# -- streams, events, graphs --


class Event:
    """Records the host clock (every operation here completes at once, so that is when it ran)."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.done = True
        self.time = time.perf_counter()

    def record(self, stream=None):
        self.time = time.perf_counter()
        return self

    def synchronize(self):
        pass


def get_elapsed_time(start, end):
    """Milliseconds between two recorded events."""
    return max(1e-6, (end.time - start.time) * 1e3)


class Graph:
    """A captured stream's kernel launches, replayed in order."""

    def __init__(self, launches):
        self.launches = launches

    def launch(self, stream=None):
        if _capturing() is not None:
            raise RuntimeError("fake cupy: a graph launched during a capture")
        stream = stream or get_current_stream()
        for fn, grid, block, args, shared in self.launches:
            fn._run(grid, block, args, shared, stream)

    def upload(self, stream=None):
        pass


class Stream:
    null: Stream

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        self.ptr = 0 if null else id(self)
        self.non_blocking = non_blocking
        self._capture = None
        self.device_id = _current_device()

    def __enter__(self):
        _stream_stack().append(self)
        return self

    def __exit__(self, *exc):
        _stream_stack().pop()

    def use(self):
        _state.base_stream = self
        return self

    def begin_capture(self, mode=None):
        if self.ptr == 0:
            raise RuntimeError("cudaErrorStreamCaptureUnsupported: the null stream cannot capture")
        if self._capture is not None:
            raise RuntimeError("fake cupy: the stream is already capturing")
        self._capture = []

    def end_capture(self):
        if self._capture is None:
            raise RuntimeError("fake cupy: end_capture without begin_capture")
        launches, self._capture = self._capture, None
        return Graph(launches)

    def is_capturing(self):
        return self._capture is not None

    def synchronize(self):
        pass

    def record(self, event=None):
        return (event or Event()).record(self)

    def wait_event(self, event):
        pass

    @property
    def done(self):
        return True

    def __eq__(self, other):
        return isinstance(other, Stream) and other.ptr == self.ptr

    def __hash__(self):
        return hash(self.ptr)


Stream.null = Stream(null=True)


class ExternalStream(Stream):
    def __init__(self, ptr, device_id=-1):
        super().__init__()
        self.ptr = int(ptr)


def get_current_stream(device_id=None):
    stack = _stream_stack()
    if stack:
        return stack[-1]
    return getattr(_state, "base_stream", Stream.null)


# -- devices --


class Device:
    def __init__(self, device=None):
        self.id = _current_device() if device is None else int(device)
        if not 0 <= self.id < _Config.devices:
            raise RuntimeError(f"cudaErrorInvalidDevice: device {self.id} (the fake has {_Config.devices})")
        self._previous: list[int] = []

    @property
    def attributes(self):
        return {"MultiProcessorCount": SM_COUNT, "MaxSharedMemoryPerBlockOptin": SHARED_OPTIN}

    @property
    def compute_capability(self):
        return "90"

    def synchronize(self):
        pass

    def use(self):
        _state.device = self.id

    def __enter__(self):
        self._previous.append(_current_device())
        _state.device = self.id
        return self

    def __exit__(self, *exc):
        _state.device = self._previous.pop()

    def __eq__(self, other):
        return isinstance(other, (Device, _DeviceRef)) and other.id == self.id

    def __hash__(self):
        return hash(self.id)


class _Runtime(types.SimpleNamespace):
    @staticmethod
    def getDeviceCount():
        return _Config.devices

    @staticmethod
    def getDevice():
        return _current_device()

    @staticmethod
    def setDevice(i):
        Device(i).use()

    @staticmethod
    def getDeviceProperties(i):
        Device(i)
        return {
            "name": b"sigmanet CUDA emulator (CPU)",
            "major": 9,
            "minor": 0,
            "multiProcessorCount": SM_COUNT,
            "sharedMemPerBlock": 48 * 1024,
            "sharedMemPerBlockOptin": SHARED_OPTIN,
            "totalGlobalMem": 8 << 30,
        }

    @staticmethod
    def memGetInfo():
        return 4 << 30, 8 << 30

    @staticmethod
    def driverGetVersion():
        return 13000

    @staticmethod
    def runtimeGetVersion():
        return 13000


class MemoryPool:
    def malloc(self, size):
        return _Allocation(size)

    def free_all_blocks(self, stream=None):
        pass

    def free_bytes(self):
        return 0

    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def get_limit(self):
        return 0

    def set_limit(self, size=None, fraction=None):
        pass


class _Allocation:
    def __init__(self, size):
        self.size = size


_POOL = MemoryPool()


def get_default_memory_pool():
    return _POOL


@contextlib.contextmanager
def using_allocator(allocator=None):
    previous = getattr(_state, "allocator", None)
    _state.allocator = allocator
    try:
        yield
    finally:
        _state.allocator = previous


# -- kernels: RawModule through the emulator --


class Launch(tuple):
    """One kernel run: its name, grid, block, the stream it ran on (its ``ptr``) and the device."""

    __slots__ = ()

    def __new__(cls, name, grid, block, stream, device):
        return super().__new__(cls, (name, grid, block, stream, device))

    name = property(lambda self: self[0])
    stream = property(lambda self: self[3])
    device = property(lambda self: self[4])


class RawKernel:
    def __init__(self, library: emulator.Library, name: str):
        self.library = library
        self.name = name
        self.max_dynamic_shared_size_bytes = 0
        self.shared_size_bytes = 0  # the emulator does not measure static shared memory
        self.num_regs = 0

    def __call__(self, grid, block, args, *, shared_mem=0, enable_cooperative_groups=False):
        if not isinstance(args, tuple):
            raise TypeError(f"kernel arguments must be a tuple, got {type(args).__name__}")
        limit = max(48 * 1024, self.max_dynamic_shared_size_bytes)
        if shared_mem + self.shared_size_bytes > min(limit, SHARED_OPTIN):
            raise RuntimeError(
                f"cudaErrorInvalidValue: {self.name} asks for {shared_mem} bytes of dynamic shared memory, "
                f"beyond the block's limit ({limit}; raise max_dynamic_shared_size_bytes above 48 KiB)"
            )
        for a in args:  # device checks at the launch, as the driver would fault
            if isinstance(a, ndarray):
                a.__sn_emu_pointer__()
        stream = get_current_stream()
        if stream._capture is not None:
            stream._capture.append((self, grid, block, args, shared_mem))
            return
        self._run(grid, block, args, shared_mem)

    def _run(self, grid, block, args, shared_mem, stream=None):
        stream = stream or get_current_stream()
        _Config.launches.append(Launch(self.name, grid, block, stream.ptr, _current_device()))
        self.library.launch(self.name, grid, block, args, shared_mem)


class RawModule:
    def __init__(self, code=None, path=None, options=(), backend="nvrtc", translate_cucomplex=False,
                 enable_cooperative_groups=False, name_expressions=None, log_stream=None, jitify=False):  # fmt: skip
        if not isinstance(options, tuple):
            raise TypeError(f"options must be a tuple, got {type(options).__name__}")
        if code is None:
            code = Path(path).read_text()
        self.code, self.options = code, options
        self.names = list(name_expressions or [])
        _no_capture("a module load")
        self.library = _library_for(code, options, self.names)

    def get_function(self, name):
        if self.names and emulator._normal(name) not in {emulator._normal(n) for n in self.names}:
            raise RuntimeError(f"{name} is not among the module's name_expressions")
        return RawKernel(self.library, name)


def _library_for(code, options, names) -> emulator.Library:
    """The session's prebuilt library if it holds every name (and was built from this source), else a
    build of those names (kept in the build folder, so that a later process loads it)."""
    pre = _Config.library
    if pre is not None and getattr(pre, "code", None) == code and all(pre.has(n) for n in names):
        return pre
    key = (code, options, tuple(names))
    if key not in _Config.libraries:
        _Config.libraries[key] = emulator.build(code, names, options, _Config.build_dir)
    return _Config.libraries[key]


# -- random numbers: NumPy's generators, their arrays on the device --


class _Generator:
    def __init__(self, seed=None):
        self._g = np.random.default_rng(seed)

    def __getattr__(self, name):
        fn = getattr(self._g, name)

        def draw(*args, **kwargs):
            return _wrap(fn(*args, **kwargs))

        return draw


def _random_module():
    rnd = types.ModuleType("cupy.random")
    rnd.default_rng = _Generator
    legacy = _Generator(0)
    for name in ("random", "rand", "randn", "standard_normal", "integers", "uniform", "normal"):
        setattr(rnd, name, getattr(legacy, name if name not in ("rand", "randn") else
                                   {"rand": "random", "randn": "standard_normal"}[name]))  # fmt: skip
    return rnd


# -- the module objects --


def _make_modules():
    mod = types.ModuleType("cupy")
    mod.__file__ = __file__
    mod.__version__ = "14.0.0+sigmanet-emulator"
    this = sys.modules[__name__]
    for name in ("ndarray", "asarray", "array", "ascontiguousarray", "asnumpy", "empty", "zeros", "ones", "full",
                 "arange", "linspace", "eye", "empty_like", "zeros_like", "ones_like", "full_like", "matmul",
                 "get_array_module", "from_dlpack", "RawModule", "RawKernel", "get_default_memory_pool"):  # fmt: skip
        setattr(mod, name, getattr(this, name))
    for name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint32", "uint64",
                 "bool_", "dtype", "newaxis", "inf", "nan", "pi", "e"):  # fmt: skip
        setattr(mod, name, getattr(np, name))

    def numpy_function(name):
        fn = getattr(np, name)
        if isinstance(fn, type) or not callable(fn):
            return fn

        def call(*args, **kwargs):
            _no_capture(name)
            if name == "matmul":
                return _matmul_guard(*args, **kwargs)
            out = kwargs.get("out")
            r = fn(*_unwrap(args, name), **{k: _unwrap(v, name) for k, v in kwargs.items()})
            return out if isinstance(out, ndarray) else _wrap(r)

        call.__name__ = name
        return call

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        if not hasattr(np, name):
            raise AttributeError(f"fake cupy has no {name}")
        return numpy_function(name)

    mod.__getattr__ = __getattr__  # type: ignore[attr-defined]
    cuda = types.ModuleType("cupy.cuda")
    for name in ("Stream", "ExternalStream", "Event", "Device", "get_current_stream", "get_elapsed_time",
                 "using_allocator", "MemoryPool"):  # fmt: skip
        setattr(cuda, name, getattr(this, name))
    cuda.runtime = _Runtime()
    cuda.is_available = lambda: True
    graph = types.ModuleType("cupy.cuda.graph")
    graph.Graph = Graph
    cuda.graph = graph
    mod.cuda = cuda
    mod.random = _random_module()
    return {"cupy": mod, "cupy.cuda": cuda, "cupy.cuda.runtime": cuda.runtime, "cupy.cuda.graph": graph,
            "cupy.random": mod.random}  # fmt: skip


@contextlib.contextmanager
def installed(devices: int = 1, library: emulator.Library | None = None, build_dir=None):
    """``cupy`` is this fake inside the block (any real CuPy is put back after); caches that hold a CuPy
    module or compiled kernels are cleared on the way in and out."""
    names = ("cupy", "cupy.cuda", "cupy.cuda.runtime", "cupy.cuda.graph", "cupy.random", "cupyx")
    saved = {k: sys.modules.get(k) for k in names}
    _Config.devices = devices
    _Config.library = library
    _Config.build_dir = build_dir
    _Config.launches = []
    _state.__dict__.clear()
    mods = _make_modules()
    _clear_caches()
    sys.modules.update(mods)
    sys.modules["cupyx"] = None  # type: ignore[assignment]  # no sparse module in the fake
    try:
        yield mods["cupy"]
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
        _state.__dict__.clear()
        _clear_caches()


def _clear_caches():
    """sigmanet's per-process caches that would keep the fake (or a real CuPy) alive across the switch."""
    try:
        from sigmanet import backends

        backends._probe.cache_clear()
    except (ImportError, AttributeError):
        pass
    try:
        from sigmanet.backends.cupy import _cuda

        _cuda.kernels.cache_clear()
    except (ImportError, AttributeError):
        pass


# The compile-time shapes the tests and gpu_check.sh's dry run launch: train_small's (both kinds of
# fixed shape) and train_warp's, built up front with the rest.
UP_FRONT_SHAPES = {
    "fixed": ([3, 4, 1], [2, 5, 3], [4, 6, 3], [4, 6, 2], [5, 8, 9, 3, 2], [16, 32, 4]),
    "warp": ([3, 4, 1], [2, 5, 3], [3, 4, 2]),
}


def up_front_names() -> list[str]:
    """What :func:`session_library` builds: the device code's up-front kernels, every GEMM instance (each
    tiling and epilogue of gemm_tiled and gemm_warp) and UP_FRONT_SHAPES, in float and double."""
    from sigmanet.backends.cupy import _cuda

    names = []
    for T in ("float", "double"):
        names += _cuda.name_expressions(T, all_gemms=True)
        names += [_cuda.fixed_shape_name(T, s) for s in UP_FRONT_SHAPES["fixed"]]
        names += [_cuda.warp_name(T, s) for s in UP_FRONT_SHAPES["warp"]]
    return names


def session_library(folder) -> emulator.Library:
    """The library of :func:`up_front_names`, built once in ``folder`` (one g++ run a core) and loaded
    from there by every later process; any other instance is built when a module first asks for it.

    The device code compiles each GEMM instance at first use; on the emulator each of those would be
    a g++ run of its own (about 3 s of parsing the source each), which on a machine with no cache cost
    the tests that sweep the tilings about 20 minutes. All of them in one library take 22 s to build on
    two cores, against 8 s for the kernels alone. The set is fixed, not grown from what earlier runs
    built: a library whose instance list changes is a new library, and every process after the change
    would build it again.
    """
    from sigmanet.backends.cupy import _cuda

    lib = emulator.build(_cuda.kernel_source(), up_front_names(), _cuda.compile_options(), Path(folder))
    lib.code = _cuda.kernel_source()
    return lib


def launches() -> list:
    """(kernel name, grid, block) of every kernel the emulator ran since :func:`installed` began."""
    return _Config.launches
